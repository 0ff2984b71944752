"""The packed GEMM (kernels/wt_gemm_packed.h) and its fused epilogue (passes/fuse_epilogue.py).

Correctness over many shapes from one compile: a module holds many Linear layers, each applied to
its own input, so edge tiles (odd M, M = 1), partial panels (N not a multiple of the panel, N = 1),
K below / not a multiple of the 4-step unroll, and a big K are all covered. Results are compared
with a float64 reference under the worst-case bound of float32 summation, (K + 2) u sum_k |a_k w_k|:
a wrong or missing term is far bigger than that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import wasm_torch
from wasm_torch.compiler import lower
from wasm_torch.compiler.ir.interp import run
from wasm_torch.compiler.passes.pack_weights import PANEL

# (rows, K, N, bias): rows are the flattened leading dims of each input
SHAPES = [
    (1, 1, 1, True),
    (1, 384, 384, True),
    (1, 3, PANEL, False),
    (2, 2, 2, True),
    (3, 5, 7, True),
    (5, 31, 15, False),
    (7, 17, 33, True),
    (9, 64, PANEL + 1, True),
    (13, 3, 1, False),
    (4, 1000, 19, True),
    (6, 4, 3 * PANEL, False),
    (11, 129, 65, True),
    (17, 7, 31, True),
    (1, 513, 2 * PANEL - 1, False),
    (3, 6, 100, True),
    (64, 40, 24, True),
    (2, 1, 40, True),
    (33, 9, 5, False),
    (8, 12, 17, True),
    (15, 2, 3, True),
    (10, 255, 47, False),
    (4, 8, 1, True),
]


class ManyLinears(nn.Module):
    def __init__(self, shapes: list[tuple[int, int, int, bool]]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(k, n, bias=b) for _, k, n, b in shapes)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(layer(x) for layer, x in zip(self.layers, xs, strict=True))


def _inputs(shapes: list[tuple[int, int, int, bool]]) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    # some inputs carry batch dims (the kernel sees them as rows)
    return tuple(
        torch.randn((2, m // 2, k) if m % 2 == 0 and m > 2 else (m, k), generator=g) for m, k, _, _ in shapes
    )


def _assert_close(got: np.ndarray, x: torch.Tensor, layer: nn.Linear, what: str) -> None:
    a = x.double().reshape(-1, layer.in_features).numpy()
    w = layer.weight.detach().double().numpy().T
    b = layer.bias.detach().double().numpy() if layer.bias is not None else np.zeros(w.shape[1])
    want = a @ w + b
    bound = (layer.in_features + 2) * 2.0**-24 * (np.abs(a) @ np.abs(w) + np.abs(b)) + 1e-30
    err = np.abs(got.reshape(want.shape).astype(np.float64) - want)
    assert (err <= bound).all(), (
        f"{what}: max err {err.max():.3g}, at {np.unravel_index(err.argmax(), err.shape)}"
    )


@pytest.mark.toolchain
@pytest.mark.wasm
def test_packed_gemm_matches_float64_over_many_shapes(artifacts):
    torch.manual_seed(0)
    model = ManyLinears(SHAPES).eval()
    xs = _inputs(SHAPES)
    art = artifacts("gemm_shapes", model, xs)
    assert art.report["ops"].get("matmul_packed") == len(SHAPES)
    outs = wasm_torch.load(art)(*[x.numpy() for x in xs])
    for (m, k, n, b), x, layer, got in zip(SHAPES, xs, model.layers, outs, strict=True):
        _assert_close(got, x, layer, f"rows={m} K={k} N={n} bias={b}")


ACTS = {
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "gelu_tanh": lambda y: nn.functional.gelu(y, approximate="tanh"),
}


class LinearAct(nn.Module):
    """Linear (+ optional bias) -> activation, for every activation, each on its own input."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(23, 37, bias=b) for _ in ACTS for b in (True, False))

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fns = [f for f in ACTS.values() for _ in (True, False)]
        return tuple(f(layer(x)) for f, layer, x in zip(fns, self.layers, xs, strict=True))


def _passes(model: nn.Module, xs: tuple[torch.Tensor, ...]):
    return lower(model, xs)


