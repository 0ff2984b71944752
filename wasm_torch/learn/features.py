"""Pattern embedding: a fixed-size vector describing (model graph, shapes, machine) for the memory.

The graph is the frontend's IR (torch.export -> our ops, *before* passes): passes depend on the
compile configuration being searched, and the pattern of a model must not. Layout (64 floats):

    [0, 24)   op-type histogram, op names hashed into 24 buckets (fractions of nodes; a stable hash,
              so ops added to the compiler later do not move the others)
    [24, 34)  share of FLOPs per op group  (GROUPS below)
    [34, 44)  share of bytes moved per op group
    [44, 56)  size and shape: log FLOPs, log bytes, log weight bytes, log node count, log depth,
              log largest activation, FLOP-weighted log2 of GEMM M, N, K and of conv spatial size,
              input and output channels
    [56, 64)  machine (machine.py): cores, SIMD128, relaxed SIMD, FMA, AVX2, wasmtime, CPU hash

Dynamic dimensions are evaluated at their declared maximum (what the memory plan is sized for).
FLOPs are estimates good enough to tell a GEMM-bound model from a memory-bound one; they are not
the compiler's cost model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compiler.ir.graph import Graph, Node, evaluate_dim, evaluate_shape
from .machine import MACHINE_DIMS, Machine, current_machine

GROUPS = ("gemm", "conv", "dwconv", "attention", "pool", "norm", "elementwise", "reduce", "movement", "other")
HIST_BUCKETS = 24
SHAPE_DIMS = 12
DIM = HIST_BUCKETS + 2 * len(GROUPS) + SHAPE_DIMS + MACHINE_DIMS  # 64


# the compiler's registry groups ("kernel" is split by name above); unknown ops are "other"
_REGISTRY_GROUP = {
    "elementwise": "elementwise",
    "fused": "elementwise",
    "reduce": "reduce",
    "movement": "movement",
    "alias": "movement",
    "index": "other",
    "create": "other",
}
_BY_NAME = {
    "matmul": "gemm",
    "matmul_packed": "gemm",
    "dwconv2d": "dwconv",
    "attention": "attention",
    "max_pool2d": "pool",
    "avg_pool2d": "pool",
    "adaptive_avg_pool2d": "pool",
    "layer_norm": "norm",
    "softmax": "norm",
    "log_softmax": "norm",
    "argmax": "reduce",
    "topk": "reduce",
    "cumsum": "reduce",
}


def _registry(op: str) -> Any:
    from ..compiler.ir import op as registry  # importing wasm_torch.compiler registers every op

    return registry.OPS.get(op)


def op_group(node: Node) -> str:
    op = node.op
    if op in ("conv2d", "conv2d_packed"):
        return "dwconv" if int(node.attrs.get("groups", 1) or 1) > 1 else "conv"
    if op in _BY_NAME:
        return _BY_NAME[op]
    d = _registry(op)
    return _REGISTRY_GROUP.get(d.group, "other") if d is not None else "other"


def _bucket(op: str) -> int:
    return int.from_bytes(hashlib.blake2b(op.encode(), digest_size=4).digest(), "little") % HIST_BUCKETS


@dataclass
class NodeCost:
    group: str
    flops: float
    bytes: float
    shape: dict[str, float] = field(default_factory=dict)  # gemm m/n/k, conv hw/cin/cout


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def node_cost(node: Node, shapes: Callable[[str], tuple[int, ...]], itemsize: Callable[[str], int]) -> NodeCost:
    ins = [shapes(v) if v else () for v in node.inputs]
    outs = [shapes(v) for v in node.outputs]
    moved = float(
        sum(_numel(s) * itemsize(v) for v, s in zip(node.inputs, ins, strict=True) if v)
        + sum(_numel(s) * itemsize(v) for v, s in zip(node.outputs, outs, strict=True))
    )
    group = op_group(node)
    out_n = float(_numel(outs[0])) if outs else 0.0
    flops, shape = out_n, {}
    if group == "gemm" and ins and len(ins[0]) >= 1:
        k = float(ins[0][-1])
        flops = 2.0 * out_n * k
        m = out_n / max(1.0, float(outs[0][-1])) if outs[0] else 1.0
        shape = {"m": m, "n": float(outs[0][-1]) if outs[0] else 1.0, "k": k}
    elif group in ("conv", "dwconv") and len(ins) >= 2 and outs and len(outs[0]) == 4:
        cout = max(1, outs[0][1])
        per_out = _numel(ins[1]) / cout  # cin/groups * kh * kw
        flops = 2.0 * out_n * per_out
        shape = {"hw": float(outs[0][2] * outs[0][3]), "cin": float(ins[0][1]), "cout": float(cout)}
    elif group == "attention":
        dims = node.attrs.get("dims")
        if dims and len(dims) == 6 and all(isinstance(d, int) for d in dims):
            b, h, lq, lk, d, dv = dims
            flops = 2.0 * b * h * lq * lk * (d + dv)
    elif group in ("norm", "reduce") and ins:
        flops = float(_numel(ins[0])) * (5.0 if group == "norm" else 1.0)
    elif group == "pool" and ins:
        k = node.attrs.get("kernel") or (1, 1)
        flops = out_n * float(_numel(tuple(k))) if node.op != "adaptive_avg_pool2d" else float(_numel(ins[0]))
    elif node.op == "fused_elementwise":
        flops = out_n * max(1, len(node.attrs.get("program", ()) or ()))
    elif group == "movement":
        flops = 0.0
    return NodeCost(group, flops, moved, shape)


def _registry_flops(node: Node, g: Graph, bindings: dict[Any, int]) -> float | None:
    """The compiler's own FLOP count for a node (its op registry's `flops` facet), if it has one."""
    d = _registry(node.op)
    if d is None or getattr(d, "flops", None) is None:
        return None
    try:
        f = d.flops(node, [g.types[v] for v in node.inputs if v], [g.types[v] for v in node.outputs])
        return float(evaluate_dim(f, bindings))
    except Exception:  # a facet that cannot be evaluated here: use our estimate
        return None


@dataclass(frozen=True)
class GraphFeatures:
    """Everything the embedding is made of, kept readable for reports and tests."""

    op_counts: dict[str, int]
    group_flops: dict[str, float]
    group_bytes: dict[str, float]
    weight_bytes: float
    nodes: int
    depth: int
    max_activation_bytes: float
    shape: dict[str, float]  # FLOP-weighted log2 of gemm m, n, k and conv hw, cin, cout
    symbols: int
    f32_fraction: float

    @property
    def flops(self) -> float:
        return float(sum(self.group_flops.values()))

    @property
    def bytes(self) -> float:
        return float(sum(self.group_bytes.values()))

    def gates(self) -> np.ndarray:
        """Share of FLOPs per op group (sums to 1): how much each group's adapter applies."""
        v = np.array([self.group_flops[g] for g in GROUPS], dtype=np.float64)
        total = v.sum()
        return (v / total if total > 0 else np.full(len(GROUPS), 1.0 / len(GROUPS))).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "op_counts": self.op_counts,
            "gflops": round(self.flops / 1e9, 6),
            "mbytes": round(self.bytes / 1e6, 3),
            "weight_mbytes": round(self.weight_bytes / 1e6, 3),
            "nodes": self.nodes,
            "depth": self.depth,
            "flop_share": {g: round(float(s), 4) for g, s in zip(GROUPS, self.gates(), strict=True)},
        }


