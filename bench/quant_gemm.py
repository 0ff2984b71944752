"""GEMM throughput of the reduced-precision kernels through the whole stack (docs/quantization.md).

`nn.Linear` on MiniLM's GEMM shapes (and 512^3), compiled as float32, fp16 and int8 (8-bit weights:
SIMD128 i32x4.dot_i16x8_s) and int8 with relaxed=True (7-bit weights; its relaxed build multiplies
with i32x4.relaxed_dot_i8x16_i7x16_add_s), run in wasmtime at one thread through the runtime
(`VariantModule`, the engine configuration `wasm_torch.load` uses: relaxed SIMD in wasmtime's
deterministic mode), interleaved round by round, this thread's CPU time, median. int8 figures are
"GOP/s": 2·M·K·N integer multiply-adds (and the row quantization) per second.

    .venv/bin/python bench/quant_gemm.py [--repeat 15] [--out bench/results/quant_gemm.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

import wasm_torch
from wasm_torch.compiler import CompileOptions
from wasm_torch.runtime import VariantModule

SHAPES = [(128, 384, 384), (128, 384, 1536), (128, 1536, 384), (16, 384, 1536), (512, 512, 512)]
# (label, quantize, relaxed build?, variant run)
BUILDS = [
    ("f32", None, False, "simd128"),
    ("fp16", "fp16", False, "simd128"),
    ("int8", "int8", False, "simd128"),
    ("int8-7bit simd128", "int8", True, "simd128"),
    ("int8-7bit relaxed", "int8", True, "relaxed"),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", default="bench/results/quant_gemm.json")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    mods, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for m, k, n in SHAPES:
            lin, x = nn.Linear(k, n).eval(), torch.randn(m, k)
            for label, fmt, relaxed, variant in BUILDS:
                folder = Path(tmp) / f"{m}_{k}_{n}_{fmt}_{relaxed}"
                if not folder.exists():
                    wasm_torch.compile(lin, (x,), folder, options=CompileOptions(threads=False, relaxed=relaxed, quantize=fmt),
                                       min_cosine=0.99 if fmt else None)
                mods[(m, k, n, label)] = (VariantModule(folder, variant=variant, threads=1), x.numpy())
        times: dict[tuple, list[float]] = {key: [] for key in mods}
        for _ in range(a.repeat):
            for key, (mod, x) in mods.items():
                t0 = time.thread_time()
                mod(x)
                times[key].append(time.thread_time() - t0)
        for (m, k, n, label), ts in times.items():
            med = statistics.median(ts)
            rows.append({"shape": [m, k, n], "build": label, "ms": med * 1e3, "gops": 2 * m * k * n / med / 1e9})
            print(f"{m}x{k}x{n:<5} {label:18} {med * 1e3:8.3f} ms  {rows[-1]['gops']:6.1f} GOP/s")
        for mod, _ in mods.values():
            mod.close()
    import os

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": f"python bench/quant_gemm.py --repeat {a.repeat}",
                                       "loadavg": os.getloadavg(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
