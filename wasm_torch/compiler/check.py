"""Checking wasm against PyTorch: the reference outputs, the comparison and its report.

`compile()` refuses to write an artifact that fails `compare`; tests and benchmarks use the same
two functions, so "agrees with PyTorch" means one thing everywhere.

The report gives, per output, the max absolute error, the output's scale (max |PyTorch output|)
and the error relative to that scale — an absolute error of 1e-5 means little until you know the
outputs are ~1e-4 or ~1e+3. It also says when the check is vacuous: when every PyTorch output is
within tolerance of zero (an untrained model whose outputs are ~1e-14, say), an artifact returning
all zeros would pass too. `compile()` then warns with `VacuousCheckWarning`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ValidationError


class VacuousCheckWarning(UserWarning):
    """The check against PyTorch passed but proves little: PyTorch's outputs are all within
    tolerance of zero, so an artifact that returned zeros would have passed as well."""


def reference_outputs(model: torch.nn.Module, inputs: tuple) -> list[np.ndarray]:
    """PyTorch's outputs for `inputs`, flattened to a list of numpy arrays (tensor leaves only)."""
    with torch.no_grad():
        out = model(*inputs)
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return [x.detach().cpu().numpy() for x in leaves if isinstance(x, torch.Tensor)]


def compare(got: list[np.ndarray], want: list[np.ndarray], atol: float, rtol: float) -> dict[str, Any]:
    """Per output: max abs error, scale (max |want|), error relative to that scale, max elementwise
    relative error, and whether the check is vacuous (zeros would pass); overall: whether every
    element is within atol + rtol·|want|."""
    if len(got) != len(want):
        raise ValidationError(f"wasm returned {len(got)} outputs, PyTorch {len(want)}")
    per, ok = [], True
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        if a.shape != b.shape:
            raise ValidationError(f"output {k}: wasm shape {a.shape} != PyTorch shape {b.shape}")
        if b.dtype.kind in "biu":
            bad = int(np.count_nonzero(a != b))
            scale = float(np.abs(b.astype(np.float64)).max()) if b.size else 0.0
            per.append(
                {"max_abs_err": float(bad), "max_rel_err": float(bad), "exact": True, "scale": scale,
                 "rel_err": float(bad), "vacuous": False}
            )
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
        scale = float(np.nanmax(np.abs(b64))) if b64.size and not np.all(np.isnan(b64)) else 0.0
        # undefined (None, not inf: manifests are strict JSON) when PyTorch's output is all zeros
        rel_err = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else None)
        # zeros would pass: every |want| is within the tolerance around 0 (NaN positions aside)
        vacuous = bool(np.all(np.isnan(b64) | (np.abs(b64) <= atol + rtol * np.abs(b64))))
        per.append(
            {"max_abs_err": max_abs, "max_rel_err": max_rel, "scale": scale, "rel_err": rel_err, "vacuous": vacuous}
        )
        ok &= within
    return {
        "ok": ok,
        "outputs": per,
        "max_abs_err": max(p["max_abs_err"] for p in per) if per else 0.0,
        "max_rel_err": max(p["max_rel_err"] for p in per) if per else 0.0,
        "rel_err": max(rels) if (rels := [p["rel_err"] for p in per if p["rel_err"] is not None]) else None,
        "scale": max(p["scale"] for p in per) if per else 0.0,
        "vacuous_outputs": [k for k, p in enumerate(per) if p["vacuous"]],
    }


def vacuous_message(res: dict[str, Any], atol: float, rtol: float) -> str | None:
    """A warning text naming the outputs whose check proves nothing, or None."""
    ks = res.get("vacuous_outputs") or []
    if not ks:
        return None
    scales = ", ".join(f"output {k}: max |PyTorch| {res['outputs'][k]['scale']:.3g}" for k in ks)
    return (
        f"the check against PyTorch is vacuous for {len(ks)} output(s) ({scales}): every PyTorch value is "
        f"within atol={atol:g} + rtol={rtol:g}·|value| of zero, so an artifact returning zeros would pass too. "
        "Check with inputs or weights that give non-trivial outputs (trained weights, realistic inputs), "
        "or pass a smaller atol."
    )
