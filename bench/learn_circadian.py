"""Background learning moved off busy hours by the circadian gate (serve/learning.py), measured.

    PYTHONPATH=. python bench/learn_circadian.py    # bench/results/learn_circadian.{json,png}

One simulated server day (the traffic model of wasm_torch/serve/sim/circadian.py: diurnal curve,
peak 20 req/s at 15:00, trough 3 %), time on a fake clock, one tick per minute. New tuning outcomes
arrive all day at a steady rate (post_query into the pattern memory). Two schedules on the same
traffic and the same outcomes:

    always        a consolidation chunk every period, whatever the load (no gate)
    circadian     the server's setting: chunks only in the dusk and rest phases

The chunks are real: BackgroundLearner.step() on a real memory and cost model; their CPU time
(thread time) is measured and attributed to the hour and the controller's phase it ran in.
Reported: learning CPU in busy (active-phase) minutes vs quiet ones, rounds completed, and how
long outcomes wait before they are consolidated (the price of waiting for the night).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from wasm_torch.learn.background import BackgroundLearner
from wasm_torch.learn.features import DIM, GROUPS, Pattern
from wasm_torch.learn.memory import PatternMemory
from wasm_torch.learn.synthetic import demo_space
from wasm_torch.serve.clock import FakeClock
from wasm_torch.serve.learning import LearningLoop
from wasm_torch.serve.sim.circadian import DayConfig, request_counts


def run(schedule: str, counts: np.ndarray, cfg: DayConfig, a: argparse.Namespace) -> dict:
    rng = np.random.default_rng(a.seed)
    sp = demo_space()
    centres = rng.random((20, DIM))
    with tempfile.TemporaryDirectory() as tmp:
        mem = PatternMemory(tmp)

        def outcome(i: int) -> None:
            f = i % 20
            p = Pattern((centres[f] + 0.02 * rng.standard_normal(DIM)).astype(np.float32),
                        rng.dirichlet(np.ones(len(GROUPS))).astype(np.float32), f"m{i}", {"gflops": 0.01})
            c = sp.sample(rng)
            mem.post_query(p, c, 1e-3 * (1 + 0.1 * c["k0"] + 0.05 * f / 20), 1e-3, sp.id)

        for i in range(a.seed_outcomes):
            outcome(i)
        learner = BackgroundLearner(mem, [sp], fit_epochs=a.fit_epochs, fit_chunks=4)
        clock, served = FakeClock(0.0), {"n": 0.0}
        loop = LearningLoop(learner, lambda: served["n"], cfg.controller, clock, period_s=a.period_s,
                            kind="always" if schedule == "always" else "consolidate")
        per_hour_cpu = np.zeros(24)
        busy_cpu = quiet_cpu = 0.0
        busy_minutes = 0
        phases, arrivals, consolidated_at = [], [], []
        n_out = a.seed_outcomes
        pending: list[float] = []
        for slot, c in enumerate(counts):
            clock.advance(cfg.slot_s)
            served["n"] += float(c)
            if slot % a.outcome_every == 0:
                outcome(n_out)
                n_out += 1
                pending.append(clock())
            before = len(learner.history)
            cpu0 = sum(u.cpu_s for u in loop.stats.by_phase.values())
            loop.tick()
            cpu = sum(u.cpu_s for u in loop.stats.by_phase.values()) - cpu0
            phase = loop.controller.phase.value
            phases.append(phase)
            per_hour_cpu[int(slot * cfg.slot_s // 3600) % 24] += cpu
            if phase == "active":
                busy_cpu += cpu
                busy_minutes += 1
            else:
                quiet_cpu += cpu
            if any(r.did == "fold" for r in learner.history[before:]):
                consolidated_at += [clock() - t for t in pending]
                pending = []
            arrivals.append(float(c))
        rounds = sum(1 for r in learner.history if r.did == "ewc")
    total = busy_cpu + quiet_cpu
    waits = np.asarray(consolidated_at) / 3600.0 if consolidated_at else np.asarray([np.nan])
    return {
        "schedule": schedule,
        "learning_cpu_s": round(total, 3),
        "busy_cpu_s": round(busy_cpu, 3),
        "busy_share_of_learning_cpu": round(busy_cpu / total, 4) if total else 0.0,
        "busy_minutes": busy_minutes,
        "busy_share_of_day": round(busy_minutes / len(counts), 4),
        "rounds_completed": rounds,
        "outcomes_recorded": n_out,
        "outcomes_not_consolidated_at_day_end": len(pending),
        "wait_until_consolidated_h": {"median": round(float(np.nanmedian(waits)), 2),
                                      "max": round(float(np.nanmax(waits)), 2)},
        "per_hour_cpu_s": [round(float(x), 4) for x in per_hour_cpu],
        "phases": {p: phases.count(p) for p in ("active", "dawn", "dusk", "rest")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--period-s", type=float, default=300.0, help="nominal period of one learning chunk")
    ap.add_argument("--outcome-every", type=int, default=10, help="a new tuning outcome every N minutes")
    ap.add_argument("--seed-outcomes", type=int, default=200)
    ap.add_argument("--fit-epochs", type=int, default=100)
    ap.add_argument("--out", default="bench/results/learn_circadian.json")
    a = ap.parse_args()
    cfg = DayConfig(seed=a.seed)
    counts = request_counts(cfg)
    run("always", counts[:120], cfg, a)  # warm-up (imports scikit-learn, first-call costs): not counted
    rows = {s: run(s, counts, cfg, a) for s in ("always", "circadian")}
    moved = 1.0 - rows["circadian"]["busy_cpu_s"] / rows["always"]["busy_cpu_s"] if rows["always"]["busy_cpu_s"] else 0.0
    res = {
        "command": "PYTHONPATH=. python bench/learn_circadian.py " + " ".join(sys.argv[1:]),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "traffic": {"peak_rps": cfg.peak_rps, "trough_fraction": cfg.trough_fraction, "peak_hour": cfg.peak_hour,
                    "requests": int(counts.sum()), "per_hour": [int(x) for x in counts.reshape(24, -1).sum(1)]},
        "busy_hour_learning_cpu_removed": round(moved, 4),
        "schedules": rows,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    _plot(res, out.with_suffix(".png"))
    print(json.dumps({k: {kk: v[kk] for kk in ("learning_cpu_s", "busy_cpu_s", "busy_share_of_learning_cpu",
                                               "rounds_completed", "wait_until_consolidated_h")}
                      for k, v in rows.items()} | {"busy_hour_learning_cpu_removed": res["busy_hour_learning_cpu_removed"]},
                     indent=1))
    return 0


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    hours = np.arange(24)
    ax.bar(hours - 0.2, res["schedules"]["always"]["per_hour_cpu_s"], 0.4, label="learning CPU, always", color="#c0504d")
    ax.bar(hours + 0.2, res["schedules"]["circadian"]["per_hour_cpu_s"], 0.4, label="learning CPU, circadian gate",
           color="#4f81bd")
    ax.set(xlabel="hour of day", ylabel="CPU s per hour")
    ax2 = ax.twinx()
    ax2.plot(hours, res["traffic"]["per_hour"], color="k", lw=1.2, label="requests per hour")
    ax2.set_ylabel("requests per hour")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
