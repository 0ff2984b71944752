"""Seeded simulation of the edge network at scale: 10,000 nodes, honest plus lazy, colluding or patient
cheaters at 1-20 %, under three replication policies (wasm_torch/net/sim.py: the coordinator's own quorum
rule, replication policy, reputation and slashing, without database or HTTP). No wall clock: reproducible.

    python bench/net_sim.py [--nodes 10000] [--tasks 100000] [--seed 0]
        -> bench/results/net_sim.json and net_sim.png

Reported per run: validation overhead (extra executions per task), wrong results accepted, the share
of all credit paid for wrong work, and cheaters cut off (reputation below min_reputation).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from wasm_torch.net.sim import KINDS, POLICIES, SimConfig, simulate

FRACTIONS = (0.01, 0.05, 0.10, 0.20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "net_sim.json"))
    a = ap.parse_args()
    runs = []
    t0 = time.perf_counter()
    print("| cheaters | kind | policy | overhead | wrong accepted | credit for wrong work | cheaters cut off |")
    print("|---|---|---|---|---|---|---|")
    for kind in KINDS:
        for frac in FRACTIONS:
            for policy in POLICIES:
                r = simulate(SimConfig(nodes=a.nodes, tasks=a.tasks, cheat_fraction=frac, cheat_kind=kind,
                                       policy=policy, seed=a.seed))  # fmt: skip
                runs.append(r)
                print(f"| {frac:.0%} | {kind} | {policy} | {r['overhead']:.3f} | {r['wrong_accepted']} "
                      f"({r['wrong_rate']:.3%}) | {r['credit_wrong_share']:.3%} | {r['cheaters_cut_off']}/{r['cheaters']} |",
                      flush=True)  # fmt: skip
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python bench/net_sim.py " + " ".join(sys.argv[1:]), "nodes": a.nodes, "tasks": a.tasks,
           "seed": a.seed, "python": platform.python_version(), "seconds": time.perf_counter() - t0, "runs": runs}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    plot(runs, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(KINDS), figsize=(15, 4.2), sharey=True)
    for ax, kind in zip(axes, KINDS, strict=True):
        for policy in POLICIES:
            rs = [r for r in runs if r["cheat_kind"] == kind and r["policy"] == policy]
            xs = [100 * r["cheat_fraction"] for r in rs]
            ax.plot(xs, [100 * r["credit_wrong_share"] for r in rs], marker="o",
                    label=f"{policy} (overhead {rs[0]['overhead']:.2f})")  # fmt: skip
        ax.set_title(f"{kind} cheaters")
        ax.set_xlabel("cheaters (% of nodes)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("credit paid for wrong work (%)")
    fig.suptitle(f"Edge network simulation: {runs[0]['nodes']:,} nodes, {runs[0]['tasks']:,} tasks (seeded)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
