"""Explaining an out-of-range index: which input, which value, at which position, what is valid.

Generated code checks every index it reads and traps on one outside [0, n): a negative id is out of
range, as PyTorch's embedding, index_select and gather treat it (kernels/wt_base.h: wt_check_index). The trap itself carries no detail, so when it fires the runtime
looks at the call's inputs with the manifest's `index_inputs` ({input name: n}, written by the
compiler for every integer input used as an index) and names the first bad value. Costs nothing
on calls that succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def explain_bad_index(index_inputs: dict[str, Any], names: Sequence[str], arrays: Sequence[np.ndarray]) -> str | None:
    """'input 'ids' has 40000 at position (0, 3); valid indices are 0..30521 (…)', or None when every
    index input is in range (the bad index was computed inside the model) or none is known."""
    for name, arr in zip(names, arrays, strict=True):
        n = index_inputs.get(name)
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0 or arr.dtype.kind not in "iu" or arr.size == 0:
            continue
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            count = int(bad.sum())
            more = f" ({count} values out of range in all)" if count > 1 else ""
            return (
                f"input {name!r} has {int(arr[pos])} at position {pos}{more}; valid indices are "
                f"0..{n - 1} (it indexes a table of {n} rows)"
            )
    return None


def index_trap_message(index_inputs: dict[str, Any], names: Sequence[str], arrays: Sequence[np.ndarray]) -> str:
    """The IndexOutOfRange text for a call that trapped on an index check."""
    if not isinstance(index_inputs, dict):  # a malformed manifest field explains nothing
        index_inputs = {}
    found = explain_bad_index(index_inputs, names, arrays)
    if found is not None:
        return found
    known = ", ".join(
        f"{k}: 0..{v - 1}" for k, v in index_inputs.items() if isinstance(v, int) and not isinstance(v, bool)
    )
    return "an index computed inside the model is out of range" + (
        f" although the index inputs are in range ({known})"
        if known
        else " (e.g. token ids larger than the vocabulary; this artifact does not record which inputs are indices)"
    )


__all__ = ["explain_bad_index", "index_trap_message"]
