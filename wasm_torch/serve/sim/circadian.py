"""A seeded, deterministic simulation of one server day for the circadian controller.

Everything here is a model, not a measurement: a diurnal request-rate curve (trough 12 h before the
peak, lognormal noise per one-minute slot, Poisson counts), background jobs with nominal periods
and costs, and `cores` workers serving one FIFO queue (what a pool replica's queue is), where a
background run is split into non-preemptible chunks queued at once. Three schedules run on the same
traffic (common random numbers):

    always   every job at its nominal rate all day (the baseline)
    load     the CircadianController driven by the observed request counts (mode "load")
    clock    the controller reading the time of day (RuVector's fixed schedule, mode "clock")

Reported per schedule: background core-seconds per job and in total (compute saved vs always),
what the saving costs (learning samples processed, longest gap between cache warm-ups), phase
shares, and foreground latency percentiles from a queue simulation of the whole day.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from wasm_torch.serve.circadian import CircadianController, CircadianSettings, Gate
from wasm_torch.serve.clock import FakeClock

SCHEDULES = ("always", "load", "clock")


@dataclass(frozen=True)
class Job:
    name: str
    kind: str  # duty | learn | consolidate | always (see circadian.py)
    period_s: float
    cost_s: float = 0.0  # core-seconds per run
    per_request_s: float = 0.0  # plus this per request of the last period (learning on a sample)
    chunk_s: float = 0.005  # queue items a run is split into
    queued: bool = True  # competes for the cores through the queue (False: a host-side tick)


def default_jobs(service_s: float = 0.04, health_s: float = 1e-4) -> tuple[Job, ...]:
    return (
        Job("warmup", "duty", 60.0, cost_s=64 * service_s, chunk_s=service_s),  # re-run 64 hot inputs
        Job("learn", "learn", 300.0, per_request_s=0.1 * 2 * service_s, chunk_s=2 * service_s),  # 10 % sample
        Job("consolidate", "consolidate", 3600.0, cost_s=60.0, chunk_s=0.05),  # refit statistics, audit
        Job("health", "always", 0.5, cost_s=health_s, queued=False),  # healer tick + pool watchdog
    )


@dataclass(frozen=True)
class DayConfig:
    seed: int = 0
    day_s: float = 86400.0
    slot_s: float = 60.0  # the controller sees request counts per slot
    peak_rps: float = 20.0
    trough_fraction: float = 0.03
    peak_hour: float = 15.0
    noise_sigma: float = 0.2
    cores: int = 2
    service_s: float = 0.04  # foreground mean service time (lognormal)
    service_sigma: float = 0.5
    jobs: tuple[Job, ...] | None = None  # None: default_jobs(service_s)
    circadian: CircadianSettings | None = None  # None: defaults, capacity = cores / service_s

    def with_(self, **changes: Any) -> DayConfig:
        return replace(self, **changes)

    @property
    def job_list(self) -> tuple[Job, ...]:
        return self.jobs if self.jobs is not None else default_jobs(self.service_s)

    @property
    def controller(self) -> CircadianSettings:
        return self.circadian or CircadianSettings(capacity_rps=self.cores / self.service_s)


def request_counts(cfg: DayConfig) -> np.ndarray:
    """Requests per slot over the day: smooth diurnal curve x lognormal noise, Poisson counts."""
    rng = np.random.default_rng(cfg.seed)
    slots = int(cfg.day_s // cfg.slot_s)
    hours = (np.arange(slots) + 0.5) * cfg.slot_s / 3600.0 * (24 * 3600 / cfg.day_s)
    shape = (0.5 + 0.5 * np.cos(2 * np.pi * (hours - cfg.peak_hour) / 24.0)) ** 2
    rate = cfg.peak_rps * (cfg.trough_fraction + (1 - cfg.trough_fraction) * shape)
    rate *= rng.lognormal(-(cfg.noise_sigma**2) / 2, cfg.noise_sigma, slots)
    return rng.poisson(rate * cfg.slot_s)


@dataclass
class Plan:
    """Background runs per slot for one schedule: (slot, offset_s, job name, core-seconds)."""

    runs: list[tuple[int, float, str, float]]
    phases: list[str]  # phase during each slot ("always" for the baseline)
    transitions: int


def plan_background(cfg: DayConfig, counts: np.ndarray, schedule: str) -> Plan:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {list(SCHEDULES)}")
    clock = FakeClock()
    settings = (
        cfg.controller if schedule != "clock" else replace(cfg.controller, mode="clock", period_s=cfg.day_s)
    )
    ctl = CircadianController(settings, clock)
    gated = [j for j in cfg.job_list if j.kind != "always"]
    burst = max(1, math.ceil(cfg.slot_s / min((j.period_s for j in gated), default=cfg.slot_s)))
    gates = {j.name: Gate(ctl, j.period_s, j.kind, max_burst=burst) for j in gated}
    plain = {j.name: 0.0 for j in cfg.job_list}  # credit for the always-on baseline / ungated jobs
    runs, phases = [], []
    for i, n in enumerate(counts):
        t = i * cfg.slot_s
        if schedule != "always":
            clock.advance(t - clock())
            ctl.update()  # sees the requests of the slots before this one
        phases.append("always" if schedule == "always" else ctl.phase.value)
        for job in cfg.job_list:
            if schedule == "always" or job.kind == "always":
                plain[job.name] += cfg.slot_s
                k = int((plain[job.name] + 1e-9) // job.period_s)
                plain[job.name] -= k * job.period_s
            else:
                k = gates[job.name].due(t + cfg.slot_s)
            last = max(1, round(job.period_s / cfg.slot_s))  # the requests of the last period
            cost = job.cost_s + job.per_request_s * float(counts[max(0, i - last) : i].sum())
            for r in range(k):
                runs.append((i, cfg.slot_s * (r + 0.5) / k, job.name, cost))
        if schedule != "always":
            ctl.record(float(n))
    return Plan(runs, phases, len(ctl.transitions) - 1 if schedule != "always" else 0)


def queue_latencies(
    arrivals: np.ndarray, services: np.ndarray, runs: list[tuple[float, float, float]], cores: int
) -> np.ndarray:
    """Foreground latencies (s): `cores` servers take one FIFO queue in order; background runs
    (start_s, core-seconds, chunk_s), sorted by start, execute one after another as one lane that
    keeps at most one chunk queued or running (a background thread calling the pool)."""
    free = [0.0] * cores
    lat = np.empty(len(arrivals))
    fi, n, ri, left, chunk = 0, len(arrivals), 0, 0, 0.0
    bg_next = runs[0][0] if runs else math.inf
    while fi < n or bg_next < math.inf:
        if fi < n and arrivals[fi] <= bg_next:
            a = arrivals[fi]
            start = max(a, heapq.heappop(free))
            heapq.heappush(free, start + services[fi])
            lat[fi] = start + services[fi] - a
            fi += 1
            continue
        if left == 0:  # the lane starts its next run
            _, cost, size = runs[ri]
            ri += 1
            left = max(1, math.ceil(cost / size - 1e-9))
            chunk = cost / left
        finish = max(bg_next, heapq.heappop(free)) + chunk
        heapq.heappush(free, finish)
        left -= 1
        bg_next = finish if left else (max(finish, runs[ri][0]) if ri < len(runs) else math.inf)
    return lat


def foreground(cfg: DayConfig, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times (uniform within each slot) and lognormal service times, from the seed."""
    rng = np.random.default_rng([cfg.seed, 1])
    slot = np.repeat(np.arange(len(counts)), counts)
    arrivals = np.sort((slot + rng.uniform(0.0, 1.0, slot.size)) * cfg.slot_s)
    mu = math.log(cfg.service_s) - cfg.service_sigma**2 / 2
    return arrivals, rng.lognormal(mu, cfg.service_sigma, slot.size)


