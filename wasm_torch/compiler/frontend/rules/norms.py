"""Normalisations beyond layer norm and inference batch norm: GroupNorm, InstanceNorm (batch norm
with the input's own statistics), torch.linalg.vector_norm / Tensor.norm / F.normalize.

Group and instance norm normalise contiguous runs of the input, so they reuse the vectorised
layer-norm kernel (`layer_norm` over the last axis of a free reshape) and apply the per-channel
affine afterwards as elementwise ops (fused by passes/fuse_elementwise.py).
"""

from __future__ import annotations

from typing import Any

import torch

from ....errors import UnsupportedOpError
from ...ir.graph import numel
from ..aten import _args, rule
from ..context import Lowering


def _affine(L: Lowering, y: str, w: str | None, b: str | None, channels: Any, rank: int) -> str:
    bshape = (channels,) + (1,) * (rank - 2)
    if w:
        y = L.emit("mul", [y, L.emit("reshape", [w], {"shape": bshape})])
    if b:
        y = L.emit("add", [y, L.emit("reshape", [b], {"shape": bshape})])
    return y


def _normalize_runs(L: Lowering, x: str, rows: tuple, eps: float) -> str:
    """(x - mean) / sqrt(var + eps) over each run of the trailing elements of shape `rows + (run,)`."""
    shape = L.type_of(x).shape
    flat = L.emit("reshape", [x], {"shape": rows})
    y = L.emit("layer_norm", [flat, "", ""], {"n_axes": 1, "eps": float(eps)})
    return L.emit("reshape", [y], {"shape": shape})


@rule("native_group_norm.default")
def _group_norm(L: Lowering, fx: torch.fx.Node) -> list:
    x, w, b, _n, _c, _hw, groups, eps = fx.args
    xv = L.value(x)
    t = L.type_of(xv)
    if t.dtype != "f32":
        raise UnsupportedOpError(f"group norm of {t.dtype} tensors (float32 only)")
    N, C = t.shape[0], t.shape[1]
    rest = numel(list(t.shape[2:]))
    y = _normalize_runs(L, xv, (N * groups, (C // groups) * rest), eps)
    y = _affine(L, y, L.value(w) if w is not None else None, L.value(b) if b is not None else None, C, t.rank)
    return [y, None, None]


@rule("_native_batch_norm_legit.no_stats", "_native_batch_norm_legit.default")
def _batch_norm_input_stats(L: Lowering, fx: torch.fx.Node) -> list:
    """Batch norm with the statistics of the input itself (InstanceNorm, BatchNorm in training mode or
    with track_running_stats=False): mean and biased variance over every axis but the channels."""
    target = str(fx.target)
    x, w, b = (L.value(v) if v is not None else None for v in fx.args[:3])
    if target.endswith(".default"):
        training, eps = fx.args[5], fx.args[7]
        if not training:
            raise UnsupportedOpError("_native_batch_norm_legit with training=False (use eval-mode batch norm)")
    else:
        eps = fx.args[5]
    t = L.type_of(x)
    C = t.shape[1]
    if t.shape[0] == 1:  # one image: each channel's values are one contiguous run
        y = _normalize_runs(L, x, (C, numel(list(t.shape[2:]))), eps)
    else:
        axes = tuple(a for a in range(t.rank) if a != 1)
        mu = L.emit("reduce_mean", [x], {"axes": axes, "keepdim": True})
        d = L.emit("sub", [x, mu])
        var = L.emit("reduce_mean", [L.emit("mul", [d, d])], {"axes": axes, "keepdim": True})
        y = L.emit("mul", [d, L.emit("rsqrt", [L.emit("add", [var, L.operand(float(eps), "f32")])])])
    return [_affine(L, y, w, b, C, t.rank), None, None]


@rule("linalg_vector_norm.default")
def _vector_norm(L: Lowering, fx: torch.fx.Node) -> str:
    args = _args(fx, 2, None, False)
    x = L.value(args[0])
    t = L.type_of(x)
    if t.dtype != "f32":
        x = L.cast(x, "f32")
    p = float(args[1])
    dims = args[2]
    axes = tuple(range(t.rank)) if dims is None or (isinstance(dims, (list, tuple)) and not dims) else (
        (dims,) if isinstance(dims, int) else tuple(dims)
    )
    axes = tuple(a % max(t.rank, 1) for a in axes)
    keep = bool(args[3])
    attrs = {"axes": axes, "keepdim": keep}
    a = L.emit("abs", [x])
    if p == float("inf"):
        return L.emit("reduce_max", [a], attrs)
    if p == float("-inf"):
        return L.emit("reduce_min", [a], attrs)
    if p == 0:
        nz = L.cast(L.emit("ne", [x, L.operand(0.0, "f32")]), "f32")
        return L.emit("reduce_sum", [nz], attrs)
    if p == 1:
        return L.emit("reduce_sum", [a], attrs)
    if p == 2:
        return L.emit("sqrt", [L.emit("reduce_sum", [L.emit("mul", [x, x])], attrs)])
    s = L.emit("reduce_sum", [L.emit("pow", [a, L.operand(p, "f32")])], attrs)
    return L.emit("pow", [s, L.operand(1.0 / p, "f32")])
