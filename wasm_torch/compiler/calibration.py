"""Calibration inputs for quantize="int8-static": checked against the example inputs, as the reference
interpreter wants them ({graph input name: numpy array}), before any work is done.

    compile(model, (x,), out, quantize="int8-static", calibration=[(x1,), (x2,), ...])   # or [x1, x2, ...]

Each sample is shaped like the example inputs: the same number of tensors, the same rank, the same
size on every static axis and a size within the compiled range on every dynamic one, and a dtype of
the same kind (floats for float inputs, integers for integer ones). Anything else is a
QuantizationError naming the sample, the input and what was expected. Samples are never unpickled:
they are tensors or arrays the caller already holds (the CLI reads .npy with allow_pickle=False).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import QuantizationError
from .ir.graph import DTYPES, Graph

MAX_SAMPLES = 256  # the reference interpreter runs every sample through the float graph


def _array(x: Any) -> np.ndarray | None:
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor
        return x.detach().cpu().numpy()
    return x if isinstance(x, np.ndarray) else None


def calibration_samples(calibration: Any, g: Graph) -> list[dict[str, np.ndarray]]:
    """The samples as {input name: array}, every one checked (see the module docstring)."""
    if isinstance(calibration, (str, bytes)) or not isinstance(calibration, Sequence) or _array(calibration) is not None:
        raise QuantizationError(
            "calibration must be a list of samples, each a tuple of inputs shaped like the example inputs "
            f"(or one tensor per sample for a one-input model); got {type(calibration).__name__}"
        )
    if not 1 <= len(calibration) <= MAX_SAMPLES:
        raise QuantizationError(f"calibration has {len(calibration)} samples: give 1 to {MAX_SAMPLES}")
    bounds = {s.name: (s.min, s.max) for s in g.symbols.values()}
    out = []
    for i, sample in enumerate(calibration):
        xs = [sample] if _array(sample) is not None else sample
        if not isinstance(xs, (list, tuple)) or len(xs) != len(g.inputs):
            raise QuantizationError(
                f"calibration sample {i}: expected {len(g.inputs)} input(s) {list(g.inputs)} like the example inputs, "
                f"got {len(xs) if isinstance(xs, (list, tuple)) else type(xs).__name__}"
            )
        sample_d: dict[str, np.ndarray] = {}
        seen: dict[str, int] = {}
        for name, x in zip(g.inputs, xs, strict=True):
            arr, t = _array(x), g.types[name]
            want = DTYPES[t.dtype]
            if arr is None:
                raise QuantizationError(f"calibration sample {i}, input {name!r}: expected a tensor or array, got {type(x).__name__}")
            if arr.dtype.kind not in ("f" if want.kind == "f" else "biu") or arr.dtype.kind == "c":
                raise QuantizationError(
                    f"calibration sample {i}, input {name!r}: dtype {arr.dtype} where the model takes {want}"
                )
            shape = [str(d) for d in t.shape]
            bad = arr.ndim != t.rank
            for d, n in zip(t.shape, arr.shape if not bad else (), strict=False):
                if isinstance(d, int):
                    bad |= d != n
                elif str(d) in bounds:
                    lo, hi = bounds[str(d)]
                    bad |= not lo <= n <= hi or seen.setdefault(str(d), n) != n
            if bad:
                raise QuantizationError(
                    f"calibration sample {i}, input {name!r}: shape {list(arr.shape)}, the model takes {shape} "
                    f"(dynamic sizes within {bounds or 'none'})"
                )
            sample_d[name] = arr.astype(want, copy=False)
        out.append(sample_d)
    return out
