"""Mutual models for peer choice (wasm_torch/collective/mutual.py: the PeerModel, SelfModel and
Chooser the Python node uses), in the seeded simulation `mutual_sim`: 1,000 nodes of varied speed
(0.5-8 s per task) each make 300 requests to 20 coordinators of varied availability (60-99 %),
latency (10-400 ms), lease (3, 10 or 30 s) and honesty (70 % pay for every acknowledged result, the
rest for 20-70 %); halfway through, the best coordinator stops paying. Credit = paid results.

Strategies: round-robin (what the node did before), random, thompson (sampling the beliefs),
greedy (the beliefs' means; the node's default). Reported: credit per node-hour and the share of
work done for nothing (late, or not paid), mean and spread over 3 seeds.

    python bench/collective_mutual.py [--nodes 1000]  -> bench/results/collective_mutual.json
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

from wasm_torch.collective.mutual import Chooser, MutualSim, mutual_sim


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "collective_mutual.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    print("| strategy | credit per node-hour (mean of seeds) | min - max | wasted share |\n|---|---|---|---|")
    for strategy in Chooser.STRATEGIES:
        got = [mutual_sim(MutualSim(nodes=a.nodes, strategy=strategy, seed=s)) for s in range(a.seeds)]
        cph = [g["credit_per_node_hour"] for g in got]
        wasted = [g["wasted_share"] for g in got]
        rows.append({"strategy": strategy, "credit_per_node_hour": cph, "wasted_share": wasted})
        print(f"| {strategy} | {np.mean(cph):.0f} | {min(cph):.0f} - {max(cph):.0f} | {np.mean(wasted):.3f} |", flush=True)
    base = np.mean(next(r for r in rows if r["strategy"] == "round-robin")["credit_per_node_hour"])
    for r in rows:
        r["vs_round_robin"] = float(np.mean(r["credit_per_node_hour"]) / base)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python bench/collective_mutual.py " + " ".join(sys.argv[1:]), "nodes": a.nodes,
           "seeds": a.seeds, "rows": rows, "python": platform.python_version(), "load_average": os.getloadavg(),
           "seconds": time.perf_counter() - t0}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    print("vs round-robin: " + ", ".join(f"{r['strategy']} {r['vs_round_robin']:.2f}x" for r in rows))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
