"""Recognise scaled dot-product attention and replace it by one fused `attention` node.

What torch.export leaves of an attention block (SDPA's decomposition in BERT/MiniLM/ViT and
nn.TransformerEncoder, the hand-written form in GPT-2) is, per layer:

    q, k, v = head-split views (reshape / permute / slice / expand) of the projection output
    scores  = matmul(q · c_q, (kᵀ) · c_k) · c            c_q, c_k, c: scalar mul/div, all optional
    x       = scores + mask                               optional, mask broadcast to (B, H, Lq, Lk)
    p       = softmax(x, last axis)
              [where(all(x == -inf) over the row, 0, p)]  SDPA's "safe softmax": masked rows give 0
    out     = permutes / reshapes of matmul(p, v)

It becomes `attention(q_root, k_root, v_root[, mask_root])`, reading q/k/v/mask straight from the
buffers the view chains start from (attrs hold each operand's element offset and (b, h, l) strides;
`strided_view.py` does the bookkeeping) and writing the output in the layout its consumer reads, so
the permute copies, the Lq×Lk score and probability tensors and the safe-softmax mask disappear.
The rewrite happens only when every score/probability intermediate has no other use (a model that
also returns its attention weights is left alone), and it keeps any view it cannot express as
strides as the materialised value it already is. A constant or `is_causal`-style mask (0 where key
j ≤ query i, -inf above) becomes `causal=True`, so the kernel skips the tiles above the diagonal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir.graph import Dim, Graph, Node, numel
from ..ir.op import norm_axis
from .causal_mask import is_causal_mask
from .strided_view import View, same

MAX_HEAD_DIM = 1024  # the kernel packs a Kᵀ tile of head_dim x 8 or more keys in a fixed 32 KB buffer


@dataclass
class _Operand:
    root: str
    offset: Dim
    strides: list[Dim]
    scale: float = 1.0


@dataclass
class _Match:
    anchor: Node  # the node whose output the attention node now defines
    node: Node
    removed: set[int] = field(default_factory=set)  # ids of the nodes the rewrite deletes


def fuse_attention(g: Graph) -> Graph:
    done: set[str] = set()
    while True:
        match = None
        for n in g.nodes:
            if n.op == "softmax" and n.outputs[0] not in done:
                match = _match(g, n)
                if match is None:
                    done.add(n.outputs[0])
                else:
                    break
        if match is None:
            return g
        nodes = []
        for n in g.nodes:
            if n is match.anchor:
                nodes.append(match.node)
            elif id(n) not in match.removed:
                nodes.append(n)
        gone = {o for n in g.nodes if id(n) in match.removed and n is not match.anchor for o in n.outputs}
        g = g.replace(nodes=tuple(nodes), types={k: t for k, t in g.types.items() if k not in gone})


# ---- matching --------------------------------------------------------------------------------------


def _scalar(g: Graph, v: str) -> float | None:
    c = g.consts.get(v)
    return float(c.reshape(())) if c is not None and c.size == 1 and g.types[v].dtype == "f32" else None


def _scale_of(g: Graph, n: Node) -> tuple[str, float] | None:
    """(tensor input, factor) if n multiplies or divides a same-shaped f32 tensor by a scalar constant."""
    if n.op not in ("mul", "div") or len(n.inputs) != 2 or g.types[n.outputs[0]].dtype != "f32":
        return None
    for t, c in ((0, 1), (1, 0)) if n.op == "mul" else ((0, 1),):
        s = _scalar(g, n.inputs[c])
        x = n.inputs[t]
        if s is not None and x not in g.consts and g.types[x].shape == g.types[n.outputs[0]].shape:
            return (x, s) if n.op == "mul" else (x, 1.0 / s) if s != 0 else None
    return None


def _match(g: Graph, sm: Node) -> _Match | None:
    prod, users = g.producers(), g.users()
    x = sm.inputs[0]
    xt = g.types[x]
    if xt.dtype != "f32" or not 2 <= xt.rank <= 4 or norm_axis(sm.attrs["axis"], xt.rank) != xt.rank - 1:
        return None
    removed: list[Node] = [sm]

    # scores side: [add(scores, mask)] <- [mul/div by scalars, reshapes] <- matmul(q', kᵀ')
    mask, scores = "", None
    add = prod.get(x)
    if add is not None and add.op == "add":
        for i in (0, 1):
            if g.types[add.inputs[i]].shape == xt.shape and (scores := _scores(g, add.inputs[i], prod)):
                mask = add.inputs[1 - i]
                break
        if scores is None or g.types[mask].dtype != "f32":
            return None
        removed.append(add)
    else:
        scores = _scores(g, x, prod)
    if scores is None:
        return None
    mm1, scale, chain = scores
    removed += chain

    # probability side: [safe-softmax where] -> reshapes -> matmul(p, v)
    p, safe = sm.outputs[0], False
    where = _safe_where(g, sm, prod, users)
    if where is not None:
        p, safe = where[-1].outputs[0], True
        removed += where
    mm2 = None
    while len(users.get(p, [])) == 1 and p not in g.outputs:
        u = users[p][0]
        if u.op == "reshape":
            removed.append(u)
            p = u.outputs[0]
            continue
        mm2 = u if u.op == "matmul" and len(u.inputs) == 2 and u.inputs[0] == p else None
        break
    if mm2 is None:
        return None
    removed.append(mm2)

    B, H, Lq, Lk = (1,) * (4 - xt.rank) + tuple(xt.shape)
    qt, kt, vt = g.types[mm1.inputs[0]], g.types[mm1.inputs[1]], g.types[mm2.inputs[1]]
    m1, m2, pt = g.types[mm1.outputs[0]].shape, g.types[mm2.outputs[0]].shape, g.types[mm2.inputs[0]].shape
    D, Dv = qt.shape[-1], vt.shape[-1]
    if not all(t.dtype == "f32" for t in (qt, kt, vt)) or not _dims_ok(m1, m2, pt, B, H, Lq, Lk):
        return None
    if not (same(kt.shape[-2], D) and same(vt.shape[-2], Lk)) or (isinstance(D, int) and D > MAX_HEAD_DIM):
        return None
    q = _operand(g, mm1.inputs[0], prod, (*m1[:-2], *qt.shape[-2:]), (B, H, Lq, D), False, True)
    k = _operand(g, mm1.inputs[1], prod, (*m1[:-2], *kt.shape[-2:]), (B, H, D, Lk), True, True)
    v = _operand(g, mm2.inputs[1], prod, (*m2[:-2], *vt.shape[-2:]), (B, H, Lk, Dv), False, False)
    out = _output(g, mm2, users, (B, H, Lq, Dv))
    if q is None or k is None or v is None or out is None:
        return None
    anchor, out_strides, out_chain = out
    removed += out_chain

    attrs: dict[str, Any] = {
        "dims": (B, H, Lq, Lk, D, Dv),
        "scale": scale * q.scale * k.scale,
        "causal": False,
        "safe": safe,
        "q": (q.offset, *q.strides[:3]),
        "k": (k.offset, *k.strides[:3]),
        "v": (v.offset, *v.strides[:3]),
        "out": (0, *out_strides[:3]),
        "out_shape": g.types[anchor.outputs[0]].shape,
    }
    inputs = [q.root, k.root, v.root]
    if mask:
        mv = _operand(g, mask, prod, xt.shape, (B, H, Lq, Lk), False, False, any_last=True)
        if mv is None:
            return None
        if is_causal_mask(g, mv.root, mv.offset, mv.strides, (B, H, Lq, Lk)):
            attrs["causal"] = True
        else:
            inputs.append(mv.root)
            attrs["mask"] = (mv.offset, *mv.strides)

    # only when the intermediates have no other use (and are not graph outputs)
    ids = {id(n) for n in removed}
    for n in removed:
        for o in n.outputs:
            if n is anchor:
                continue
            if o in g.outputs or any(id(u) not in ids for u in users.get(o, [])):
                return None
    node = Node("attention", tuple(inputs), anchor.outputs, attrs, mm2.source or sm.source)
    return _Match(anchor, node, ids)


def _scores(g: Graph, v: str, prod: dict[str, Node]) -> tuple[Node, float, list[Node]] | None:
    """Walk back from the softmax input through reshapes and scalar scalings to the QKᵀ matmul:
    (matmul, product of the scalings, the nodes walked including the matmul)."""
    scale, chain = 1.0, []
    while (n := prod.get(v)) is not None:
        chain.append(n)
        if n.op == "matmul" and len(n.inputs) == 2:
            return n, scale, chain
        if n.op == "reshape":
            v = n.inputs[0]
        elif (s := _scale_of(g, n)) is not None:
            v, scale = s[0], scale * s[1]
        else:
            return None
    return None


def _safe_where(g: Graph, sm: Node, prod: dict[str, Node], users: dict[str, list[Node]]) -> list[Node] | None:
    """SDPA's safe softmax: where(not(any(not(x == -inf), row)), 0, softmax(x)) -> its nodes (where last)."""
    us = users.get(sm.outputs[0], [])
    if len(us) != 1 or us[0].op != "where" or us[0].inputs[2] != sm.outputs[0]:
        return None
    where = us[0]
    zero, chain = where.inputs[1], [where]
    zc = g.consts.get(zero)
    if zc is not None:
        if np.any(zc != 0):
            return None
    elif (z := prod.get(zero)) is None or z.op != "full" or z.attrs.get("value") != 0:
        return None
    else:
        chain.append(z)
    want = ["logical_not", "reduce_any", "logical_not", "eq"]
    v = where.inputs[0]
    for op in want:
        n = prod.get(v)
        if n is None or n.op != op:
            return None
        if op == "reduce_any":
            rank = g.types[n.inputs[0]].rank
            if [norm_axis(a, rank) for a in n.attrs["axes"]] != [rank - 1] or not n.attrs.get("keepdim"):
                return None
        chain.append(n)
        v = n.inputs[0]
    eq = chain[-1]
    other = (
        eq.inputs[1] if eq.inputs[0] == sm.inputs[0] else eq.inputs[0] if eq.inputs[1] == sm.inputs[0] else ""
    )
    if not other or _scalar(g, other) != float("-inf"):
        return None
    return chain[::-1]


