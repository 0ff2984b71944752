"""Whole models with fp16 and int8 weights against PyTorch float32, the validation bar, the options,
and the refusals (a model with nothing to quantize, bad calibration inputs, bars out of range)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

import wasm_torch
from wasm_torch.compiler import CompileOptions, lower
from wasm_torch.compiler.options import search_space
from wasm_torch.compiler.quant_check import AgreementBar, check_agreement
from wasm_torch.errors import CompileError, QuantizationError, ValidationError
from wasm_torch.runtime import VariantModule
from wasm_torch.zoo.models import build as zoo_build

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


class ConvNet(nn.Module):
    """Every conv kind the int8 kernels have: 3x3 (BN + ReLU folded), depthwise strided, 1x1, grouped, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 24, 1)
        self.gc = nn.Conv2d(24, 24, 3, padding=1, groups=4)
        self.fc = nn.Linear(24 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = nn.functional.relu6(self.dw(x))
        x = torch.relu(self.gc(self.pw(x)))
        return self.fc(x.flatten(1))


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    m = ConvNet().eval()
    with torch.no_grad():  # realistic batch-norm statistics
        m.b1.running_mean.uniform_(-0.2, 0.2)
        m.b1.running_var.uniform_(0.5, 2.0)
    return m


def _outputs(out: object) -> list[np.ndarray]:
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("fmt", ["fp16", "int8"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "mobilenet", "transformer_encoder", "bert", "gpt2"])
def test_zoo_models_within_the_bar_on_fresh_inputs(tmp_path, name, fmt):
    """Compiled with the format's default bar; then, on inputs the compiler never saw, the same bar holds."""
    model, example, dyn = zoo_build(name)
    art = wasm_torch.compile(model, example, tmp_path / name, dynamic_shapes=dyn, quantize=fmt)
    v = art.manifest.raw["validation"]
    assert v["format"] == fmt and v["ok"] and v["cosine"] >= v["bar"]["min_cosine"]
    assert art.manifest.raw["compiler"]["options"]["quantize"] == fmt
    fresh, _, _ = zoo_build(name, seed=1)[1], None, None
    with torch.no_grad():
        want = [t.numpy() for t in torch.utils._pytree.tree_flatten(model(*fresh))[0]]
    got = _outputs(wasm_torch.load(tmp_path / name)(*[t.numpy() for t in fresh]))
    assert check_agreement(got, want, fmt, AgreementBar.for_format(fmt))["ok"]


def test_weights_shrink_as_the_format_says(tmp_path):
    model, example, _ = zoo_build("mlp")
    sizes = {}
    for fmt in (None, "fp16", "int8"):
        art = wasm_torch.compile(model, example, tmp_path / str(fmt), quantize=fmt)
        sizes[fmt] = art.weights_bytes
        kinds = {w["dtype"] for w in art.manifest.raw["weights"]}
        assert ("float16" in kinds) == (fmt == "fp16") and ("int8" in kinds) == (fmt == "int8")
    assert sizes["fp16"] < 0.52 * sizes[None] and sizes["int8"] < 0.3 * sizes[None]


def test_convnet_all_kernels_threads_and_relaxed_builds(tmp_path):
    """The int8 convnet on every build: threaded ones reproduce model.wasm bit for bit (compile checks
    it too); with relaxed=True the GEMM / conv weights are 7-bit and the relaxed build takes the
    relaxed dot product -- and its integer sums, hence its outputs, equal model.wasm's."""
    model = _convnet()
    x = torch.randn(2, 3, 12, 12)
    art = wasm_torch.compile(model, (x,), tmp_path / "c", options=CompileOptions(quantize="int8", relaxed=True))
    ops = art.manifest.raw["ops"]
    assert ops.get("conv2d_q8") == 3 and ops.get("dwconv2d_q8") == 1 and ops.get("matmul_q8") == 1
    assert {w["dtype"] for w in art.manifest.raw["weights"]} >= {"int8"}
    report = art.manifest.raw["validation"]["variants"]
    assert set(report) == {"simd128-threads", "relaxed", "relaxed-threads"}
    xs = torch.randn(2, 3, 12, 12).numpy()
    base = wasm_torch.load(tmp_path / "c", threads=1)(xs)
    for variant, threads in [("simd128-threads", 3), ("relaxed", 1), ("relaxed-threads", 2)]:
        m = VariantModule(tmp_path / "c", variant=variant, threads=threads)
        try:
            assert m(xs).tobytes() == base.tobytes(), variant  # the f32 parts here have no FMA tiles
        finally:
            m.close()


def test_static_calibration(tmp_path):
    model = _convnet()
    x = torch.randn(1, 3, 12, 12)
    calib = [(torch.randn(1, 3, 12, 12),) for _ in range(4)]
    art = wasm_torch.compile(model, (x,), tmp_path / "s", quantize="int8-static", calibration=calib)
    g = lower(model, (x,), options=CompileOptions(quantize="int8"))
    assert "static" not in next(n for n in g.nodes if n.op == "conv2d_q8").attrs  # dynamic by default
    assert art.manifest.raw["validation"]["cosine"] > 0.99
    c = (tmp_path / "s" / "manifest.json").read_text()
    assert '"quantize": "int8-static"' in c


def test_bert_dynamic_sequence_int8(tmp_path):
    """A symbolic sequence length reaches q8_rows and the GEMMs (rows = 2 x seq) and the embedding lookups."""
    model, example, dyn = zoo_build("bert")
    art = wasm_torch.compile(model, example, tmp_path / "b", dynamic_shapes=dyn, quantize="int8")
    m = wasm_torch.load(tmp_path / "b")
    for seq in (3, 17):
        ids = torch.randint(0, 100, (2, seq))
        mask = torch.ones(2, seq, dtype=torch.int64)
        with torch.no_grad():
            want = model(ids, mask).numpy()
        got = m(ids.numpy(), mask.numpy())
        assert check_agreement([got], [want], "int8", AgreementBar.for_format("int8"))["cosine"] > 0.99
    assert art.manifest.raw["ops"].get("q8_rows", 0) >= 4


# ---- options, bars and refusals ----------------------------------------------------------------------
def test_options_and_search_space():
    assert CompileOptions().quantize is None
    o = CompileOptions(quantize="int8")
    assert CompileOptions.from_json(o.to_json()) == o
    assert "quantize" not in search_space()  # an accuracy contract, not a tuning knob
    for bad in ("int4", "INT8", 8, True):
        with pytest.raises(CompileError, match="quantize"):
            CompileOptions(quantize=bad)
    with pytest.raises(CompileError, match="pack_weights and pack_conv"):
        CompileOptions(quantize="int8").without("pack_weights")


class NoWeights(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x * 2.0, dim=-1) + x.mean()


def test_nothing_to_quantize_is_an_error(tmp_path):
    for fmt in ("fp16", "int8"):
        with pytest.raises(QuantizationError, match="no layer to quantize"):
            wasm_torch.compile(NoWeights(), (torch.randn(3, 5),), tmp_path / fmt, quantize=fmt)
    assert not (tmp_path / "int8").exists()


def test_bad_calibration_is_a_clear_error(tmp_path):
    model, x = _convnet(), torch.randn(1, 3, 12, 12)
    cases = [
        ([(torch.randn(1, 3, 10, 12),)], "sample 0, input 'x': shape \\[1, 3, 10, 12\\]"),
        ([(torch.randn(1, 3, 12, 12),), (torch.randn(3, 12, 12),)], "sample 1, input 'x': shape \\[3, 12, 12\\]"),
        ([(torch.randint(0, 5, (1, 3, 12, 12)),)], "dtype int64 where the model takes float32"),
        ([(torch.randn(1, 3, 12, 12), torch.randn(1))], "expected 1 input"),
        ([("not a tensor",)], "expected a tensor or array"),
        (torch.randn(4, 1, 3, 12, 12), "must be a list of samples"),
        ([], "give 1 to 256"),
        ([(torch.randn(1, 3, 12, 12),)] * 300, "give 1 to 256"),
    ]
    for calib, msg in cases:
        with pytest.raises(QuantizationError, match=msg):
            wasm_torch.compile(model, (x,), tmp_path / "bad", quantize="int8-static", calibration=calib)
    with pytest.raises(QuantizationError, match="needs calibration inputs"):
        wasm_torch.compile(model, (x,), tmp_path / "bad", quantize="int8-static")
    with pytest.raises(QuantizationError, match="used by quantize='int8-static' only"):
        wasm_torch.compile(model, (x,), tmp_path / "bad", quantize="int8", calibration=[(x,)])
    zeros = [(torch.zeros(1, 3, 12, 12),)]
    with pytest.raises(QuantizationError, match="no usable scale"):
        wasm_torch.compile(model, (x,), tmp_path / "bad", quantize="int8-static", calibration=zeros)
    assert not (tmp_path / "bad").exists()


def test_the_bar_refuses_and_can_be_set(tmp_path):
    model, example, _ = zoo_build("cnn")
    with pytest.raises(ValidationError, match=r"cosine .* < min_cosine=1\.0"):
        wasm_torch.compile(model, example, tmp_path / "strict", quantize="int8", min_cosine=1.0)
    assert not (tmp_path / "strict").exists()
    art = wasm_torch.compile(model, example, tmp_path / "loose", quantize="int8", min_cosine=0.5, min_top1=0.0)
    assert art.manifest.raw["validation"]["bar"] == {"min_cosine": 0.5, "min_top1": 0.0}
    for bad in (1.5, -2, float("nan"), "0.9", True):
        with pytest.raises(ValidationError, match="min_cosine"):
            wasm_torch.compile(model, example, tmp_path / "x", quantize="int8", min_cosine=bad)
    with pytest.raises(CompileError, match=r"quantize='fp16' but options\.quantize='int8'"):
        wasm_torch.compile(model, example, tmp_path / "x", quantize="fp16", options=CompileOptions(quantize="int8"))
    with pytest.raises(CompileError, match="stages and quantize"):
        wasm_torch.compile(model, example, tmp_path / "x", quantize="int8", stages=2)


def test_agreement_report():
    a = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], np.float32)
    r = check_agreement([a * 1.001], [a], "int8", AgreementBar(0.99))
    assert r["cosine"] > 0.9999 and r["top1"] == 1.0 and r["row_cosine"] > 0.9999
    with pytest.raises(ValidationError, match="NaN where PyTorch"):
        check_agreement([np.where(a > 2, np.nan, a)], [a], "int8", AgreementBar(0.5))
    with pytest.raises(ValidationError, match="argmax"):
        check_agreement([a[:, ::-1].copy()], [a], "int8", AgreementBar(-1.0, min_top1=0.9))
    inf = a.copy()
    inf[0, 0] = np.inf
    with pytest.raises(ValidationError, match=r"cosine 0\.0"):
        check_agreement([inf], [a], "int8", AgreementBar(0.5))
    ints = np.array([1, 2, 3])
    with pytest.raises(ValidationError, match="integers"):
        check_agreement([np.array([1, 2, 4])], [ints], "int8", AgreementBar(0.9))
    assert check_agreement([np.array([1, 2, 4])], [ints], "int8", AgreementBar(0.9, 0.6))["top1"] == pytest.approx(2 / 3)
    json.dumps(r)  # strict JSON: it goes into the manifest


