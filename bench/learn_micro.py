"""Pattern memory and MicroLoRA micro-benchmarks: `pre_query` over 10,000 stored patterns and one
MicroLoRA adaptation step, beside the figures RuVector claims (< 2 ms and < 100 µs).

    PYTHONPATH=. python bench/learn_micro.py     # writes bench/results/learn_micro.json

10,000 distinct synthetic patterns in 100 families (model families cluster; uniform random 64-d
vectors would not), each with 3 measured configurations, recorded through `post_query` into a
fresh memory and consolidated by `background_learn` (the k-means++ index). Then `pre_query` for
held-out patterns: latency percentiles, and how often the index returns the same nearest
neighbour as a brute-force scan. MicroLoRA: `adapt` on single rows of the cost model over the
compiler's real search space width, without and with EWC anchors (lambda 5000). Peer in the same
run: a brute-force numpy scan over all 10,000 vectors, and a plain numpy `x @ W` of the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wasm_torch.learn.costmodel import MicroLoRACostModel
from wasm_torch.learn.features import DIM, GROUPS, Pattern
from wasm_torch.learn.machine import current_machine
from wasm_torch.learn.memory import SNAPSHOT, PatternMemory
from wasm_torch.learn.storage import atomic_write_npz
from wasm_torch.learn.synthetic import make_world
from wasm_torch.learn.trajectory import TrajectoryBuffer


def percentiles(us: list[float]) -> dict[str, float]:
    a = np.asarray(us)
    return {"p50_us": round(float(np.median(a)), 2), "p90_us": round(float(np.percentile(a, 90)), 2),
            "p99_us": round(float(np.percentile(a, 99)), 2), "n": len(a)}


def bench_pre_query(n: int, queries: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    centres = rng.random((100, DIM))
    fam = rng.integers(100, size=n)
    vecs = (centres[fam] + 0.05 * rng.standard_normal((n, DIM))).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        # bulk load: a snapshot written directly (post_query fsyncs each outcome: 30,000 fsyncs would
        # time the disk, not the memory), then opened and consolidated like any memory
        t0 = time.perf_counter()
        buf = TrajectoryBuffer(3 * n)
        for i in range(n):
            g = rng.dirichlet(np.ones(len(GROUPS))).astype(np.float32)
            for k in range(3):
                buf.append(vecs[i], g, f"p{i}", {"k": int((fam[i] + k) % 5)}, 1.0 + 0.1 * k, 1.0, "s", 0.0)
        atomic_write_npz(Path(tmp) / SNAPSHOT, buf.to_arrays())
        mem = PatternMemory(tmp, capacity=3 * n)
        load_s = time.perf_counter() - t0
        learn = mem.background_learn()
        assert learn["patterns"] == n, learn
        qs = (centres[rng.integers(100, size=queries)] + 0.05 * rng.standard_normal((queries, DIM))).astype(np.float32)
        gates = np.full(len(GROUPS), 0.1, np.float32)
        for q in qs[:20]:
            mem.pre_query(Pattern(q, gates, "q"), k=3)  # warm
        t_idx, t_brute, agree = [], [], 0
        for q in qs:
            p = Pattern(q, gates, "q")
            t = time.perf_counter_ns()
            mem.pre_query(p, k=3)
            t_idx.append((time.perf_counter_ns() - t) / 1e3)
            t = time.perf_counter_ns()
            brute = int(np.argmin(np.linalg.norm(vecs - q, axis=1)))  # the peer: a full scan
            t_brute.append((time.perf_counter_ns() - t) / 1e3)
            nb = mem._neighbours(q, 1)
            agree += nb[0][0] == f"p{brute}"
    return {
        "patterns": n,
        "trajectories": 3 * n,
        "clusters": learn["clusters"],
        "background_learn_ms": learn["ms"],
        "bulk_load_s": round(load_s, 2),
        "pre_query": percentiles(t_idx),
        "brute_force_nearest_scan": percentiles(t_brute),
        "nearest_neighbour_recall": round(agree / queries, 4),
    }


def bench_adapt(steps: int, seed: int) -> dict:
    from wasm_torch.learn.compile_space import CompileSpace

    width = CompileSpace().width
    w = make_world(seed)
    rng = np.random.default_rng(seed)
    b = w.batch("conv", steps, rng)
    x = np.concatenate([b.x[:, :DIM], rng.random((steps, width))], axis=1)  # the compiler space's width
    s, y = b.gates.astype(np.float64), b.y.astype(np.float64)
    out = {"input_width": int(x.shape[1]), "hidden": 32, "rank": 2, "groups": len(GROUPS)}
    m = MicroLoRACostModel(width, seed=seed)
    for label in ("without_ewc", "with_ewc"):
        if label == "with_ewc":
            from wasm_torch.learn.costmodel import Batch

            m.consolidate(Batch(x[:200], s[:200], y[:200]))
        for i in range(200):
            m.adapt(x[i], s[i], float(y[i]))
        ts = []
        for i in range(steps):
            t = time.perf_counter_ns()
            m.adapt(x[i], s[i], float(y[i]))
            ts.append((time.perf_counter_ns() - t) / 1e3)
        out[label] = percentiles(ts)
    W = np.random.default_rng(0).standard_normal((32, x.shape[1]))
    ts = []
    for i in range(steps):
        t = time.perf_counter_ns()
        W @ x[i]
        ts.append((time.perf_counter_ns() - t) / 1e3)
    out["peer_one_matvec"] = percentiles(ts)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patterns", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--steps", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/learn_micro.json")
    a = ap.parse_args()
    pq = bench_pre_query(a.patterns, a.queries, a.seed)
    ad = bench_adapt(a.steps, a.seed)
    res = {
        "command": "PYTHONPATH=. python bench/learn_micro.py " + " ".join(sys.argv[1:]),
        "machine": {**current_machine().__dict__, "key": current_machine().key},
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "pre_query": pq,
        "microlora_adapt": ad,
        "claims": {"pre_query_ms": 2.0, "microlora_step_us": 100.0},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({"pre_query": pq["pre_query"], "recall": pq["nearest_neighbour_recall"],
                      "brute": pq["brute_force_nearest_scan"], "adapt": ad["without_ewc"], "adapt_ewc": ad["with_ewc"]},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
