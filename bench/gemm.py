"""GEMM microbenchmark through the whole stack: a compiled nn.Linear (constant weights, packed),
median of repeated calls after warm-up, one thread. Reports GFLOP/s per shape.

    .venv/bin/python bench/gemm.py [--out bench/results/gemm.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import wasm_torch

SHAPES = [(128, 384, 1536), (128, 1536, 384), (512, 512, 512)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/gemm.json")
    ap.add_argument("--repeat", type=int, default=15)
    a = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m_, k, n in SHAPES:
            x = torch.randn(m_, k)
            mod = wasm_torch.compile(nn.Linear(k, n), (x,), Path(tmp) / f"g{m_}_{k}_{n}").load()
            xn = x.numpy()
            mod(xn)
            ts = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                mod(xn)
                ts.append(time.perf_counter() - t0)
            t = statistics.median(ts)
            rows.append(
                {
                    "M": m_,
                    "K": k,
                    "N": n,
                    "ms": round(t * 1e3, 3),
                    "gflops": round(2 * m_ * k * n / t / 1e9, 2),
                }
            )
            print(rows[-1])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": "python bench/gemm.py", "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
