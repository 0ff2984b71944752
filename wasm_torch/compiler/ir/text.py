"""Readable text form of a graph (for debugging, docs and golden tests)."""

from __future__ import annotations

from .graph import Graph


def format_graph(g: Graph) -> str:
    lines = []
    for s in g.symbols.values():
        lines.append(f"symbol {s.name} in [{s.min}, {s.max}] = {s.input}.shape[{s.axis}]")
    for name in g.inputs:
        lines.append(f"input {name}: {g.types[name]}")
    for name, arr in g.consts.items():
        lines.append(f"const {name}: {g.types[name]}" + (f" = {arr.item()!r}" if arr.size == 1 else ""))
    for n in g.nodes:
        outs = ", ".join(f"{o}: {g.types[o]}" for o in n.outputs)
        attrs = " ".join(f"{k}={v}" for k, v in n.attrs.items())
        lines.append(
            f"{outs} = {n.op}({', '.join(i or '_' for i in n.inputs)}){' ' + attrs if attrs else ''}"
        )
    lines.append(f"return {', '.join(g.outputs)}")
    return "\n".join(lines)
