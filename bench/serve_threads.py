"""One replica with intra-op threads, or several single-threaded instances? all-MiniLM-L6-v2 at seq
128 behind wasm_torch.serve's ModelPool, in process (no HTTP: this compares the two ways to spend
the cores, not the server):

    threads    1 replica  x N intra-op threads (wasm_torch.load(path, threads=N)): weights once
    replicas   N replicas x 1 thread each (wasm_torch.load(path, threads=1)): N copies of the weights
    single     1 replica  x 1 thread (the baseline)

For each: latency at concurrency 1 (one request at a time, median and p90 of `--requests`) and
throughput at concurrency 16 (16 client threads each sending requests back to back for
`--seconds`; requests per second), then the linear memory the instances hold. Configurations are
interleaved round by round (`--rounds`; medians reported) so load changes on a shared machine hit
all alike. All use the build `load` picks (`--variant` to pin one). Writes
bench/results/serve_threads.json and prints a table.

    .venv/bin/python bench/serve_threads.py [--threads 2] [--requests 30] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEQ = 128


def artifact(out: Path) -> Path:
    """all-MiniLM-L6-v2 compiled once (dynamic seq up to 256) and reused."""
    import torch
    from torch.export import Dim

    import wasm_torch
    from wasm_torch.zoo import minilm

    if (out / "manifest.json").is_file():
        return out
    model, tok = minilm()
    enc = tok(["an example sentence"], return_tensors="pt")
    seq = Dim("seq", min=2, max=256)
    with torch.no_grad():
        wasm_torch.compile(model, (enc["input_ids"], enc["attention_mask"]), out,
                           dynamic_shapes={"input_ids": {1: seq}, "attention_mask": {1: seq}})  # fmt: skip
    return out


def inputs() -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(1000, 30522, (1, SEQ)).astype(np.int64)
    ids[0, 0], ids[0, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def make_pool(path: Path, replicas: int, threads: int, variant: str) -> tuple[object, list[object]]:
    import wasm_torch
    from wasm_torch.serve.pool import ModelPool
    from wasm_torch.serve.settings import ServeSettings

    made: list[object] = []

    def factory() -> object:
        m = wasm_torch.load(path, threads=threads, variant=variant)
        made.append(m)
        return m

    settings = ServeSettings(replicas=replicas, deadline_s=None, memory_limit=None, healing=False)
    return ModelPool(f"minilm-{replicas}x{threads}", factory, settings), made


def latency(pool: object, x: dict[str, np.ndarray], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        pool.infer(x)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def throughput(pool: object, x: dict[str, np.ndarray], clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        while time.perf_counter() < stop:
            pool.infer(x)
            done[k] += 1

    ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="cores to spend: N threads or N replicas")
    ap.add_argument("--requests", type=int, default=30, help="requests per latency measurement")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per throughput measurement")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variant", default="auto")
    ap.add_argument("--artifact", type=Path, default=ROOT / "out" / "bench" / "minilm_threads")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_threads.json")
    a = ap.parse_args()
    n = a.threads
    path = artifact(a.artifact)
    x = inputs()
    configs = {"single": (1, 1), "threads": (1, n), "replicas": (n, 1)}
    pools = {k: make_pool(path, r, t, a.variant) for k, (r, t) in configs.items()}
    for pool, _ in pools.values():
        pool.infer(x)  # warm every replica up
    res: dict[str, dict[str, list[float]]] = {k: {"p50": [], "p90": [], "rps": []} for k in configs}
    load0 = os.getloadavg()
    for rnd in range(a.rounds):
        for k in (list(configs)[rnd % 3 :] + list(configs)[: rnd % 3]):
            pool = pools[k][0]
            lat = latency(pool, x, a.requests)
            res[k]["p50"].append(statistics.median(lat))
            res[k]["p90"].append(float(np.percentile(lat, 90)))
            res[k]["rps"].append(throughput(pool, x, a.clients, a.seconds))
            print(f"round {rnd}: {k}: p50 {res[k]['p50'][-1]:.1f} ms, {res[k]['rps'][-1]:.2f} req/s", flush=True)
    rows = []
    for k, (replicas, threads) in configs.items():
        pool, made = pools[k]
        rows.append({
            "config": k, "replicas": replicas, "threads_per_replica": threads,
            "builds": sorted({getattr(getattr(m, "spec", None), "name", "simd128") for m in made}),
            "latency_c1_p50_ms": round(statistics.median(res[k]["p50"]), 2),
            "latency_c1_p90_ms": round(statistics.median(res[k]["p90"]), 2),
            f"throughput_c{a.clients}_rps": round(statistics.median(res[k]["rps"]), 3),
            "linear_memory_bytes": sum(m.memory_bytes for m in made),
            "weights_copies": len(made),
        })  # fmt: skip
        pool.close()
        for m in made:
            getattr(m, "close", lambda: None)()
    doc = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "loadavg_at_start": [round(v, 2) for v in load0],
                    "loadavg_at_end": [round(v, 2) for v in os.getloadavg()]},
        "command": "python bench/serve_threads.py " + " ".join(sys.argv[1:]),
        "settings": vars(a) | {"artifact": str(a.artifact), "out": str(a.out), "seq": SEQ},
        "rows": rows,
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1))
    print(f"\n| config | replicas x threads | build | p50 ms (c=1) | p90 ms (c=1) | req/s (c={a.clients}) | linear memory MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['replicas']} x {r['threads_per_replica']} | {', '.join(r['builds'])} | "
              f"{r['latency_c1_p50_ms']:.1f} | {r['latency_c1_p90_ms']:.1f} | {r[f'throughput_c{a.clients}_rps']:.2f} | "
              f"{r['linear_memory_bytes'] / 1e6:.0f} |")  # fmt: skip
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
