"""Every build variant of one model, timed in wasmtime: plain SIMD128 vs relaxed SIMD at one thread
(this thread's CPU time, steady on a shared machine), and each threaded build at 1..N threads
(wall clock: threads only help what a caller waits for; plus the whole process's CPU time per
call, which shows what the split costs). Interleaved round by round, medians.

    .venv/bin/python bench/variants.py [--model minilm|resnet|gemm512] [--rounds 12] [--threads 2]

Writes bench/results/variants.json and prints a table. The model is compiled with
CompileOptions(relaxed=True), so all four builds exist; outputs are checked first (threaded builds
bit-identical to their single-threaded twin).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import wasm_torch
from wasm_torch.runtime import VariantModule, WasmModule

ROOT = Path(__file__).resolve().parent.parent


def model_and_inputs(name: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    if name == "minilm":
        from wasm_torch.zoo import minilm

        m = minilm()[0]
        ids = torch.randint(1000, 30522, (1, 128), generator=torch.Generator().manual_seed(1))
        return m, (ids, torch.ones_like(ids))
    if name == "gemm512":
        from wasm_torch.zoo.bench_models import ConstGemm

        return ConstGemm(512), (torch.randn(512, 512),)
    from wasm_torch.zoo import build

    m, example, _ = build(name)
    return m, example


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "variants.json")
    a = ap.parse_args()
    torch.manual_seed(0)
    model, example = model_and_inputs(a.model)
    xs = [x.numpy() for x in example]
    with tempfile.TemporaryDirectory() as tmp:
        art = wasm_torch.compile(model.eval(), example, Path(tmp) / a.model,
                                 options=wasm_torch.CompileOptions(relaxed=True))  # fmt: skip
        single = {"simd128": WasmModule(art), "relaxed": VariantModule(art, variant="relaxed")}
        threaded = {(v, t): VariantModule(art, variant=v, threads=t)
                    for v in ("simd128-threads", "relaxed-threads") for t in range(1, a.threads + 1)}  # fmt: skip
        ref = {k: m(*xs) for k, m in single.items()}
        for (v, t), m in threaded.items():
            want = ref[v.removesuffix("-threads")]
            got = m(*xs)
            assert all(g.tobytes() == w.tobytes() for g, w in zip(*(
                [x] if isinstance(x, np.ndarray) else list(x) for x in (got, want)), strict=True)), (v, t)
        cpu = {k: [] for k in single}
        wall = {k: [] for k in threaded}
        proc = {k: [] for k in threaded}
        for _ in range(a.rounds):
            for k, m in single.items():
                t0 = time.thread_time()
                m(*xs)
                cpu[k].append((time.thread_time() - t0) * 1e3)
            for k, m in threaded.items():
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                m(*xs)
                wall[k].append((time.perf_counter() - t0) * 1e3)
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                proc[k].append((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1e3)
        for m in threaded.values():
            m.close()
    rows = [{"build": k, "threads": 1, "clock": "cpu", "ms": round(statistics.median(v), 2)} for k, v in cpu.items()]
    rows += [{"build": v, "threads": t, "clock": "wall", "ms": round(statistics.median(ts), 2),
              "process_cpu_ms": round(statistics.median(proc[(v, t)]), 2)} for (v, t), ts in wall.items()]  # fmt: skip
    doc = {"command": "python bench/variants.py " + " ".join(sys.argv[1:]), "model": a.model,
           "loadavg": [round(x, 2) for x in os.getloadavg()], "rows": rows}  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1))
    print("| build | threads | clock | median ms | process CPU ms |\n|---|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['build']} | {r['threads']} | {r['clock']} | {r['ms']:.2f} | {r.get('process_cpu_ms', '')} |")
    print(f"load average {doc['loadavg']}; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
