"""Checking wasm against PyTorch: the reference outputs, the comparison and its report.

`compile()` refuses to write an artifact that fails `compare`; tests and benchmarks use the same
two functions, so "agrees with PyTorch" means one thing everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ValidationError


def reference_outputs(model: torch.nn.Module, inputs: tuple) -> list[np.ndarray]:
    """PyTorch's outputs for `inputs`, flattened to a list of numpy arrays (tensor leaves only)."""
    with torch.no_grad():
        out = model(*inputs)
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return [x.detach().cpu().numpy() for x in leaves if isinstance(x, torch.Tensor)]


def compare(got: list[np.ndarray], want: list[np.ndarray], atol: float, rtol: float) -> dict[str, Any]:
    """Max abs / relative error per output, and whether all are within atol + rtol·|want|."""
    if len(got) != len(want):
        raise ValidationError(f"wasm returned {len(got)} outputs, PyTorch {len(want)}")
    per, ok = [], True
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        if a.shape != b.shape:
            raise ValidationError(f"output {k}: wasm shape {a.shape} != PyTorch shape {b.shape}")
        if b.dtype.kind in "biu":
            bad = int(np.count_nonzero(a != b))
            per.append({"max_abs_err": float(bad), "max_rel_err": float(bad), "exact": True})
            ok &= bad == 0
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        diff = np.abs(a64 - b64)
        both_nan = np.isnan(a64) & np.isnan(b64)
        diff = np.where(both_nan | (a64 == b64), 0.0, diff)
        max_abs = float(np.nanmax(diff)) if diff.size else 0.0
        rel = diff / np.maximum(np.abs(b64), 1e-12)
        max_rel = float(np.nanmax(np.where(diff == 0, 0, rel))) if diff.size else 0.0
        within = bool(np.all(both_nan | (diff <= atol + rtol * np.abs(b64))))  # NaN where torch has NaN is a match
        per.append({"max_abs_err": max_abs, "max_rel_err": max_rel})
        ok &= within
    return {
        "ok": ok,
        "outputs": per,
        "max_abs_err": max(p["max_abs_err"] for p in per) if per else 0.0,
        "max_rel_err": max(p["max_rel_err"] for p in per) if per else 0.0,
    }