def _dims_ok(
    m1: Sequence[Dim], m2: Sequence[Dim], p: Sequence[Dim], B: Dim, H: Dim, Lq: Dim, Lk: Dim
) -> bool:
    """Both matmuls are batched over B·H (row-major, as the reshapes between them keep it) and the
    probabilities reach the second one as (…, Lq, Lk)."""
    bh = B * H
    return (
        same(m1[-2], Lq)
        and same(m1[-1], Lk)
        and same(p[-2], Lq)
        and same(p[-1], Lk)
        and same(numel(m1[:-2]), bh)
        and same(numel(m2[:-2]), bh)
    )


def _operand(
    g: Graph,
    v: str,
    prod: dict[str, Node],
    full: Sequence[Dim],
    logical: tuple[Dim, Dim, Dim, Dim],
    transpose: bool,
    allow_scale: bool,
    any_last: bool = False,
) -> _Operand | None:
    """Where v lives, seen as the logical (B, H, rows, cols) tensor (then transposed to (B, H, cols, rows)
    if `transpose`): the deepest root whose view chain is expressible as strides, with unit stride along
    the last axis unless any_last. v broadcasts to the shape `full` before the split into (B, H)."""
    chain: list[Node] = []
    root = v
    while (n := prod.get(root)) is not None and (
        n.op in ("reshape", "permute", "expand", "slice") or (allow_scale and _scale_of(g, n) is not None)
    ):
        chain.insert(0, n)
        root = _chain_input(g, n)
    vt = g.types[v]
    last = logical[2] if transpose else logical[3]
    for start in range(len(chain) + 1):
        base = v if start == len(chain) else _chain_input(g, chain[start])
        view: View | None = View.contiguous(g.types[base].shape)
        scale = 1.0
        for n in chain[start:]:
            view, scale = _apply(g, n, view, scale)  # type: ignore[arg-type]
            if view is None:
                break
        view = view and view.reshape((1,) * (len(full) - vt.rank) + tuple(vt.shape))
        view = view and view.expand(full)
        view = view and view.reshape(logical)
        view = view and (view.permute((0, 1, 3, 2)) if transpose else view)
        strides = view.strides() if view is not None else None
        if strides is not None and (any_last or same(strides[3], 1) or same(last, 1)):
            return _Operand(base, view.offset, strides, scale)  # type: ignore[union-attr]
    return None


