"""Matrix products: `matmul` (reference kernel, any operands) and `matmul_packed` (constant weights
packed into column panels by passes/pack_weights.py, with an optional fused bias + activation)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import GraphError, UnsupportedOpError
from ..codegen.dims import c_dim
from ..ir.graph import Dim, Node, TensorType, dims_equal, numel
from ..ir.op import OpDef, broadcast, op_def, register

# A packed GEMM's fused epilogue (attr "act", set by passes/fuse_epilogue.py) -> the WT_ACT_* code
# of kernels/wt_act.h that applies it.
GEMM_ACTS: dict[str, int] = {"relu": 1, "gelu": 2, "gelu_tanh": 3}


def _matmul_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    a, b = t[0], t[1]
    if a.rank < 2 or b.rank < 2:
        raise GraphError("matmul needs rank >= 2 operands")
    batch = broadcast(a.shape[:-2], b.shape[:-2])
    return [TensorType(a.dtype, (*batch, a.shape[-2], b.shape[-1]))]


def _matmul_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    y = np.matmul(args[0].astype(np.float64), args[1].astype(np.float64))
    if len(args) > 2 and args[2] is not None:
        y = y + args[2]
    return [y.astype(args[0].dtype)]


def _emit_matmul(em: Any, n: Node) -> None:
    a, b, out = n.inputs[0], n.inputs[1], n.outputs[0]
    at, bt, ot = em.t(a), em.t(b), em.t(out)
    if at.dtype != "f32":
        raise UnsupportedOpError(f"matmul on {at.dtype} tensors")
    M, K, N = at.shape[-2], at.shape[-1], bt.shape[-1]
    batch = numel(list(ot.shape[:-2]))

    def bstride(t: TensorType, size: Dim) -> Dim:
        if t.rank == 2 or dims_equal(numel(list(t.shape[:-2])), 1):
            return 0
        if dims_equal(numel(list(t.shape[:-2])), batch):
            return size
        raise UnsupportedOpError(f"matmul with partially broadcast batch dims {at} @ {bt}")

    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    em.w.line(
        f"wt_matmul_f32({em.var(out)}, {em.var(a)}, {em.var(b)}, {em.opt(bias)}, "
        f"{c_dim(batch)}, {c_dim(M)}, {c_dim(N)}, {c_dim(K)}, {c_dim(bstride(at, M * K))}, "
        f"{c_dim(bstride(bt, K * N))});"
    )


def _matmul_flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return 2 * numel(outs[0].shape) * ins[0].shape[-1]


# ---- packed ---------------------------------------------------------------------------------------
def _packed_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    a = t[0]
    act = n.attrs.get("act")
    if act is not None and act not in GEMM_ACTS:
        raise GraphError(f"matmul_packed act={act!r}: expected one of {sorted(GEMM_ACTS)}")
    return [TensorType(a.dtype, (*a.shape[:-1], n.attrs["n"]))]


def _packed_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    """Weights in panels (P, K, PANEL); see passes/pack_weights.py."""
    wp, a = args[1], n.attrs
    w = wp.transpose(1, 0, 2).reshape(wp.shape[1], -1)[:, : a["n"]]
    y = np.matmul(args[0].astype(np.float64), w.astype(np.float64))
    if len(args) > 2 and args[2] is not None:
        y = y + args[2]
    y = y.astype(args[0].dtype)
    if a.get("act"):  # fused epilogue: passes/fuse_epilogue.py
        y = op_def(a["act"]).interp(Node(a["act"], (), ()), [y], bind, [])[0]
    return [y]


def _emit_packed(em: Any, n: Node) -> None:
    a, wp, out = n.inputs[0], n.inputs[1], n.outputs[0]
    at = em.t(a)
    rows = c_dim(numel(list(at.shape[:-1])))  # the weights are shared: every leading dim is a row
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    act = n.attrs.get("act")  # fused epilogue (passes/fuse_epilogue.py): a WT_ACT_* code of wt_act.h
    em.w.line(
        f"wt_gemm_packed_act_f32({em.var(out)}, {em.var(a)}, {em.var(wp)}, {em.opt(bias)}, "
        f"1, {rows}, {n.attrs['n']}, {c_dim(at.shape[-1])}, 0, {GEMM_ACTS[act] if act else 0});"
    )


register(
    OpDef("matmul", "kernel", _matmul_infer, _matmul_interp, _emit_matmul, _matmul_flops),
    OpDef("matmul_packed", "kernel", _packed_infer, _packed_interp, _emit_packed, _matmul_flops),
)
