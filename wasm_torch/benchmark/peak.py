"""This machine's SIMD128 peak: the most f32 GFLOP/s one core reaches in wasm, the yardstick every
model's GFLOP/s is reported against (`wasm-torch bench`, docs/benchmarks.md).

A tight loop of 12 independent f32x4 chains per iteration — `a = a * m + c` as a mul and an add
(plain SIMD128), or as one `f32x4.relaxed_madd` (relaxed SIMD) — compiled with the kernel flags and
run in wasmtime (the engine our Python runtime uses; fused multiply-add in its deterministic mode).
12 chains cover the latency of a dependent multiply-add on current x86 and ARM cores (4-5 cycles,
two units), so the loop is bound by throughput. One step is one iteration (clang cannot reorder
across the empty asm), 96 floating-point operations. The peak is the better of the two loops,
median of `repeat` runs of `iters` iterations each, timed in this thread's CPU time (what the core
does while it runs us: on a shared machine, wall time would charge other processes' time slices to
the peak; the models' wall-clock GFLOP/s then read as a conservative fraction of it).
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import wasmtime

from ..compiler.build.zig import COMMON, zig_command

SOURCE = r"""
#include <wasm_simd128.h>
#define E __attribute__((visibility("default")))
#define CH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(i) v128_t a##i = wasm_f32x4_splat(seed + (float)(i));
#define SUM(i) s = wasm_f32x4_add(s, a##i);
#define MULADD(i) a##i = wasm_f32x4_add(wasm_f32x4_mul(a##i, m), c);
#define FMA(i) a##i = wasm_f32x4_relaxed_madd(a##i, m, c);
#define LOOP(NAME, STEP)                                                              \
E float NAME(int iters, float seed) {                                                 \
    v128_t m = wasm_f32x4_splat(0.9999f), c = wasm_f32x4_splat(0.0001f);              \
    CH(DECL)                                                                          \
    for (int it = 0; it < iters; it++) {                                              \
        __asm__("" : "+r"(it));                                                       \
        CH(STEP)                                                                      \
    }                                                                                 \
    v128_t s = a0;                                                                    \
    CH(SUM)                                                                           \
    return wasm_f32x4_extract_lane(s, 0);                                             \
}
LOOP(peak_muladd, MULADD)
LOOP(peak_fma, FMA)
"""
FLOPS_PER_ITER = 12 * 4 * 2


def build() -> bytes:
    with tempfile.TemporaryDirectory(prefix="wasm_torch_peak_") as tmp:
        src, out = Path(tmp) / "peak.c", Path(tmp) / "peak.wasm"
        src.write_text(SOURCE)
        cmd = [*zig_command(), *COMMON, "-mrelaxed-simd", "-O2", "-Wl,--no-entry", "-Wl,--export-dynamic",
               str(src), "-o", str(out)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"zig cc failed building the peak loop:\n{proc.stderr[-2000:]}")
        return out.read_bytes()


def simd128_peak(iters: int = 4_000_000, repeat: int = 5) -> dict[str, Any]:
    """GFLOP/s of both loops in wasmtime on this thread, and the peak (the better)."""
    cfg = wasmtime.Config()
    cfg.wasm_simd = True
    cfg.wasm_relaxed_simd = True
    cfg.wasm_relaxed_simd_deterministic = True  # as the runtime's relaxed engine
    cfg.cranelift_opt_level = "speed"
    store = wasmtime.Store(wasmtime.Engine(cfg))
    inst = wasmtime.Instance(store, wasmtime.Module(store.engine, build()), [])
    out: dict[str, Any] = {"iters": iters, "repeat": repeat, "clock": "cpu"}
    for name in ("muladd", "fma"):
        fn = inst.exports(store)[f"peak_{name}"]
        fn(store, iters // 10, 1.0)  # warm-up
        times = []
        for _ in range(repeat):
            t0 = time.thread_time()
            fn(store, iters, 1.0)
            times.append(time.thread_time() - t0)
        out[f"{name}_gflops"] = round(iters * FLOPS_PER_ITER / statistics.median(times) / 1e9, 2)
    out["peak_gflops"] = max(out["muladd_gflops"], out["fma_gflops"])
    return out


if __name__ == "__main__":
    print(simd128_peak())
