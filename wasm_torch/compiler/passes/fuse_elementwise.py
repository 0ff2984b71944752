"""Fuse chains, trees and DAGs of elementwise ops into one `fused_elementwise` node each.

Each elementwise IR op is otherwise its own loop nest that writes its result to memory for the next
op to read back. Here an elementwise node is computed inside the loop of the nodes that read it when

- every reader is elementwise and fused into one and the same group (a chain, a tree, or a DAG
  where the value feeds several ops of the group: it is still computed once per element),
- it is not a graph output,
- it has the group's output shape, so every element is computed exactly once.

A group becomes one node whose attr `program` is a tuple of `ir.op.Step`s over the node's inputs
(each input broadcast to the output shape, scalars included), evaluated in order; the last step is
the output. Example, GPT-2's GELU (8 nodes -> 1):

    x3 = pow(x, 3); t = mul(x3, 0.044715); t = add(x, t); t = mul(t, 0.798); t = tanh(t) ...
    y = fused_elementwise(x, 3, 0.044715, 0.798, 1, 0.5) program=(pow(%0, %1), mul(%6, %2), ...)

A value read by nodes of different groups (or by a reduction, a matmul...) stays materialised:
recomputing it per reader could cost more than it saves. A group runs on f32x4 only when every
member has a vector form (codegen/fused.py), so a node joins only a group of its own kind: one
op without a vector form (`where`, a comparison, a non-f32 value) would otherwise turn a whole
group scalar. Mamba's `exp(where(mask, a - b, -inf)) * c` lost its SIMD `exp` that way and ran 4-8x
slower than unfused; now `where` is its own scalar loop and `exp(.) * c` stays one vector loop. Runs after pack_weights / fuse_epilogue, so
an activation that a GEMM epilogue can apply is already gone; what remains here is everything else.
"""

from __future__ import annotations

import sympy

from ..ir.graph import Graph, Node, Shape
from ..ir.op import Step, in_group, vector_template


def _same_shape(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(
        x == y or sympy.expand(sympy.sympify(x) - sympy.sympify(y)) == 0 for x, y in zip(a, b, strict=True)
    )


def _vector(g: Graph, n: Node) -> bool:
    """Whether code generation has an f32x4 form for this node (the test codegen/fused.py applies
    to a whole group, node by node)."""
    if any(v and g.types[v].dtype != "f32" for v in (*n.inputs, *n.outputs)):
        return False
    scalars = []
    for v in n.inputs:
        c = g.consts.get(v)
        scalars.append(float(c.item()) if c is not None and c.size == 1 else None)
    return vector_template(n.op, dict(n.attrs), scalars) is not None


def fuse_elementwise(g: Graph) -> Graph:
    readers: dict[str, set[int]] = {}
    for i, n in enumerate(g.nodes):
        for v in n.inputs:
            if v:
                readers.setdefault(v, set()).add(i)

    # Last node first, so every reader's group is known: a node joins its readers' group when they
    # all belong to one group (one loop nest) whose output has this node's shape.
    root: dict[int, int] = {}
    for i in range(len(g.nodes) - 1, -1, -1):
        n = g.nodes[i]
        if not in_group(n.op, "elementwise"):
            continue
        out = n.outputs[0]
        groups = {root.get(r) for r in readers.get(out, ())}
        r = next(iter(groups)) if len(groups) == 1 else None
        ok = r is not None and out not in g.outputs and _vector(g, n) == _vector(g, g.nodes[r])
        root[i] = r if ok and _same_shape(g.types[out].shape, g.types[g.nodes[r].outputs[0]].shape) else i
    tops = {r for i, r in root.items() if r != i}  # groups with more than one node
    if not tops:
        return g
    producer = {o: i for i, n in enumerate(g.nodes) for o in n.outputs}
    nodes = []
    for i, n in enumerate(g.nodes):
        if root.get(i, i) != i:
            continue  # computed inside its group's loop
        nodes.append(_fuse_group(g, i, root, producer) if i in tops else n)
    return g.replace(nodes=tuple(nodes))


def _fuse_group(g: Graph, top: int, root: dict[int, int], producer: dict[str, int]) -> Node:
    """The group whose last node is `top`, as one node: its members' ops in dependency order."""
    inputs: list[str] = []
    steps: list[tuple[str, tuple[tuple[str, int], ...], dict]] = []  # args tagged ("in"|"step", index)
    done: dict[int, int] = {}  # member node -> its step

    def arg(v: str) -> tuple[str, int]:
        p = producer.get(v)
        if p is not None and root.get(p) == top:
            return ("step", visit(p))
        if v not in inputs:
            inputs.append(v)
        return ("in", inputs.index(v))

    def visit(i: int) -> int:
        if i not in done:
            n = g.nodes[i]
            args = tuple(arg(v) for v in n.inputs)
            steps.append((n.op, args, dict(n.attrs)))
            done[i] = len(steps) - 1
        return done[i]

    visit(top)
    k = len(inputs)
    program = tuple(
        Step(op, tuple(j if kind == "in" else k + j for kind, j in args), attrs) for op, args, attrs in steps
    )
    n = g.nodes[top]
    return Node("fused_elementwise", tuple(inputs), n.outputs, {"program": program}, n.source)
