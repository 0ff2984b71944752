"""Incremental repartitioning vs solving from scratch, as the graph grows.

    python bench/partition_incremental.py [--layers 8,16,32,64,128,256] [--stages 4] [--updates 5]
                                          [--out bench/results/partition_incremental.json]

Graphs: wasm_torch.analyze.synthetic.transformer_like(L) (10 nodes per layer: norm, q/k/v branches,
attention, projection, residual adds, MLP), FLOP-like costs. For each size:
- full: Dag index + Partitioner(...).solve() from nothing (what a fresh compile does);
- setup: a PartitionSession's first solve plus its per-node min-cut gates (once per graph);
- update "noise": every node's cost re-measured within ±3% (a new run on the same machine);
- update "few": 3 random nodes' costs x0.5..x2 (a few ops re-measured);
- update "shift": the first quarter of the nodes 1.6x slower (another machine): the stages move.
Each update is checked against a fresh solve (same crossing bytes). Times are this process's CPU
seconds (the work is single-threaded Python + networkx), medians over --updates runs.
The scaling exponent of each series is the least-squares slope of log(time) against log(nodes).
The original design claimed O(n^0.12) updates; this reports what we measure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

from wasm_torch.analyze.dag import Dag
from wasm_torch.analyze.incremental import PartitionSession
from wasm_torch.analyze.partition import Partitioner, PartitionOptions
from wasm_torch.analyze.synthetic import transformer_like


def slope(ns: list[int], ts: list[float]) -> float:
    x, y = np.log(np.array(ns, float)), np.log(np.maximum(np.array(ts, float), 1e-9))
    return float(np.polyfit(x, y, 1)[0])


def timed(fn):
    """(result, CPU seconds of this process): single-threaded work, so other jobs on a shared machine
    inflate it much less than wall time."""
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default="8,16,32,64,128,256")
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--tolerance", type=float, default=0.1)
    ap.add_argument("--updates", type=int, default=5)
    ap.add_argument("--out", default="bench/results/partition_incremental.json")
    args = ap.parse_args()
    opts = PartitionOptions(args.stages, args.tolerance)
    rows = []
    for layers in (int(x) for x in args.layers.split(",")):
        g, costs = transformer_like(layers)
        n = len(g.nodes)
        full = []
        for _ in range(args.updates):
            _, t = timed(lambda g=g, costs=costs: Partitioner(Dag.of(g), costs, opts).solve())
            full.append(t)
        s = PartitionSession(g, costs, opts)
        _, t_setup = timed(lambda s=s: (s.solve(), s.gates()))
        rng = np.random.default_rng(layers)
        series: dict[str, list[float]] = {"noise": [], "few": [], "shift": []}
        modes: dict[str, list[str]] = {k: [] for k in series}
        for _ in range(args.updates):
            for kind in series:
                s.update(costs)  # every timed update starts from the base costs' optimum (untimed)
                if kind == "noise":
                    new = costs * rng.uniform(0.97, 1.03, size=n)
                elif kind == "few":
                    new = costs.copy()
                    idx = rng.choice(n, size=3, replace=False)
                    new[idx] *= rng.uniform(0.5, 2.0, size=3)
                else:
                    new = costs.copy()
                    new[: n // 4] *= 1.6
                p, t = timed(lambda s=s, new=new: s.update(new))
                want = Partitioner(Dag.of(g), new, opts).solve()
                if p.crossing_bytes != want.crossing_bytes:
                    raise SystemExit(f"update disagrees with a fresh solve at {n} nodes ({kind})")
                series[kind].append(t)
                modes[kind].append(str(s.last_update["mode"]))
        row = {"layers": layers, "nodes": n, "full_s": statistics.median(full), "setup_s": t_setup,
               **{f"update_{k}_s": statistics.median(v) for k, v in series.items()},
               "modes": {k: sorted(set(v)) for k, v in modes.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ns = [r["nodes"] for r in rows]
    result = {
        "graph": "synthetic transformer_like(L): 10 nodes per layer",
        "stages": args.stages, "tolerance": args.tolerance, "updates": args.updates,
        "rows": rows,
        "exponent": {k: round(slope(ns, [r[k] for r in rows]), 3)
                     for k in ("full_s", "setup_s", "update_noise_s", "update_few_s", "update_shift_s")},
        "speedup_at_largest": {k: round(rows[-1]["full_s"] / max(rows[-1][k], 1e-9), 1)
                               for k in ("update_noise_s", "update_few_s", "update_shift_s")},
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("exponent", "speedup_at_largest")}, indent=1))
    _plot(result, out.with_suffix(".png"))


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ns = [r["nodes"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label in (("full_s", "full solve"), ("update_shift_s", "update: stages move"),
                       ("update_few_s", "update: 3 nodes re-measured"), ("update_noise_s", "update: ±3% noise")):
        ax.loglog(ns, [r[key] for r in rows], "o-", label=f"{label} (n^{result['exponent'][key]:.2f})")
    ax.set_xlabel("graph nodes")
    ax.set_ylabel("CPU seconds (median)")
    ax.set_title(f"Repartitioning into {result['stages']} stages")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    if not math.isfinite(sum(ns)):
        raise SystemExit("bad sizes")


if __name__ == "__main__":
    main()