def graph_features(g: Graph) -> GraphFeatures:
    bindings = g.max_bindings()
    cache: dict[str, tuple[int, ...]] = {}

    def shape(v: str) -> tuple[int, ...]:
        if v not in cache:
            cache[v] = evaluate_shape(g.types[v].shape, bindings)
        return cache[v]

    def itemsize(v: str) -> int:
        return g.types[v].itemsize

    gf = dict.fromkeys(GROUPS, 0.0)
    gb = dict.fromkeys(GROUPS, 0.0)
    weighted: dict[str, list[tuple[float, float]]] = {}
    level: dict[str, int] = {v: 0 for v in (*g.inputs, *g.consts)}
    depth = 0
    for n in g.nodes:
        c = node_cost(n, shape, itemsize)
        exact = _registry_flops(n, g, bindings)
        if exact is not None:
            c.flops = exact
        gf[c.group] += c.flops
        gb[c.group] += c.bytes
        for k, val in c.shape.items():
            weighted.setdefault(k, []).append((max(c.flops, 1.0), math.log2(max(1.0, val))))
        d = 1 + max((level.get(i, 0) for i in n.inputs if i), default=0)
        for o in n.outputs:
            level[o] = d
        depth = max(depth, d)
    shp = {}
    for k in ("m", "n", "k", "hw", "cin", "cout"):
        pairs = weighted.get(k, [])
        w = sum(p[0] for p in pairs)
        shp[k] = sum(p[0] * p[1] for p in pairs) / w if w > 0 else 0.0
    values = [v for v in g.types if v not in g.consts]
    acts = [float(_numel(shape(v)) * itemsize(v)) for v in values]
    f32 = sum(1 for v in values if g.types[v].dtype == "f32")
    return GraphFeatures(
        op_counts=g.op_counts(),
        group_flops=gf,
        group_bytes=gb,
        weight_bytes=float(sum(a.nbytes for a in g.consts.values())),
        nodes=len(g.nodes),
        depth=depth,
        max_activation_bytes=max(acts, default=0.0),
        shape=shp,
        symbols=len(g.symbols),
        f32_fraction=f32 / max(1, len(values)),
    )


