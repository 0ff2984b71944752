"""Validation that knows the format: how far an fp16 / int8 artifact may be from PyTorch float32.

A float32 artifact must match PyTorch elementwise within atol + rtol·|torch| (check.compare). Reduced
precision cannot: int8 weights move every output a little. So for `quantize=...` the check is on
what users care about, per output, against PyTorch float32 on the example inputs:

    cosine       cosine similarity of the whole output (float64), the bar: >= min_cosine
    row_cosine   the worst cosine over rows of the last axis (e.g. per token embedding), reported
    top1         fraction of rows of the last axis whose argmax agrees (classifier logits), reported,
                 and a bar when min_top1 is given
    max_abs_err, rel_err (max abs error / output scale), max_rel_err (elementwise): reported
Integer outputs must agree exactly, or in at least min_top1 of their elements when it is given.
A NaN where PyTorch has a number fails. The artifact is written only if every output clears the bar;
the defaults (DEFAULT_MIN_COSINE) are what the formats reach on real models with room to spare
(docs/quantization.md), and `compile(..., min_cosine=..., min_top1=...)` sets a bar of your own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ValidationError
from .check import compare

DEFAULT_MIN_COSINE = {"fp16": 0.999, "int8": 0.97, "int8-static": 0.97}


@dataclass(frozen=True)
class AgreementBar:
    """The least agreement with PyTorch float32 a reduced-precision artifact must reach."""

    min_cosine: float
    min_top1: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_cosine", "min_top1"):
            v = getattr(self, name)
            if v is None and name == "min_top1":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 <= float(v) <= 1.0:
                raise ValidationError(f"{name}={v!r}: expected a number in [-1, 1] (a cosine / a fraction)")

    @staticmethod
    def for_format(fmt: str, min_cosine: float | None = None, min_top1: float | None = None) -> AgreementBar:
        return AgreementBar(DEFAULT_MIN_COSINE[fmt] if min_cosine is None else min_cosine, min_top1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    c = float(np.dot(a, b) / (na * nb)) if np.isfinite(na) and np.isfinite(nb) else float("nan")
    return c if np.isfinite(c) else 0.0  # inf in either output: no agreement to speak of


def _rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1]) if x.ndim >= 1 and x.size else x.reshape(1, -1)


def output_agreement(got: np.ndarray, want: np.ndarray) -> dict[str, Any]:
    """cosine, row_cosine, top1 (None when undefined) of one output; NaN handling as in the docstring."""
    if want.dtype.kind in "biu":
        equal = float(np.mean(got == want)) if want.size else 1.0
        return {"cosine": None, "row_cosine": None, "top1": equal, "integer": True}
    a, b = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    if np.any(np.isnan(a) != np.isnan(b)):
        return {"cosine": 0.0, "row_cosine": 0.0, "top1": 0.0 if want.ndim and want.shape[-1] > 1 else None,
                "nan_mismatch": True}
    a, b = np.where(both_nan, 0.0, a), np.where(both_nan, 0.0, b)
    res: dict[str, Any] = {"cosine": _cosine(a.ravel(), b.ravel()), "row_cosine": None, "top1": None}
    if want.ndim >= 1 and want.shape[-1] >= 2 and want.size:
        ra, rb = _rows(a), _rows(b)
        res["row_cosine"] = min(_cosine(x, y) for x, y in zip(ra, rb, strict=True))
        res["top1"] = float(np.mean(np.argmax(ra, axis=1) == np.argmax(rb, axis=1)))
    return res


def check_agreement(got: list[np.ndarray], want: list[np.ndarray], fmt: str, bar: AgreementBar,
                    what: str = "the artifact") -> dict[str, Any]:
    """The report above for every output; ValidationError (naming the output and the bar) if one is below it."""
    res = compare(got, want, atol=0.0, rtol=0.0)  # shapes, max abs / relative errors, scale
    fails = []
    for k, (g, w, per) in enumerate(zip(got, want, res["outputs"], strict=True)):
        per.update(output_agreement(g, w))
        per.pop("vacuous", None)
        if per.get("nan_mismatch"):
            fails.append(f"output {k} has NaN where PyTorch has a number (or the reverse)")
        elif per.get("integer"):
            need = 1.0 if bar.min_top1 is None else bar.min_top1
            if per["top1"] < need:
                fails.append(f"output {k} (integers) equals PyTorch in {per['top1']:.4f} of its elements < {need}")
        else:
            if per["cosine"] < bar.min_cosine:
                fails.append(f"output {k} has cosine {per['cosine']:.6f} with PyTorch < min_cosine={bar.min_cosine}")
            if bar.min_top1 is not None and per["top1"] is not None and per["top1"] < bar.min_top1:
                fails.append(f"output {k} agrees on the argmax in {per['top1']:.4f} of its rows < min_top1={bar.min_top1}")
    floats = [p for p in res["outputs"] if p.get("cosine") is not None]
    tops = [p["top1"] for p in res["outputs"] if p.get("top1") is not None]
    report = {
        "format": fmt,
        "bar": {"min_cosine": bar.min_cosine, "min_top1": bar.min_top1},
        "ok": not fails,
        "cosine": min((p["cosine"] for p in floats), default=None),
        "row_cosine": min((p["row_cosine"] for p in floats if p["row_cosine"] is not None), default=None),
        "top1": min(tops, default=None),
        "max_abs_err": res["max_abs_err"],
        "rel_err": res["rel_err"],
        "max_rel_err": res["max_rel_err"],
        "scale": res["scale"],
        "outputs": res["outputs"],
    }
    if fails:
        raise ValidationError(
            f"{what} ({fmt} weights) agrees with PyTorch float32 less than the bar: " + "; ".join(fails) + ". "
            "The artifact was not written. Pass a lower min_cosine / min_top1 if this accuracy is acceptable "
            "for your use, try quantize='fp16', or compile without quantize."
        )
    return report
