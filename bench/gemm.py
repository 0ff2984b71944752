"""GEMM microbenchmark through the whole stack: a compiled nn.Linear (constant weights, packed),
median of repeated calls after warm-up, one thread, shapes interleaved round by round. Reports
GFLOP/s per shape (2·M·K·N / time; the time includes copying the input in and the output out).

    .venv/bin/python bench/gemm.py [--out bench/results/gemm.json] [--clock wall|cpu]

--clock cpu times this thread's CPU time instead of wall time: on a machine shared with other
processes it measures the kernel rather than the scheduler.
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

# all-MiniLM-L6-v2's GEMMs at seq 128 (Q/K/V/output, FFN up, FFN down) and the classic 512^3
SHAPES = [(128, 384, 384), (128, 384, 1536), (128, 1536, 384), (512, 512, 512)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/gemm.json")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (wall clock only)")
    a = ap.parse_args()
    clock = time.perf_counter if a.clock == "wall" else time.thread_time
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for m_, k, n in SHAPES:
            x = torch.randn(m_, k)
            art = wasm_torch.compile(nn.Linear(k, n), (x,), Path(tmp) / f"g{m_}_{k}_{n}")
            mod = wasm_torch.load(art, threads=a.threads)  # one thread unless --threads
            mod(x.numpy())
            cases.append(((m_, k, n), mod, x.numpy()))
        times: dict[tuple[int, int, int], list[float]] = {shape: [] for shape, _, _ in cases}
        for _ in range(a.repeat):
            for shape, mod, xn in cases:
                t0 = clock()
                mod(xn)
                times[shape].append(clock() - t0)
    rows = []
    for (m_, k, n), ts in times.items():
        t = statistics.median(ts)
        rows.append(
            {"M": m_, "K": k, "N": n, "ms": round(t * 1e3, 3), "gflops": round(2 * m_ * k * n / t / 1e9, 2)}
        )
        print(rows[-1])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    command = f"python bench/gemm.py --clock {a.clock} --threads {a.threads}"
    doc = {"command": command, "clock": a.clock, "threads": a.threads, "rows": rows}
    Path(a.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
