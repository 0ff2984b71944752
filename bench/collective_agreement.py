"""Spike-based Byzantine agreement (wasm_torch/collective/agreement.py), seeded simulations:

- within the bound: n ∈ {4, 7, 10, 13, 16} members with f = floor((n − 1)/3) Byzantine ones of each
  strategy (silent, flip, equivocate, random, split), random and partitioning schedules, random
  inputs: runs, disagreements among correct members (must be 0), validity violations (0), runs where
  every correct member decided, messages delivered per run and the round of the last decision;
- the plain baseline it replaces: every coordinator executes its *own* tally (no agreement) — how often
  two correct coordinators would then act differently when their inputs differ;
- beyond the bound: f + 1 Byzantine members splitting the correct ones: disagreements.

    python bench/collective_agreement.py [--runs 40]  -> bench/results/collective_agreement.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from wasm_torch.collective.agreement import BYZANTINE, max_faulty, simulate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "collective_agreement.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    print("| n | f | Byzantine | schedule | runs | disagree | invalid | all decided | msgs/run | max round | "
          "own-tally baseline: runs acting differently |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in (4, 7, 10, 13, 16):
        f = max_faulty(n)
        for strategy in BYZANTINE:
            for schedule in ("random", "partition"):
                dis = inv = done = 0
                msgs, rounds, baseline = [], [], 0
                for seed in range(a.runs):
                    out = simulate(n, {i: strategy for i in range(n - f, n)}, seed=seed, schedule=schedule)
                    dis += not out.agreement
                    inv += not out.validity
                    done += out.terminated
                    msgs.append(out.delivered)
                    rounds.append(max(r for r in out.rounds.values() if r is not None) if out.terminated else -1)
                    baseline += len(set(out.inputs.values())) > 1
                rows.append({"n": n, "f": f, "byzantine": strategy, "schedule": schedule, "runs": a.runs,
                             "disagreements": dis, "invalid": inv, "terminated": done,
                             "messages_mean": float(np.mean(msgs)), "max_round": int(max(rounds)),
                             "baseline_divergent": baseline})  # fmt: skip
                print(f"| {n} | {f} | {strategy} | {schedule} | {a.runs} | {dis} | {inv} | {done} | "
                      f"{np.mean(msgs):.0f} | {max(rounds)} | {baseline} |", flush=True)  # fmt: skip
    beyond = []
    print("\n| n | Byzantine (f + 1) | runs | disagreements |\n|---|---|---|---|")
    for n in (4, 7, 10, 13):
        f = max_faulty(n)
        dis = sum(not simulate(n, {i: "split" for i in range(n - f - 1, n)}, seed=s, schedule="partition").agreement
                  for s in range(a.runs))  # fmt: skip
        beyond.append({"n": n, "byzantine": f + 1, "runs": a.runs, "disagreements": dis})
        print(f"| {n} | {f + 1} | {a.runs} | {dis} |", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python bench/collective_agreement.py " + " ".join(sys.argv[1:]), "within_bound": rows,
           "beyond_bound": beyond, "python": platform.python_version(), "load_average": os.getloadavg(),
           "seconds": time.perf_counter() - t0}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
