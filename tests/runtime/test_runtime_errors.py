"""Bad input and sandbox limits: clear errors, and the module (and process) keep working."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

import wasm_torch
from wasm_torch.errors import (
    ArtifactError,
    DeadlineExceeded,
    ExportError,
    FuelExhausted,
    InputError,
    IntegrityError,
    MemoryLimitError,
    TrapError,
    UnsupportedOpError,
)

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


class Heavy(nn.Module):
    """Enough work per call (~0.3 GFLOP) that a 1 ms deadline or small fuel budget is always hit."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(512, 512) for _ in range(4)])

    def forward(self, x):
        return self.layers(x)


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    torch.manual_seed(0)
    return wasm_torch.compile(Heavy(), (torch.randn(128, 512),), tmp_path_factory.mktemp("h") / "heavy")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
    art = wasm_torch.compile(
        model,
        (torch.randn(2, 8),),
        tmp_path_factory.mktemp("s") / "small",
        dynamic_shapes=({0: Dim("batch", min=1, max=16)},),
    )
    return model, art


def test_wrong_count_shape_dtype(small):
    _, art = small
    m = wasm_torch.load(art)
    x = np.zeros((2, 8), np.float32)
    with pytest.raises(InputError, match="expects 1 inputs"):
        m(x, x)
    with pytest.raises(InputError, match=r"expects shape \['batch', 8\], got \[2, 9\]"):
        m(np.zeros((2, 9), np.float32))
    with pytest.raises(InputError, match="rank 2"):
        m(np.zeros(8, np.float32))
    with pytest.raises(InputError, match="expects dtype float32, got int64"):
        m(np.zeros((2, 8), np.int64))
    with pytest.raises(InputError, match=r"outside the compiled range \[1, 16\]"):
        m(np.zeros((17, 8), np.float32))
    with pytest.raises(InputError, match="missing"):
        m.run({"nope": x})
    assert m(x).shape == (2, 4)  # still works after every error
    assert m(np.zeros((2, 8), np.float64)).dtype == np.float32  # same-kind casts are accepted


def test_torch_tensors_and_named_inputs(small):
    model, art = small
    m = wasm_torch.load(art)
    x = torch.randn(5, 8)
    want = model(x).detach().numpy()
    np.testing.assert_allclose(m(x), want, atol=1e-6)
    name = m.inputs[0].name
    np.testing.assert_allclose(m(**{name: x.numpy()}), want, atol=1e-6)
    view = m(x.numpy(), copy=False)
    assert not view.flags.owndata  # a zero-copy view of linear memory


