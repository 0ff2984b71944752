"""Static memory plan: one arena, buffers reused by liveness.

Every non-constant value gets a byte offset in the arena, sized for the maximum of each dynamic
dimension. `reshape` outputs alias their input's storage. A buffer is live from the node that
writes it to the last node that reads it (or the end, for graph outputs); two buffers may share
bytes only if their live ranges do not overlap — so no kernel ever reads what it is writing.
Constants live in the weights region instead (offsets into weights.bin). An op's in-place outputs
(`OpDef.inplace`, e.g. kv_attention's updated KV cache) share their input's buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...artifact import ALIGN
from ...errors import GraphError
from ..ir.graph import Graph, evaluate_shape, numel
from ..ir.op import in_group, op_def


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class MemoryPlan:
    offsets: dict[str, int]  # value -> byte offset in the arena (aliases share offsets)
    arena_bytes: int  # peak arena size
    unplanned_bytes: int  # what the arena would need without reuse (for the report)
    weight_offsets: dict[str, int]  # constant -> byte offset in weights.bin
    weights_bytes: int
    alias_root: dict[str, str]  # value -> the value that owns its storage
    peak_live_bytes: int  # the most activation bytes live at one program point: no plan can use less


def plan_memory(g: Graph) -> MemoryPlan:
    maxb = g.max_bindings()
    nbytes = {
        v: _align(max(1, numel(evaluate_shape(t.shape, maxb))) * t.itemsize) for v, t in g.types.items()
    }

    weight_offsets, woff = {}, 0
    for c in g.consts:
        weight_offsets[c] = woff
        woff += nbytes[c]

    root: dict[str, str] = {}
    for n in g.nodes:
        if in_group(n.op, "alias"):
            src = n.inputs[0]
            root[n.outputs[0]] = root.get(src, src)
        for k, i in op_def(n.op).inplace:  # the output is the input's buffer, updated by the node
            src = n.inputs[i]
            root[n.outputs[k]] = root.get(src, src)
    _check_inplace(g)
    find = lambda v: root.get(v, v)  # noqa: E731

    end = len(g.nodes)
    first: dict[str, int] = {v: -1 for v in g.inputs}
    last: dict[str, int] = {v: -1 for v in g.inputs}
    for i, n in enumerate(g.nodes):
        for o in n.outputs:
            if find(o) == o:
                first[o] = i
                last[o] = i
        for v in n.inputs:
            if v and find(v) in last:
                last[find(v)] = max(last[find(v)], i)
    for o in g.outputs:
        if find(o) in last:
            last[find(o)] = end

    offsets: dict[str, int] = {}
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    for v in sorted(first, key=lambda v: (first[v], -nbytes[v])):
        size = nbytes[v]
        busy = sorted((o, s) for o, s, f, l in placed if not (l < first[v] or last[v] < f))
        off = 0
        for o, s in busy:  # first gap that fits
            if off + size <= o:
                break
            off = max(off, o + s)
        offsets[v] = off
        placed.append((off, size, first[v], last[v]))
    for v in root:
        r = find(v)
        if r in offsets:
            offsets[v] = offsets[r]
        elif r in weight_offsets:
            weight_offsets[v] = weight_offsets[r]
    arena = max((o + s for o, s, _, _ in placed), default=0)
    live = [0] * (end + 2)  # program points: 0 is before the first node
    for v in first:
        for i in range(first[v] + 1, last[v] + 2):
            live[i] += nbytes[v]
    return MemoryPlan(
        offsets,
        arena,
        sum(nbytes[v] for v in first),
        weight_offsets,
        woff,
        {v: find(v) for v in root},
        max(live, default=0),
    )


def _check_inplace(g: Graph) -> None:
    """An in-place update must be the last reader of a non-constant buffer: otherwise a later node
    would read the updated bytes where the graph means the old value."""
    users: dict[str, list[int]] = {}
    for i, n in enumerate(g.nodes):
        for v in n.inputs:
            if v:
                users.setdefault(v, []).append(i)
    for i, n in enumerate(g.nodes):
        for _, k in op_def(n.op).inplace:
            v = n.inputs[k]
            if v in g.consts or max(users.get(v, [i])) > i or v in g.outputs:
                raise GraphError(f"{n.op} -> {n.outputs}: updates {v!r} in place, but it is a constant, an output or read later")
