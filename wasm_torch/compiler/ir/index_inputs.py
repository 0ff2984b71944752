"""Which graph inputs are indices, and into tables of how many rows.

Token ids and other index inputs reach an `index` or `gather` node (embedding lookups lower to
`index`), usually straight from the input or through value-preserving movement (reshape, expand,
slice, permute, a cast between integer types). The generated code checks every such read with
`wt_check_index(i, n)` — valid indices are 0 <= i < n, as torch's embedding requires — and traps
otherwise. Knowing n per input lets the compiler write it into the manifest (`index_inputs`), the
runtime name the input, the bad value and the valid range when that trap fires, and the CLI draw
random in-range example ids instead of zeros.

Only static table sizes are reported; an input used as an index into several tables gets the
smallest (the range valid for all of them).
"""

from __future__ import annotations

from .graph import Graph

# Ops whose output holds (a subset of) the input's values, unchanged: an index stays an index.
_PASS_THROUGH = {"reshape", "expand", "slice", "permute"}
_INT_DTYPES = {"i64", "i32", "i8", "u8"}


def _index_axes(g: Graph, value: str) -> list[int]:
    """The table sizes `value` indexes directly (static only)."""
    sizes: list[int] = []
    for n in g.nodes:
        if n.op == "index":
            table = g.types[n.inputs[0]]
            for k, v in enumerate(n.inputs[1:]):
                if v == value and isinstance(table.shape[k], int):
                    sizes.append(table.shape[k])
        elif n.op == "gather" and n.inputs[1] == value:
            d = g.types[n.inputs[0]].shape[n.attrs["axis"]]
            if isinstance(d, int):
                sizes.append(d)
    return sizes


def index_inputs(g: Graph) -> dict[str, int]:
    """{input name: n} for every integer input used as an index: valid values are 0 <= i < n."""
    found: dict[str, int] = {}
    for name in g.inputs:
        if g.types[name].dtype not in _INT_DTYPES:
            continue
        values, sizes, seen = [name], [], set()
        while values:  # follow the value through ops that keep it an index
            v = values.pop()
            if v in seen:
                continue
            seen.add(v)
            sizes += _index_axes(g, v)
            for n in g.nodes:
                if n.inputs and n.inputs[0] == v and (
                    n.op in _PASS_THROUGH or (n.op == "cast" and n.attrs.get("dtype") in _INT_DTYPES)
                ):
                    values.append(n.outputs[0])
        if sizes:
            found[name] = min(sizes)
    return found


__all__ = ["index_inputs"]