def test_tampered_and_broken_artifacts(small, tmp_path):
    _, art = small
    bad = tmp_path / "bad"
    shutil.copytree(art.path, bad)
    w = bytearray((bad / "weights.bin").read_bytes())
    w[0] ^= 0xFF
    (bad / "weights.bin").write_bytes(bytes(w))
    with pytest.raises(IntegrityError, match="sha256"):
        wasm_torch.load(bad)
    (bad / "weights.bin").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        wasm_torch.load(bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        wasm_torch.load(bad)
    with pytest.raises(ArtifactError, match="not an artifact folder"):
        wasm_torch.load(tmp_path / "does-not-exist")
    raw = json.loads((art.path / "manifest.json").read_text())
    raw["format"] = "wasm-torch/999"
    (bad / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="format"):
        wasm_torch.load(bad)


def test_memory_cap(small):
    _, art = small
    with pytest.raises(MemoryLimitError, match="needs"):
        wasm_torch.load(art, memory_limit=65536)
    m = wasm_torch.load(art)
    assert m.stats()["memory_bytes"] >= art.manifest.weights_bytes + art.manifest.arena_bytes


def test_deadline_stops_a_long_call_and_the_module_recovers(heavy):
    m = wasm_torch.load(heavy, deadline=0.001)
    x = np.random.default_rng(0).standard_normal((128, 512)).astype(np.float32)
    for _ in range(3):  # repeated traps must not leak the shadow stack
        with pytest.raises(DeadlineExceeded, match="deadline"):
            m(x)
    m.deadline = 60.0
    y = m(x)
    ref = wasm_torch.load(heavy)(x)
    np.testing.assert_allclose(y, ref, rtol=1e-6)


def test_fuel_limit_and_metering(heavy):
    x = np.ones((128, 512), np.float32)
    with pytest.raises(FuelExhausted, match="fuel"):
        wasm_torch.load(heavy, fuel=10_000)(x)
    m = wasm_torch.load(heavy, fuel=10**12)
    m(x)
    m(x)
    s = m.stats()
    assert s["fuel_last"] > 10_000 and s["fuel_total"] == 2 * s["fuel_last"]  # deterministic metering


def test_out_of_range_index_traps_cleanly(tmp_path):
    emb = nn.Embedding(10, 4)
    m = wasm_torch.load(wasm_torch.compile(emb, (torch.tensor([1, 2]),), tmp_path / "emb"))
    with pytest.raises(TrapError, match=r"has 10 at position \(1,\); valid indices are 0\.\.9") as e:
        m(np.array([3, 10]))
    assert isinstance(e.value, InputError)  # the caller's data is wrong: servers answer 4xx
    with pytest.raises(TrapError, match="-1") as neg:  # negative ids too, as torch refuses them
        m(np.array([3, -1]))
    assert isinstance(neg.value, InputError)
    with pytest.raises(IndexError):
        emb(torch.tensor([3, -1]))


def test_unsupported_op_names_op_line_and_list(tmp_path):
    class Sampler(nn.Module):
        def forward(self, x, grid):
            return torch.nn.functional.grid_sample(x, grid, align_corners=False)  # no grid_sample kernel

    with pytest.raises(UnsupportedOpError) as e:
        wasm_torch.compile(Sampler(), (torch.randn(1, 1, 4, 4), torch.rand(1, 2, 2, 2) * 2 - 1), tmp_path / "s")
    msg = str(e.value)
    assert "grid_sampler" in msg and "test_runtime_errors.py" in msg and "docs/ops.md" in msg
    assert not (tmp_path / "s").exists()


def test_export_failure_is_explained(tmp_path):
    class DataDependent(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(ExportError, match=r"torch\.export"):
        wasm_torch.compile(DataDependent(), (torch.randn(3),), tmp_path / "d")


def test_unbounded_dynamic_dim_is_refused(tmp_path):
    with pytest.raises(ExportError, match="no upper bound"):
        wasm_torch.compile(
            nn.Linear(3, 3), (torch.randn(2, 3),), tmp_path / "u", dynamic_shapes=({0: Dim("batch")},)
        )


def test_validation_refuses_to_write(tmp_path, monkeypatch):
    from wasm_torch.compiler import pipeline
    from wasm_torch.errors import ValidationError

    real = pipeline.reference_outputs
    monkeypatch.setattr(pipeline, "reference_outputs", lambda m, x: [y + 1 for y in real(m, x)])
    with pytest.raises(ValidationError, match="max abs error 1"):
        wasm_torch.compile(nn.Linear(3, 2), (torch.randn(1, 3),), tmp_path / "v")
    assert not (tmp_path / "v").exists()


def test_compiled_module_is_cached_in_memory_and_on_disk(small, tmp_path):
    import os
    import subprocess
    import sys

    _, art = small
    assert wasm_torch.load(art).stats()["module_source"] == "memory"  # compiled once in this process already
    code = f"import wasm_torch; print(wasm_torch.load({str(art.path)!r}).stats()['module_source'])"
    env = {**os.environ, "WASM_TORCH_CACHE": str(tmp_path / "cache")}
    def run() -> str:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return proc.stdout.strip()

    assert run() == "compiled"
    assert run() == "disk"  # a new process reuses the serialized Cranelift output
