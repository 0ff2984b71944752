"""Strided views: say where each element of a reshape/permute/expand/slice chain lives in a root buffer.

A view of a tensor over a contiguous root buffer is an element offset plus, for each axis, a list of
(extent, stride) sub-dimensions in row-major order. An axis usually has one sub-dimension; it has
several when a reshape merged axes that are not adjacent in memory (the `B*H` batch axis of a
head-split projection, say) and none when its extent is 1. Applying the chain's ops to the root's
contiguous view tells a kernel how to read the chain's result straight from the root, without the
copies. An op that cannot be expressed (a reshape splitting a dimension into non-divisible parts)
returns None. Extents and strides may be sympy expressions over the graph's symbols.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from ..ir.graph import Dim, dim

Sub = tuple[Dim, Dim]  # (extent, stride) in elements


def same(a: Dim, b: Dim) -> bool:
    return a == b or sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def quotient(a: Dim, b: Dim) -> Dim | None:
    """a / b when it is provably a positive integer (for every value of the symbols), else None."""
    q = sympy.simplify(sympy.sympify(a) / sympy.sympify(b))
    return dim(q) if q.is_integer and q.is_positive else None


def _merged(subs: Sequence[Sub]) -> list[Sub]:
    out: list[Sub] = []
    for x, s in subs:
        if out and same(out[-1][1], x * s):
            out[-1] = (dim(out[-1][0] * x), s)
        else:
            out.append((x, s))
    return out


def _extent(subs: Sequence[Sub]) -> Dim:
    n: Dim = 1
    for x, _ in subs:
        n = n * x
    return dim(n)


@dataclass(frozen=True)
class View:
    axes: tuple[tuple[Sub, ...], ...]
    offset: Dim = 0

    @staticmethod
    def contiguous(shape: Sequence[Dim]) -> View:
        axes: list[tuple[Sub, ...]] = []
        stride: Dim = 1
        for d in reversed(shape):
            axes.append(() if same(d, 1) else ((d, stride),))
            stride = dim(stride * d)
        return View(tuple(reversed(axes)))

    def permute(self, perm: Sequence[int]) -> View:
        return View(tuple(self.axes[p] for p in perm), self.offset)

    def reshape(self, shape: Sequence[Dim]) -> View | None:
        subs = [s for ax in self.axes for s in ax]
        out: list[tuple[Sub, ...]] = []
        k = 0
        for e in shape:
            ax: list[Sub] = []
            rem = e
            while not same(rem, 1):
                if k >= len(subs):
                    return None
                x, s = subs[k]
                if same(x, rem):
                    ax.append((x, s))
                    k, rem = k + 1, 1
                elif (q := quotient(rem, x)) is not None:
                    ax.append((x, s))
                    k, rem = k + 1, q
                elif (q := quotient(x, rem)) is not None:  # split x into (rem, q)
                    ax.append((rem, dim(s * q)))
                    subs[k] = (q, s)
                    rem = 1
                else:
                    return None
            out.append(tuple(ax))
        return View(tuple(out), self.offset) if k == len(subs) else None

    def expand(self, shape: Sequence[Dim]) -> View | None:
        lead = len(shape) - len(self.axes)
        if lead < 0:
            return None
        axes: list[tuple[Sub, ...]] = [() if same(e, 1) else ((e, 0),) for e in shape[:lead]]
        for ax, e in zip(self.axes, shape[lead:], strict=True):
            n = _extent(ax)
            if same(n, e):
                axes.append(ax)
            elif same(n, 1):
                axes.append(((e, 0),))
            else:
                return None
        return View(tuple(axes), self.offset)

    def slice(self, axis: int, start: Dim, step: int, size: Dim) -> View | None:
        ax = _merged(self.axes[axis])
        if len(ax) > 1:
            return None
        if not ax:  # an axis of extent 1 can only be sliced to itself
            return self if same(start, 0) else None
        s = ax[0][1]
        new = () if same(size, 1) else ((size, dim(s * step)),)
        return View((*self.axes[:axis], new, *self.axes[axis + 1 :]), dim(self.offset + start * s))

    def strides(self) -> list[Dim] | None:
        """One stride per axis (0 for extent-1 axes), or None if an axis is not a single stride."""
        out: list[Dim] = []
        for ax in self.axes:
            m = _merged(ax)
            if len(m) > 1:
                return None
            out.append(m[0][1] if m else 0)
        return out
