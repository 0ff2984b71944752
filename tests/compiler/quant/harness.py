"""Compile an IR graph (not a torch model) to an artifact with every build variant, and run it on
each variant and thread count: the kernel tests of reduced-precision weights use it to compare the
wasm with the NumPy reference of ops/quant.py bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wasm_torch.compiler import multibuild
from wasm_torch.compiler.codegen import generate_c
from wasm_torch.compiler.codegen.memory_plan import plan_memory
from wasm_torch.compiler.ir import Graph, verify
from wasm_torch.compiler.ir.interp import run
from wasm_torch.compiler.options import CompileOptions
from wasm_torch.compiler.write import write_compiled
from wasm_torch.config import settings
from wasm_torch.runtime import VariantModule, WasmModule
from wasm_torch.runtime.variants import engine_features

OPTIONS = CompileOptions(threads=True, relaxed=True)
# (variant, threads): every build, the threaded ones at 1 and 3 threads
RUNS = [("simd128", 1), ("simd128-threads", 1), ("simd128-threads", 3), ("relaxed", 1), ("relaxed-threads", 2)]


def build(g: Graph, folder: Path) -> Path:
    verify(g, "test graph")
    plan = plan_memory(g)
    c = generate_c(g, plan, OPTIONS, header="quant kernel test")
    built = multibuild.build(c, settings(), OPTIONS)
    folder.mkdir(parents=True, exist_ok=True)
    write_compiled(folder, g, plan, built["simd128"], "qtest", OPTIONS)
    multibuild.write(folder, built, OPTIONS)
    return folder


def outputs(folder: Path, inputs: list[np.ndarray]) -> dict[tuple[str, int], list[np.ndarray]]:
    """{(variant, threads): outputs} for every run of RUNS this wasmtime supports (all of them here)."""
    have = engine_features()
    assert {"relaxed_simd", "threads"} <= have, have  # the pinned wasmtime runs every build: test them all
    res = {}
    for variant, threads in RUNS:
        mod = WasmModule(folder) if variant == "simd128" else VariantModule(folder, variant=variant, threads=threads)
        try:
            got = mod(*inputs)
        finally:
            if hasattr(mod, "close"):
                mod.close()
        res[(variant, threads)] = list(got) if isinstance(got, tuple) else [got]
    return res


def reference(g: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return run(g, dict(zip(g.inputs, inputs, strict=True)))


def assert_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype, want.dtype)
    if got.tobytes() != want.tobytes():
        bad = np.flatnonzero(got.view(np.uint8).reshape(got.size, -1).any(1) != want.view(np.uint8).reshape(want.size, -1).any(1))
        diff = np.flatnonzero(got.ravel() != want.ravel())
        raise AssertionError(f"{what}: {diff.size} of {got.size} elements differ, first at {diff[:5]}: "
                             f"{got.ravel()[diff[:5]]} vs {want.ravel()[diff[:5]]} ({bad.size})")
