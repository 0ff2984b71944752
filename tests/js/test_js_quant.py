"""fp16 and int8 artifacts in the JS runtime: the same artifact runs in Node and in headless Chromium
and gives the Python runtime's bits. In Chromium (which has relaxed SIMD) an int8 artifact compiled
with relaxed=True runs its relaxed build, whose int8 kernels use V8's native
i32x4.relaxed_dot_i8x16_i7x16_add_s: exact integer sums, so its outputs equal model.wasm's in wasmtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import wasm_torch
from wasm_torch.runtime import WasmModule
from wasm_torch.zoo import build

from .test_js_threads import _decode, _site, chromium, serve  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


class QNet(nn.Module):
    """Only int8 kernels and elementwise code: 3x3 conv (+ folded BN, ReLU), depthwise, 1x1, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 12, 3, padding=1)
        self.b = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12)
        self.pw = nn.Conv2d(12, 16, 1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b(self.c(x)))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def quant_artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    arts = {}
    for name, fmt in [("mlp", "int8"), ("cnn", "int8"), ("bert", "int8"), ("mlp", "fp16"), ("bert", "fp16")]:
        model, example, dyn = build(name)
        art = wasm_torch.compile(model, example, root / f"{name}_{fmt}", dynamic_shapes=dyn, quantize=fmt)
        names = [s.name for s in art.manifest.inputs]
        fresh = build(name, seed=3)[1]
        arts[f"{name}_{fmt}"] = (art.path, dict(zip(names, [x.numpy() for x in fresh], strict=True)))
    torch.manual_seed(0)
    q = QNet().eval()
    x = torch.randn(1, 3, 16, 16)
    art = wasm_torch.compile(q, (x,), root / "qnet", options=wasm_torch.CompileOptions(quantize="int8", relaxed=True))
    arts["qnet_relaxed"] = (art.path, {art.manifest.inputs[0].name: torch.randn(1, 3, 16, 16).numpy()})
    return arts


def test_node_runs_quantized_artifacts_bit_identically(quant_artifacts, run_node, tmp_path):
    for name, (path, inputs) in quant_artifacts.items():
        want = WasmModule(path).run(inputs)
        for threads in (1, 2):
            res = run_node(path, [inputs], tmp_path / f"{name}{threads}", threads=threads)
            assert "error" not in res and "error" not in res["runs"][0], res
            for k, w in want.items():
                got = res["runs"][0]["outputs"][k]
                assert got.tobytes() == w.tobytes(), (name, threads, k)


@pytest.mark.slow
def test_chromium_relaxed_dot_equals_simd128(quant_artifacts, chromium, serve, tmp_path):  # noqa: F811
    arts = {k: quant_artifacts[k] for k in ("qnet_relaxed", "bert_int8")}
    res = chromium(serve(_site(tmp_path, arts, [("auto", 1), ("auto", 2), ("simd128", 1)]), isolated=True), tmp_path)
    out = res["result"]
    assert "error" not in out, out
    for name, (path, inputs) in arts.items():
        want = WasmModule(path).run(inputs)
        for run in out["models"][name]:
            if name == "qnet_relaxed" and run["variant"] == "auto":
                assert run["built"].startswith("relaxed"), run  # Chromium has relaxed SIMD: the dot product runs
            for k, w in want.items():
                got = _decode(run["outputs"][k])
                assert got.tobytes() == w.tobytes(), (name, run["variant"], run["threads"], k)
    assert np.isfinite(_decode(out["models"]["qnet_relaxed"][0]["outputs"]["output_0"])).all()