def _log(x: float, scale: float) -> float:
    return math.log10(1.0 + max(0.0, x)) / scale


def embed(features: GraphFeatures, machine: Machine | None = None) -> np.ndarray:
    """The 64-float pattern vector (layout in the module docstring)."""
    machine = machine or current_machine()
    hist = np.zeros(HIST_BUCKETS, dtype=np.float64)
    total_nodes = max(1, sum(features.op_counts.values()))
    for op, n in features.op_counts.items():
        hist[_bucket(op)] += n / total_nodes
    fl = np.array([features.group_flops[g] for g in GROUPS])
    by = np.array([features.group_bytes[g] for g in GROUPS])
    fl = fl / fl.sum() if fl.sum() > 0 else fl
    by = by / by.sum() if by.sum() > 0 else by
    s = features.shape
    size = np.array(
        [
            _log(features.flops, 12.0),
            _log(features.bytes, 10.0),
            _log(features.weight_bytes, 10.0),
            _log(features.nodes, 4.0),
            _log(features.depth, 4.0),
            _log(features.max_activation_bytes, 10.0),
            s["m"] / 16.0,
            s["n"] / 16.0,
            s["k"] / 16.0,
            s["hw"] / 16.0,
            s["cin"] / 16.0,
            s["cout"] / 16.0,
        ]
    )
    vec = np.concatenate([hist, fl, by, size, machine.vector()]).astype(np.float32)
    assert vec.shape == (DIM,)
    return vec


@dataclass(frozen=True)
class Pattern:
    """A model on a machine, as the memory sees it."""

    vector: np.ndarray  # float32[DIM]
    gates: np.ndarray  # float32[len(GROUPS)]: FLOP share per op group
    key: str  # stable id: equal graphs on equal machines share it
    summary: dict[str, Any] = field(default_factory=dict)


def pattern_of_graph(g: Graph, machine: Machine | None = None) -> Pattern:
    machine = machine or current_machine()
    f = graph_features(g)
    vec = embed(f, machine)
    key = hashlib.sha256(np.round(vec, 5).tobytes() + machine.key.encode()).hexdigest()[:16]
    return Pattern(vec, f.gates(), key, {**f.to_json(), "machine": machine.key})


def pattern_of_model(model: Any, example_inputs: Any, dynamic_shapes: Any = None) -> Pattern:
    """Trace `model` with the frontend (torch.export) and embed its graph."""
    from ..compiler.frontend import from_torch

    if not isinstance(example_inputs, tuple | list):
        example_inputs = (example_inputs,)
    return pattern_of_graph(from_torch(model, tuple(example_inputs), dynamic_shapes))