def _chain_input(g: Graph, n: Node) -> str:
    s = _scale_of(g, n) if n.op in ("mul", "div") else None
    return s[0] if s is not None else n.inputs[0]


def _apply(g: Graph, n: Node, view: View, scale: float) -> tuple[View | None, float]:
    a, out = n.attrs, g.types[n.outputs[0]].shape
    if n.op == "permute":
        return view.permute(a["perm"]), scale
    if n.op == "reshape":
        return view.reshape(out), scale
    if n.op == "expand":
        return view.expand(out), scale
    if n.op == "slice":
        if a["step"] < 1:
            return None, scale
        return view.slice(a["axis"], a["start"], a["step"], out[a["axis"]]), scale
    s = _scale_of(g, n)
    return view, scale * s[1]  # type: ignore[index]


def _output(
    g: Graph, mm2: Node, users: dict[str, list[Node]], logical: tuple[Dim, Dim, Dim, Dim]
) -> tuple[Node, list[Dim], list[Node]] | None:
    """Follow single-use permutes/reshapes after matmul(p, v); the furthest value whose layout the
    kernel can write directly (unit stride along the head dim) becomes the attention node's output."""
    chain: list[Node] = []
    cur = mm2.outputs[0]
    while (
        cur not in g.outputs and len(users.get(cur, [])) == 1 and users[cur][0].op in ("reshape", "permute")
    ):
        chain.append(users[cur][0])
        cur = chain[-1].outputs[0]
    for cut in range(len(chain), -1, -1):
        anchor = chain[cut - 1] if cut else mm2
        view: View | None = View.contiguous(g.types[anchor.outputs[0]].shape)
        for n in reversed(chain[:cut]):
            if n.op == "permute":
                view = view.permute(list(np.argsort(n.attrs["perm"])))  # type: ignore[union-attr]
            else:
                view = view.reshape(g.types[n.inputs[0]].shape)  # type: ignore[union-attr]
            if view is None:
                break
        view = view and view.reshape(logical)
        strides = view.strides() if view is not None else None
        if strides is not None and (same(strides[3], 1) or same(logical[3], 1)) and same(view.offset, 0):
            return anchor, strides, chain[:cut]
    return None
