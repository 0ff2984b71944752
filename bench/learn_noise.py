"""How well each timing estimator tells "no difference" on this machine: an A/A test.

    PYTHONPATH=. python bench/learn_noise.py     # bench/results/learn_noise.json

One compiled zoo model timed interleaved against a second instance of itself (the true ratio is
1.0) with several estimators, `--repeats` times each; the spread of the estimates is the noise a
tuner must see through. The machine's load average is recorded: on a shared machine the answer
depends on what else runs. Estimators:

    q10_0.5ms_41     the tuner's (measure.py): 41 rounds of 0.5 ms samples, 10th percentile each side
    q25_2ms_15       15 rounds of 2 ms samples, 25th percentile each side
    median_ratio     per-round candidate/default, median over 15 rounds of 2 ms
    min_0.2ms_61     61 rounds of 0.2 ms samples, minimum each side
    cpu_q10_0.5ms_41 the tuner's estimator on the thread's CPU time (time.thread_time) instead of wall
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

import wasm_torch
from wasm_torch.learn.measure import interleaved
from wasm_torch.zoo.models import build

ESTIMATORS = {  # name -> (min_sample_s, rounds, statistic, timer)
    "q10_0.5ms_41": (5e-4, 41, "q10", time.perf_counter),
    "q25_2ms_15": (2e-3, 15, "q25", time.perf_counter),
    "median_ratio": (2e-3, 15, "median_ratio", time.perf_counter),
    "min_0.2ms_61": (2e-4, 61, "min", time.perf_counter),
    "cpu_q10_0.5ms_41": (5e-4, 41, "q10", time.thread_time),
}


def estimate(c: np.ndarray, b: np.ndarray, stat: str) -> float:
    if stat == "median_ratio":
        return float(np.median(c / b))
    q = {"q10": 0.10, "q25": 0.25, "min": 0.0}[stat]
    return float(np.quantile(c, q) / np.quantile(b, q))


def _caller(mod, arrays):  # type: ignore[no-untyped-def]
    return lambda: mod(*arrays, copy=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--out", default="bench/results/learn_noise.json")
    a = ap.parse_args()
    res: dict = {"command": "PYTHONPATH=. python bench/learn_noise.py " + " ".join(sys.argv[1:]),
                 "load_average_before": os.getloadavg(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            model, inputs, dyn = build(name)
            art = wasm_torch.compile(model, inputs, Path(tmp) / name, dynamic_shapes=dyn)
            m1, m2 = wasm_torch.load(art.path), wasm_torch.load(art.path)
            arrays = [x.numpy() for x in inputs]
            first, second = _caller(m1, arrays), _caller(m2, arrays)
            row = {}
            for est, (sample_s, rounds, stat, timer) in ESTIMATORS.items():
                vals = []
                for _ in range(a.repeats):
                    r = interleaved(first, second, rounds=rounds, min_sample_s=sample_s, timer=timer)
                    vals.append(estimate(np.asarray(r.candidate), np.asarray(r.baseline), stat))
                row[est] = {"estimates": [round(v, 4) for v in vals], "min": round(min(vals), 4),
                            "max": round(max(vals), 4), "worst_error": round(max(abs(v - 1.0) for v in vals), 4)}
                print(f"{name} {est}: {np.round(vals, 3)}", flush=True)
            res["models"][name] = row
    res["load_average_after"] = os.getloadavg()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