@pytest.mark.toolchain
@pytest.mark.wasm
def test_fused_activations_match_torch(artifacts):
    torch.manual_seed(1)
    model = LinearAct().eval()
    xs = tuple(torch.randn(2, 5, 23) * 2 for _ in model.layers)
    art = artifacts("gemm_acts", model, xs)
    assert not set(ACTS) & set(art.report["ops"]), art.report["ops"]  # every activation was fused
    outs = wasm_torch.load(art)(*[x.numpy() for x in xs])
    with torch.no_grad():
        want = model(*xs)
    for got, w, name in zip(outs, want, [a for a in ACTS for _ in (0, 1)], strict=True):
        np.testing.assert_allclose(got, w.numpy(), rtol=1e-5, atol=2e-6, err_msg=name)


class IdentityAct(nn.Module):
    """y = act(x @ I): the epilogue sees exactly x, so its accuracy is measured directly."""

    def __init__(self, n: int):
        super().__init__()
        self.lin = nn.Linear(n, n, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(n))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.lin(x)
        return tuple(f(y) for f in ACTS.values())


def _gelu64(x: np.ndarray) -> np.ndarray:
    return np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.ravel()]).reshape(x.shape)


def _gelu_tanh64(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


@pytest.mark.toolchain
@pytest.mark.wasm
def test_epilogue_activation_accuracy(artifacts):
    n = 64
    grid = np.concatenate(
        [np.linspace(-12, 12, 200 * n - 8), [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0, 3e4, -3e4]]
    )
    x = torch.tensor(grid.reshape(-1, n), dtype=torch.float32)
    art = artifacts("gemm_act_accuracy", IdentityAct(n).eval(), (x,))
    relu, gelu, gelu_tanh = wasm_torch.load(art)(x.numpy())
    x64 = x.double().numpy()
    np.testing.assert_array_equal(relu, np.maximum(x.numpy(), 0))
    for got, want, name in ((gelu, _gelu64(x64), "gelu"), (gelu_tanh, _gelu_tanh64(x64), "gelu_tanh")):
        err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
        assert err.max() <= 1e-6, f"{name}: max error {err.max():.3g} at x={x64.ravel()[err.argmax()]}"


def test_fusion_appears_in_the_ir_and_keeps_the_meaning():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4), nn.ReLU()).eval()
    x = torch.randn(3, 8)
    g = _passes(model, (x,))
    assert [(n.op, n.attrs.get("act")) for n in g.nodes] == [
        ("matmul_packed", "gelu"),
        ("matmul_packed", "relu"),
    ]
    with torch.no_grad():
        np.testing.assert_allclose(
            run(g, {g.inputs[0]: x.numpy()})[0], model(x).numpy(), rtol=1e-5, atol=1e-6
        )


class MatmulPlusBias(nn.Module):
    """x @ W + b written out (an add node, not a Linear bias), then tanh-GELU, over 3-D input."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 10))
        self.b = nn.Parameter(torch.randn(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x @ self.w + self.b, approximate="tanh")


def test_bias_add_is_folded_into_the_gemm():
    torch.manual_seed(3)
    model, x = MatmulPlusBias().eval(), torch.randn(2, 3, 6)
    g = _passes(model, (x,))
    mm = [n for n in g.nodes if n.op == "matmul_packed"]
    assert len(mm) == 1 and mm[0].attrs.get("act") == "gelu_tanh" and len(mm[0].inputs) == 3
    assert not {"add", "gelu_tanh"} & {n.op for n in g.nodes}
    with torch.no_grad():
        np.testing.assert_allclose(
            run(g, {g.inputs[0]: x.numpy()})[0], model(x).numpy(), rtol=1e-5, atol=1e-6
        )


class SecondUse(nn.Module):
    """A Linear output used twice (returned and activated), and x @ w + c with a per-element c."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 7)
        self.w = nn.Parameter(torch.randn(5, 7))
        self.c = nn.Parameter(torch.randn(4, 7))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.lin(x)
        return y, torch.relu(y), nn.functional.gelu(x @ self.w + self.c)


def test_no_fusion_when_the_gemm_output_has_another_use():
    torch.manual_seed(4)
    model, x = SecondUse().eval(), torch.randn(4, 5)
    g = _passes(model, (x,))
    mm = [n for n in g.nodes if n.op == "matmul_packed"]
    assert len(mm) == 2 and all(not n.attrs.get("act") for n in mm)
    assert sorted(len([i for i in n.inputs if i]) for n in mm) == [2, 3]  # c was not taken for a bias
    with torch.no_grad():
        for got, want in zip(run(g, {g.inputs[0]: x.numpy()}), model(x), strict=True):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
