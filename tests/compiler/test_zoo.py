"""The zoo: every model compiles, and matches PyTorch on fresh random inputs."""

from __future__ import annotations

import json

import pytest
import torch

import wasm_torch
from wasm_torch.compiler.check import compare, reference_outputs
from wasm_torch.zoo import ZOO, build

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_matches_torch_on_fresh_inputs(name, artifacts):
    model, example, dyn = build(name)
    art = artifacts(name, model, example, dyn)
    assert art.report["validation"]["ok"]
    m = wasm_torch.load(art)
    for seed in (11, 12):
        fresh = ZOO[name].inputs(torch.Generator().manual_seed(seed))
        got = m(*[x.numpy() for x in fresh])
        got = list(got) if isinstance(got, tuple) else [got]
        res = compare(got, reference_outputs(model, fresh), 1e-4, 1e-3)
        assert res["ok"], (name, res)
    assert art.code_bytes < 100_000, "model.wasm (code only) must stay under 100 KB"
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert manifest["files"]["model.wasm"]["bytes"] == art.code_bytes


@pytest.mark.parametrize("name", ["bert", "gpt2", "mlp"])
def test_dynamic_dimension_runs_at_other_sizes(name, artifacts):
    model, example, dyn = build(name)
    art = artifacts(name, model, example, dyn)
    m = wasm_torch.load(art)
    g = torch.Generator().manual_seed(5)
    if name == "mlp":
        sizes = [(1, 64), (17, 64), (64, 64)]
        cases = [(torch.randn(*s, generator=g),) for s in sizes]
    else:
        cases = []
        for t in (2, 7, 33, 64):
            ids = torch.randint(0, 500, (2, t), generator=g)
            mask = torch.ones(2, t, dtype=torch.long)
            mask[0, t // 2 :] = 0
            cases.append((ids, mask))
    for inputs in cases:
        got = m(*[x.numpy() for x in inputs])
        assert compare([got], reference_outputs(model, inputs), 1e-4, 1e-3)["ok"], [x.shape for x in inputs]
