"""Kuramoto, two measurements (wasm_torch/collective/kuramoto.py; seeded, no wall clock in the results):

1. Synchronisation against theory: the order parameter r of N = 2,000 mean-field Kuramoto oscillators
   with Lorentzian frequencies (half-width γ = 0.5, so K_c = 2γ = 1) for K from 0.25 K_c to 4 K_c, against
   Kuramoto's exact r = sqrt(1 − K_c/K).
2. Spreading heartbeats: 1,000 (and 10,000) simulated nodes heartbeating every 10 s to one coordinator,
   drifting clocks (±0.1 %), lognormal network delay (median 20 ms); the coordinator's requests counted
   in 100 ms bins; peak-to-mean over the last 10 periods of 60. Strategies: `fixed` (no correction),
   `jitter` (each interval × (1 ± U(0, 10 %)), the usual fix), `kuramoto` (the coordinator's PhaseBoard:
   repulsive coupling in every harmonic, K = 1), `kuramoto-h1` (repulsion in the first harmonic only);
   starting in step (a restart storm) or at random phases.

    python bench/collective_kuramoto.py [--quick]  -> bench/results/collective_kuramoto.{json,png}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from wasm_torch.collective.kuramoto import (
    HeartbeatSim,
    critical_coupling_lorentzian,
    heartbeat_sim,
    lorentzian_frequencies,
    lorentzian_order,
    simulate,
)

GAMMA = 0.5
FACTORS = (0.25, 0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer oscillators and periods (a smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "collective_kuramoto.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    n_osc = 500 if a.quick else 2000
    kc = critical_coupling_lorentzian(GAMMA)
    om = lorentzian_frequencies(n_osc, GAMMA)
    theory = []
    print(f"| K / K_c | r simulated (N={n_osc}) | r theory |\n|---|---|---|")
    for f in FACTORS:
        r = simulate(om, f * kc, t_end=100 if a.quick else 200, dt=0.05, seed=0)["r_mean"]
        th = lorentzian_order(f * kc, GAMMA)
        theory.append({"k_over_kc": f, "coupling": f * kc, "r_sim": r, "r_theory": th})
        print(f"| {f} | {r:.4f} | {th:.4f} |", flush=True)
    beats = []
    sizes = (1000,) if a.quick else (1000, 10_000)
    print("\n| nodes | start | strategy | peak-to-mean (last 10 periods) | r1 | periods to < 1.5× final |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        for start in ("herd", "random"):
            for strategy in ("fixed", "jitter", "kuramoto", "kuramoto-h1"):
                if n > 1000 and strategy == "kuramoto-h1":
                    continue  # O(N) per heartbeat: too slow at 10,000, and the 1,000 run shows the point
                cfg = HeartbeatSim(nodes=n, strategy=strategy, start=start, periods=30 if a.quick else 60, seed=0)
                r = heartbeat_sim(cfg)
                final = r["peak_to_mean"]
                settle = next((i for i, x in enumerate(r["per_period"]) if x < 1.5 * final), None)
                beats.append({"nodes": n, "start": start, "strategy": strategy, **r, "settle_periods": settle})
                print(f"| {n} | {start} | {strategy} | {final:.2f} | {r['order_r1']:.4f} | {settle} |", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python bench/collective_kuramoto.py " + " ".join(sys.argv[1:]), "gamma": GAMMA,
           "oscillators": n_osc, "theory": theory, "heartbeats": beats, "python": platform.python_version(),
           "load_average": os.getloadavg(), "seconds": time.perf_counter() - t0}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    plot(doc, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    th = doc["theory"]
    ks = np.linspace(0.2, 4.2, 200)
    ax1.plot(ks, [lorentzian_order(k * 2 * GAMMA, GAMMA) for k in ks], label="theory sqrt(1 - Kc/K)")
    ax1.plot([t["k_over_kc"] for t in th], [t["r_sim"] for t in th], "o", label=f"simulated, N={doc['oscillators']}")
    ax1.axvline(1.0, color="grey", lw=0.5)
    ax1.set_xlabel("K / K_c (Lorentzian, K_c = 2γ)")
    ax1.set_ylabel("order parameter r")
    ax1.legend()
    for b in doc["heartbeats"]:
        if b["nodes"] == 1000 and b["start"] == "herd":
            ax2.plot(b["per_period"], label=b["strategy"])
    ax2.set_yscale("log")
    ax2.set_xlabel("heartbeat period (10 s) since a restart storm")
    ax2.set_ylabel("coordinator peak-to-mean request rate (100 ms bins)")
    ax2.set_title("1,000 nodes")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