def simulate_day(cfg: DayConfig, schedules: tuple[str, ...] = SCHEDULES) -> dict[str, Any]:
    """Background compute per schedule (always-on is always planned: it is the baseline) and,
    for the `schedules` asked for, foreground latency from the queue model."""
    counts = request_counts(cfg)
    arrivals, services = foreground(cfg, counts)
    jobs = {j.name: j for j in cfg.job_list}
    out: dict[str, Any] = {
        "requests": int(counts.sum()),
        "peak_slot_rps": float(counts.max() / cfg.slot_s),
        "foreground_core_s": round(float(services.sum()), 1),
    }
    base: dict[str, float] = {}
    busy_slots = counts >= np.quantile(counts, 0.75)
    busy = busy_slots[np.minimum((arrivals // cfg.slot_s).astype(int), len(counts) - 1)]
    for schedule in ("always", *[x for x in schedules if x != "always"]):
        plan = plan_background(cfg, counts, schedule)
        per_job = {name: 0.0 for name in jobs}
        runs_n = {name: 0 for name in jobs}
        for _, _, name, cost in plan.runs:
            per_job[name] += cost
            runs_n[name] += 1
        total = sum(per_job.values())
        if schedule == "always":
            base = {**per_job, "total": total}
        queued = sorted(
            (i * cfg.slot_s + off, cost, jobs[name].chunk_s)
            for i, off, name, cost in plan.runs
            if jobs[name].queued and cost > 0
        )
        lat = queue_latencies(arrivals, services, queued, cfg.cores) if schedule in schedules else None
        warm = sorted(s for s, _, name, _ in plan.runs if name == "warmup")
        gaps = np.diff([0, *warm, len(counts)]) * cfg.slot_s if warm else [cfg.day_s]
        out[schedule] = {
            "background_core_s": round(total, 1),
            "per_job_core_s": {k: round(v, 2) for k, v in per_job.items()},
            "compute_saved": 1 - total / base["total"] if base.get("total") else 0.0,
            "saved_per_job": {k: (1 - per_job[k] / base[k]) if base.get(k) else 0.0 for k in per_job},
            "runs_per_job": runs_n,
            "max_warmup_gap_s": float(max(gaps)),
            "phase_share": {p: plan.phases.count(p) / len(plan.phases) for p in sorted(set(plan.phases))},
            "transitions": plan.transitions,
            "latency_ms": _percentiles(lat) if lat is not None else {},
            "busy_latency_ms": _percentiles(lat[busy]) if lat is not None else {},
        }
    return out


def _percentiles(lat: np.ndarray) -> dict[str, float]:
    if lat.size == 0:
        return {}
    p = np.percentile(lat * 1e3, [50, 99, 99.9])
    return {"p50": round(float(p[0]), 3), "p99": round(float(p[1]), 3), "p99.9": round(float(p[2]), 3)}
