"""Circadian controller: background compute saved over a simulated day, and what it costs.

    PYTHONPATH=. python bench/serve_circadian.py    # writes bench/results/circadian.json and
                                                    # bench/results/circadian_day.png

Measured here: what the server's real periodic background work costs per call (the healer's
`Orchestrator.tick()` and the pool watchdog's `ModelPool.check()`, on a compiled MLP with 2
replicas after some traffic), which sets the simulated "health" job's cost. Modelled (see
wasm_torch/serve/sim/circadian.py): traffic, foreground service times, the warm-up / learning /
consolidation jobs and the FIFO queue on 2 cores. Median over seeds 0..N-1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from wasm_torch.serve.sim.circadian import (
    DayConfig,
    default_jobs,
    plan_background,
    request_counts,
    simulate_day,
)

SWEEP = ((0.02, 0.10), (0.05, 0.20), (0.10, 0.40))  # (rest_below, active_above) as load fractions


def measure_server_background(repeat: int = 200) -> dict[str, float]:
    import torch

    import wasm_torch
    from wasm_torch.serve.healing import Orchestrator
    from wasm_torch.serve.pool import ModelPool
    from wasm_torch.serve.settings import ServeSettings

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlp"
        batch = torch.export.Dim("batch", min=1, max=64)
        wasm_torch.compile(m, (torch.randn(2, 64),), path, dynamic_shapes=({0: batch},))
        settings = ServeSettings(replicas=2, healing=False)
        pool = ModelPool("mlp", lambda: wasm_torch.load(path), settings)
        healer = Orchestrator([pool])
        x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
        try:
            tick, check = [], []
            for _ in range(repeat):
                for _ in range(5):  # a little traffic, so the healer has fresh samples to score
                    pool.infer({"input": x})
                t0 = time.perf_counter()
                healer.tick()
                tick.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                pool.check()
                check.append(time.perf_counter() - t0)
        finally:
            pool.close()
    tick_s, check_s = statistics.median(tick), statistics.median(check)
    watchdog_period = min(0.05, settings.hang_timeout_s / 4)
    per_day = 86400 * (tick_s / settings.healing_interval_s + check_s / watchdog_period)
    return {
        "healer_tick_us": round(tick_s * 1e6, 1),
        "watchdog_check_us": round(check_s * 1e6, 1),
        "healer_interval_s": settings.healing_interval_s,
        "watchdog_period_s": watchdog_period,
        "core_s_per_day": round(per_day, 2),
        "share_of_one_core": per_day / 86400,
    }


def median_of(runs: list[dict], schedule: str) -> dict:
    def med(get):
        return statistics.median(get(r[schedule]) for r in runs)

    first = runs[0][schedule]
    out = {
        "background_core_s": med(lambda r: r["background_core_s"]),
        "compute_saved": med(lambda r: r["compute_saved"]),
        "saved_per_job": {k: med(lambda r, k=k: r["saved_per_job"][k]) for k in first["saved_per_job"]},
        "per_job_core_s": {k: med(lambda r, k=k: r["per_job_core_s"][k]) for k in first["per_job_core_s"]},
        "max_warmup_gap_s": med(lambda r: r["max_warmup_gap_s"]),
        "transitions": med(lambda r: r["transitions"]),
        "phase_share": {k: med(lambda r, k=k: r["phase_share"].get(k, 0.0)) for k in first["phase_share"]},
    }
    for key in ("latency_ms", "busy_latency_ms"):
        if first[key]:
            out[key] = {p: med(lambda r, key=key, p=p: r[key][p]) for p in first[key]}
    return out


def plot_day(cfg: DayConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = request_counts(cfg)
    hours = np.arange(len(counts)) * cfg.slot_s / 3600
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    ax1.plot(hours, counts / cfg.slot_s, lw=0.8, color="black")
    ax1.set_ylabel("requests / s")
    colors = {"active": "#d62728", "dawn": "#ff7f0e", "dusk": "#9467bd", "rest": "#1f77b4"}
    for row, schedule in enumerate(("load", "clock")):
        phases = plan_background(cfg, counts, schedule).phases
        for i, ph in enumerate(phases):
            ax1.axvspan(
                hours[i],
                hours[i] + cfg.slot_s / 3600,
                ymin=0.93 - 0.07 * row,
                ymax=1.0 - 0.07 * row,
                color=colors[ph],
                lw=0,
            )
    ax1.set_title(
        "traffic; phase bars: load-driven (top), clock (below); red active, orange dawn, "
        "purple dusk, blue rest",
        fontsize=8,
    )
    for schedule, style in (("always", "-"), ("load", "-"), ("clock", "--")):
        per_slot = np.zeros(len(counts))
        for i, _, _, cost in plan_background(cfg, counts, schedule).runs:
            per_slot[i] += cost
        hourly = per_slot.reshape(24, -1).sum(axis=1) / 3600  # mean cores of background work per hour
        ax2.step(np.arange(24), hourly, where="post", ls=style, label=schedule)
    ax2.set_ylabel("background cores (hourly mean)")
    ax2.set_xlabel(f"hour of the simulated day (seed {cfg.seed})")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/circadian.json")
    ap.add_argument("--plot", default="bench/results/circadian_day.png")
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    measured = measure_server_background()
    health_s = measured["healer_tick_us"] * 1e-6 + measured["watchdog_check_us"] * 1e-6 * (
        measured["healer_interval_s"] / measured["watchdog_period_s"]
    )
    base = DayConfig(jobs=default_jobs(0.04, health_s))
    runs = [simulate_day(base.with_(seed=s)) for s in range(a.seeds)]
    result: dict = {
        "measured_server_background": measured,
        "config": {
            "peak_rps": base.peak_rps,
            "service_ms": base.service_s * 1e3,
            "cores": base.cores,
            "controller": {k: v for k, v in base.controller.__dict__.items() if k != "duty"},
            "jobs": [j.__dict__ for j in base.job_list],
        },
        "requests_per_day": statistics.median(r["requests"] for r in runs),
        "foreground_core_s": statistics.median(r["foreground_core_s"] for r in runs),
        "schedules": {s: median_of(runs, s) for s in ("always", "load", "clock")},
        "sweep": [],
    }
    for rest, active in SWEEP:
        ctl = replace(base.controller, rest_below=rest, active_above=active, hysteresis=min(0.02, rest / 2))
        cfg = base.with_(circadian=ctl)
        sweep_runs = [simulate_day(cfg.with_(seed=s), ("load",)) for s in range(a.seeds)]
        result["sweep"].append({"rest_below": rest, "active_above": active, **median_of(sweep_runs, "load")})
    # the traffic's day 12 h away from the server clock's (users in another time zone)
    shifted = [simulate_day(base.with_(seed=s, peak_hour=3.0)) for s in range(a.seeds)]
    result["shifted_peak_03h"] = {s: median_of(shifted, s) for s in ("always", "load", "clock")}
    Path(a.out).write_text(json.dumps(result, indent=1, default=str))
    plot_day(base, Path(a.plot))
    report(result)


def report(r: dict) -> None:
    m = r["measured_server_background"]
    print(
        f"server background (measured): healer tick {m['healer_tick_us']} µs every {m['healer_interval_s']} s, "
        f"watchdog {m['watchdog_check_us']} µs every {m['watchdog_period_s']} s -> "
        f"{m['core_s_per_day']} core-s/day ({m['share_of_one_core']:.3%} of a core)"
    )
    print(f"requests/day {r['requests_per_day']:,}, foreground {r['foreground_core_s']:,} core-s")
    for s, x in r["schedules"].items():
        jobs = ", ".join(f"{k} {v:.0%}" for k, v in x["saved_per_job"].items())
        print(
            f"{s:7s} background {x['background_core_s']:8.1f} core-s  saved {x['compute_saved']:6.1%} ({jobs})  "
            f"p50/p99 {x['latency_ms']['p50']:.1f}/{x['latency_ms']['p99']:.1f} ms  busy p99 "
            f"{x['busy_latency_ms']['p99']:.1f} ms  warm-up gap {x['max_warmup_gap_s']:.0f} s"
        )
    for s, x in r["shifted_peak_03h"].items():
        print(
            f"peak at 03:00, {s:7s}: saved {x['compute_saved']:6.1%}, busy p99 {x['busy_latency_ms']['p99']:.1f} ms"
        )
    for x in r["sweep"]:
        print(
            f"sweep rest<{x['rest_below']} active>{x['active_above']}: saved {x['compute_saved']:.1%}, "
            f"busy p99 {x['busy_latency_ms']['p99']:.1f} ms, phases {x['phase_share']}"
        )


if __name__ == "__main__":
    main()
