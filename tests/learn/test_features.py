"""Pattern embedding: fixed size, deterministic, FLOPs by hand, similar models near each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wasm_torch.learn.features import DIM, GROUPS, graph_features, pattern_of_graph, pattern_of_model
from wasm_torch.learn.machine import Machine, current_machine
from wasm_torch.zoo.models import build


@pytest.fixture(scope="module")
def zoo_patterns():
    return {n: pattern_of_model(*build(n)) for n in ("mlp", "cnn", "resnet", "transformer_encoder", "gpt2")}


def test_embedding_is_fixed_size_finite_and_deterministic(zoo_patterns):
    for p in zoo_patterns.values():
        assert p.vector.shape == (DIM,) and p.vector.dtype == np.float32
        assert np.all(np.isfinite(p.vector))
        assert p.gates.shape == (len(GROUPS),) and abs(float(p.gates.sum()) - 1.0) < 1e-5
    again = pattern_of_model(*build("cnn"))
    assert again.key == zoo_patterns["cnn"].key
    np.testing.assert_array_equal(again.vector, zoo_patterns["cnn"].vector)


def test_mlp_gemm_flops_by_hand():
    from wasm_torch.compiler.frontend import from_torch

    model, inputs, dyn = build("mlp")  # Linear 64->128->128->10, batch dynamic up to 64
    f = graph_features(from_torch(model, inputs, dyn))
    assert f.group_flops["gemm"] == 2 * 64 * (64 * 128 + 128 * 128 + 128 * 10)
    assert f.group_flops["conv"] == 0
    assert f.symbols == 1


def test_conv_models_are_nearer_each_other_than_to_transformers(zoo_patterns):
    p = zoo_patterns

    def d(a: str, b: str) -> float:
        return float(np.linalg.norm(p[a].vector - p[b].vector))

    assert d("cnn", "resnet") < d("cnn", "transformer_encoder")
    assert d("cnn", "resnet") < d("resnet", "gpt2")
    assert d("transformer_encoder", "gpt2") < d("transformer_encoder", "resnet")
    assert GROUPS[int(np.argmax(p["resnet"].gates))] == "conv"
    assert GROUPS[int(np.argmax(p["gpt2"].gates))] == "gemm"


def test_shape_changes_move_the_pattern():
    from wasm_torch.compiler.frontend import from_torch

    m = torch.nn.Linear(32, 32).eval()
    small = pattern_of_graph(from_torch(m, (torch.randn(2, 32),), None))
    big = pattern_of_graph(from_torch(m, (torch.randn(256, 32),), None))
    assert small.key != big.key
    assert big.summary["gflops"] > small.summary["gflops"]


def test_machine_features_are_part_of_the_pattern():
    from wasm_torch.compiler.frontend import from_torch

    g = from_torch(torch.nn.Linear(8, 8).eval(), (torch.randn(2, 8),), None)
    here = current_machine()
    assert here.simd128  # wasmtime validates a SIMD128 module on every supported host
    other = Machine(here.cores * 2, here.simd128, not here.relaxed_simd, here.fma, here.avx2, here.wasmtime, "other cpu")
    a, b = pattern_of_graph(g, here), pattern_of_graph(g, other)
    assert a.key != b.key
    np.testing.assert_array_equal(a.vector[:56], b.vector[:56])
    assert not np.array_equal(a.vector[56:], b.vector[56:])
