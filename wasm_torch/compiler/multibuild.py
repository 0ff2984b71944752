"""The build-variant stage of `compile()`: the one generated C built once per variant
(compiler/build/variants.py), the extra files written next to model.wasm, and each checked before
the artifact is published.

    model.wasm                   simd128: checked against PyTorch (pipeline._validate)
    model.threads.wasm           run on 2 threads: must equal model.wasm's outputs bit for bit
    model.relaxed.wasm           fused multiply-add rounds differently: checked against PyTorch
    model.relaxed-threads.wasm   run on 2 threads: must equal model.relaxed.wasm's outputs bit for bit

The manifest lists every file with its sha256 in `files` and describes the builds in
`compiler.variants` (what the runtimes choose from; wasm_torch/runtime/variants.py reads it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifact import MANIFEST, add_manifest_fields, file_entry
from ..config import Settings
from ..errors import ValidationError
from .build import compile_variants, selected
from .build.variants import SIMD128, Variant
from .build.zig import STACK_BYTES
from .check import compare, reference_outputs
from .options import CompileOptions

VALIDATION_THREADS = 2


def variants_of(options: CompileOptions) -> tuple[Variant, ...]:
    return selected(options.threads, options.relaxed)


def build(c_source: str, settings: Settings, options: CompileOptions) -> dict[str, bytes]:
    """name -> wasm bytes for every variant the options select (simd128 first)."""
    return compile_variants(c_source, settings, options, variants_of(options))


def write(folder: Path, built: dict[str, bytes], options: CompileOptions) -> None:
    """Write the variant files beside model.wasm (already written) and record them in the manifest."""
    variants = variants_of(options)
    raw = json.loads((folder / MANIFEST).read_text())
    files = dict(raw["files"])
    for v in variants:
        if v is not SIMD128:
            (folder / v.file).write_bytes(built[v.name])
            files[v.file] = file_entry(folder / v.file)
    compiler = {**raw.get("compiler", {}), "variants": [v.to_json(STACK_BYTES) for v in variants]}
    add_manifest_fields(folder, {"files": files, "compiler": compiler})


def _outputs(mod: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    got = mod(*inputs)
    return list(got) if isinstance(got, tuple) else [got]


def _bits_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True)
    )


def validate(
    model: torch.nn.Module, inputs: tuple, folder: Path, options: CompileOptions, atol: float, rtol: float,
    agree: Callable[[list[np.ndarray], list[np.ndarray], str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Check every variant (module docstring); raises ValidationError, returns a short report. agree:
    the check of a non-deterministic build against PyTorch for reduced-precision weights
    (quant_check.check_agreement: cosine / top-1 instead of atol / rtol)."""
    from ..runtime import VariantModule, WasmModule
    from ..runtime.variants import engine_features

    variants = [v for v in variants_of(options) if v is not SIMD128]
    if not variants:
        return {}
    xs = [x.detach().cpu().numpy() for x in inputs]
    have = engine_features()
    plain = _outputs(WasmModule(folder), xs)
    want: list[np.ndarray] | None = None
    single: dict[str, list[np.ndarray]] = {}
    report: dict[str, Any] = {}
    for v in sorted(variants, key=lambda v: v.threads):  # single-threaded ones first
        if not set(v.features) <= have:
            report[v.name] = "not checked: this wasmtime lacks " + ", ".join(sorted(set(v.features) - have))
            continue
        threads = VALIDATION_THREADS if v.threads else 1
        mod = VariantModule(folder, variant=v.name, threads=threads)
        try:
            got = _outputs(mod, xs)
        finally:
            mod.close()
        ref_name = "simd128" if v.deterministic else v.name.removesuffix("-threads")
        ref = plain if v.deterministic else single.get(ref_name)
        if ref is not None:
            if not _bits_equal(got, ref):
                raise ValidationError(
                    f"the {v.name} build on {threads} threads does not reproduce the {ref_name} build bit for bit: "
                    "a kernel's parallel split changed a result. The artifact was not written; please report a bug."
                )
            report[v.name] = f"bit-identical to {ref_name} on {threads} threads"
        else:
            want = want if want is not None else reference_outputs(model, inputs)
            if agree is not None:  # raises ValidationError below the bar
                res = agree(got, want, f"the {v.name} build")
                report[v.name] = f"cosine with PyTorch {res['cosine']}"
                single.setdefault(v.name, got)
                continue
            res = compare(got, want, atol, rtol)
            if not res["ok"]:
                raise ValidationError(
                    f"the {v.name} build disagrees with PyTorch beyond atol={atol}, rtol={rtol}: max abs error "
                    f"{res['max_abs_err']:.3g}. The artifact was not written; compile with "
                    "CompileOptions(relaxed=False) to leave that build out, or report a bug."
                )
            report[v.name] = f"max abs error vs PyTorch {res['max_abs_err']:.3g}"
        single.setdefault(v.name, got)
    return report


def record(folder: Path, report: dict[str, Any]) -> None:
    if report:
        raw = json.loads((folder / MANIFEST).read_text())
        add_manifest_fields(folder, {"validation": {**raw.get("validation", {}), "variants": report}})