def test_dynamic_batch_conv(tmp_path):
    model = _convnet()
    art = wasm_torch.compile(model, (torch.randn(2, 3, 12, 12),), tmp_path / "d",
                             dynamic_shapes=({0: Dim("batch", min=1, max=4)},), quantize="int8")
    m = wasm_torch.load(art.path)
    for b in (1, 4):
        x = torch.randn(b, 3, 12, 12)
        with torch.no_grad():
            want = model(x).numpy()
        assert check_agreement([m(x.numpy())], [want], "int8", AgreementBar(0.97))["ok"]


def test_quantized_graphs_round_trip_as_ir_text():
    """graph.txt of a quantized model reads back (WASM_TORCH_DEBUG=2 writes it; passes tests use it)."""
    from wasm_torch.compiler.ir import format_graph, parse_graph
    from wasm_torch.compiler.ir.interp import run

    model, x = _convnet(), torch.randn(1, 3, 12, 12)
    for fmt, kw in (("int8", {}), ("fp16", {})):
        g = lower(model, (x,), options=CompileOptions(quantize=fmt, **kw))
        h = parse_graph(format_graph(g, values=True))
        assert format_graph(h) == format_graph(g)
        inp = {g.inputs[0]: x.numpy()}
        assert run(h, inp)[0].tobytes() == run(g, inp)[0].tobytes()
