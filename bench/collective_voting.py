"""Stake-weighted voting (wasm_torch/collective/voting.py): softmax over stakes at several temperatures
against plain stake-proportional weights, on a seeded electorate of 1,000 members whose stakes are the
admission floor (10 credits, the default join_stake) plus a lognormal excess (median 10 credits).

For each rule: the Nakamoto coefficient (fewest members holding > 50 % of the weight; larger is more
decentralised), the largest single weight, and what splitting pays — the weight of a stake split into
k identities over its weight as one, for a member at k × the floor (k = 2, 3, 5) and for a whale
(the largest stake, split into 10). Proportional is split-neutral by construction (gain 1).

    python bench/collective_voting.py  -> bench/results/collective_voting.{json,png}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from wasm_torch.collective.voting import nakamoto, sybil_gain, weights

FLOOR = 10.0
TEMPERATURES = (5.0, 10.0, FLOOR / math.log(2), 20.0, 30.0, 50.0, 100.0, 300.0, 1000.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "collective_voting.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    rng = np.random.default_rng(a.seed)
    stakes = {f"m{i}": FLOOR + float(10.0 * np.exp(rng.normal(0, 1))) for i in range(a.members)}
    whale = max(stakes.values())
    rows = []
    rules = [("proportional", 1.0)] + [("softmax", t) for t in TEMPERATURES]
    print(f"electorate: {a.members} members, stake floor {FLOOR}, median {np.median(list(stakes.values())):.1f}, "
          f"largest {whale:.1f} credits\n")  # fmt: skip
    print("| rule | temperature (credits) | Nakamoto | largest weight | split gain k=2 | k=3 | k=5 | whale split in 10 |")
    print("|---|---|---|---|---|---|---|---|")
    for rule, tau in rules:
        w = weights(stakes, rule, tau)
        others = dict(stakes)
        gains = [sybil_gain(k * FLOOR, k, others, rule, tau) for k in (2, 3, 5)]
        wk = max(stakes, key=stakes.__getitem__)
        rest = {k: v for k, v in stakes.items() if k != wk}
        whale_gain = sybil_gain(whale, 10, rest, rule, tau)
        row = {"rule": rule, "temperature": tau if rule == "softmax" else None, "nakamoto": nakamoto(w),
               "largest_weight": max(w.values()), "split_gain": dict(zip(("2", "3", "5"), gains, strict=True)),
               "whale_split_gain": whale_gain}  # fmt: skip
        rows.append(row)
        t = f"{tau:.1f}" if rule == "softmax" else "-"
        print(f"| {rule} | {t} | {row['nakamoto']} | {row['largest_weight']:.4f} | "
              + " | ".join(f"{g:.3f}" for g in gains) + f" | {whale_gain:.3g} |", flush=True)  # fmt: skip
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python bench/collective_voting.py " + " ".join(sys.argv[1:]), "members": a.members,
           "floor": FLOOR, "largest_stake": whale, "median_stake": float(np.median(list(stakes.values()))),
           "rows": rows, "python": platform.python_version(), "load_average": os.getloadavg(),
           "seconds": time.perf_counter() - t0}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    soft = [r for r in rows if r["rule"] == "softmax"]
    prop = next(r for r in rows if r["rule"] == "proportional")
    fig, ax1 = plt.subplots(figsize=(7, 4.5))
    ts = [r["temperature"] for r in soft]
    ax1.plot(ts, [r["nakamoto"] for r in soft], "o-", label="Nakamoto coefficient (softmax)")
    ax1.axhline(prop["nakamoto"], color="tab:blue", ls="--", label="Nakamoto (proportional)")
    ax1.set_xscale("log")
    ax1.set_xlabel("softmax temperature (credits)")
    ax1.set_ylabel("members to reach half the weight")
    ax2 = ax1.twinx()
    ax2.plot(ts, [r["split_gain"]["5"] for r in soft], "s-", color="tab:red", label="gain from splitting in 5")
    ax2.axhline(1.0, color="tab:red", ls="--")
    ax2.set_ylabel("weight gain from splitting at the floor", color="tab:red")
    fig.legend(loc="upper left", bbox_to_anchor=(0.1, 0.9))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
