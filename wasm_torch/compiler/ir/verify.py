"""Graph verifier, run between compiler stages: catches compiler bugs where they are made."""

from __future__ import annotations

from ...errors import GraphError
from .graph import Graph
from .op import infer


def verify(g: Graph, stage: str = "") -> None:
    where = f" (after {stage})" if stage else ""
    defined: set[str] = set(g.inputs) | set(g.consts)
    for name in defined:
        if name not in g.types:
            raise GraphError(f"value {name!r} has no type{where}")
    for c, arr in g.consts.items():
        t = g.types[c]
        if tuple(arr.shape) != t.shape or arr.dtype.itemsize != t.itemsize:
            raise GraphError(f"constant {c!r} is {arr.dtype}{arr.shape}, typed {t}{where}")
    for n in g.nodes:
        for i in n.inputs:
            if i and i not in defined:
                raise GraphError(f"{n.op} -> {n.outputs} uses {i!r} before it is defined{where}")
        try:
            expect = infer(n, [g.types[i] for i in n.inputs if i])
        except (KeyError, IndexError, TypeError) as e:
            raise GraphError(f"{n.op} -> {n.outputs}: malformed node ({e!r}){where}") from e
        for o, t in zip(n.outputs, expect, strict=True):
            if o in defined:
                raise GraphError(f"value {o!r} defined twice{where}")
            got = g.types.get(o)
            if got is None or got.dtype != t.dtype or len(got.shape) != len(t.shape):
                raise GraphError(f"{n.op} -> {o}: typed {got}, rule gives {t}{where}")
            for a, b in zip(got.shape, t.shape, strict=True):
                if a != b and not (hasattr(a, "equals") and a.equals(b)):
                    raise GraphError(f"{n.op} -> {o}: typed {got}, rule gives {t}{where}")
            defined.add(o)
    for o in g.outputs:
        if o not in defined:
            raise GraphError(f"graph output {o!r} is never defined{where}")
