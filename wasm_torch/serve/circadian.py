"""Circadian controller: phases active / dawn / dusk / rest whose duty factors gate background
work (cache warm-up, learning, consolidation), so a server spends little on it while traffic sleeps.

Phases come from *observed load* (default): an EWMA of the request rate over `window_s`, as a
fraction of `capacity_rps`, with hysteresis. From rest, load above `rest_below + hysteresis` is dawn;
load above `active_above` is active; from active, load below `active_above - hysteresis` is dusk and
below `rest_below` is rest. Waking (towards active) is immediate; falling asleep waits `min_dwell_s`
in the current phase, so a short lull does not stop background work. `mode="clock"` instead reads
the phase off the time of day with RuVector's fixed schedule (dawn [0.25, 0.33) of the period,
active to 0.75, dusk to 0.92, rest otherwise) — kept for comparison: it is wrong whenever the
traffic's day is not the server's clock's day.

Duty factors are RuVector's (`circadian.rs`): active 1.0, dawn 0.5, dusk 0.3, rest 0.05. Job kinds:

    duty          runs at duty x its nominal rate in every phase (e.g. cache warm-up)
    learn         like duty, but only in active or dawn (RuVector's should_learn)
    consolidate   at its nominal rate, but only in dusk or rest (should_consolidate)
    always        never gated (health checks, watchdogs: safety work is not for saving)

`Gate` turns a nominal period into "is it due now?": credit accrues at rate x elapsed time and a
run spends one period of credit (at most `max_burst` runs per call, and leftover credit is capped
at one period, so a caller that stopped asking gets no burst of catch-up runs).

Not hooked into the server: the server's only periodic background work is the healer tick and the
pool watchdog — safety work, and cheap (see docs/serving.md) — so this is a library plus the
day simulation in `sim/circadian.py`.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from wasm_torch.serve.clock import Clock, monotonic


class Phase(enum.Enum):
    ACTIVE = "active"
    DAWN = "dawn"
    DUSK = "dusk"
    REST = "rest"


DUTY: Mapping[Phase, float] = {Phase.ACTIVE: 1.0, Phase.DAWN: 0.5, Phase.DUSK: 0.3, Phase.REST: 0.05}
KINDS = ("duty", "learn", "consolidate", "always")
_RANK = {Phase.REST: 0, Phase.DAWN: 1, Phase.DUSK: 1, Phase.ACTIVE: 2}
# RuVector's schedule over one period (fractions of the period)
CLOCK_SCHEDULE = ((0.25, Phase.REST), (0.33, Phase.DAWN), (0.75, Phase.ACTIVE), (0.92, Phase.DUSK))


def clock_phase(t_s: float, period_s: float = 86400.0) -> Phase:
    frac = (t_s % period_s) / period_s
    for end, phase in CLOCK_SCHEDULE:
        if frac < end:
            return phase
    return Phase.REST


@dataclass(frozen=True)
class CircadianSettings:
    capacity_rps: float = 100.0  # request rate counted as load 1.0
    rest_below: float = 0.05  # load (fraction of capacity) under which we rest
    active_above: float = 0.20  # load over which we are active
    hysteresis: float = 0.02  # absolute load margin to leave rest / active again
    min_dwell_s: float = 600.0  # time in a phase before moving towards rest
    window_s: float = 300.0  # EWMA time constant of the observed request rate
    mode: str = "load"  # "load" (observed load) or "clock" (time of day)
    period_s: float = 86400.0  # the day, for mode="clock"
    duty: Mapping[Phase, float] = field(default_factory=lambda: dict(DUTY))

    def __post_init__(self) -> None:
        if self.mode not in ("load", "clock"):
            raise ValueError(f"mode must be 'load' or 'clock', got {self.mode!r}")
        if self.capacity_rps <= 0 or self.window_s <= 0 or self.period_s <= 0 or self.min_dwell_s < 0:
            raise ValueError("capacity_rps, window_s and period_s must be > 0 and min_dwell_s >= 0")
        if (
            not 0
            <= self.rest_below
            < self.rest_below + self.hysteresis
            <= self.active_above - self.hysteresis
        ):
            raise ValueError(
                "need 0 <= rest_below and rest_below + hysteresis <= active_above - hysteresis "
                f"(got rest_below={self.rest_below}, active_above={self.active_above}, "
                f"hysteresis={self.hysteresis})"
            )
        if set(self.duty) != set(Phase) or not all(0.0 <= v <= 1.0 for v in self.duty.values()):
            raise ValueError("duty must give a factor in [0, 1] for each of active, dawn, dusk, rest")


class CircadianController:
    """Thread-safe: `record()` from request handlers, `update()` from one ticking thread."""

    def __init__(
        self, settings: CircadianSettings | None = None, clock: Clock = monotonic, start: Phase = Phase.ACTIVE
    ) -> None:
        self.settings = s = settings or CircadianSettings()
        self.clock = clock
        now = clock()
        self.phase = clock_phase(now, s.period_s) if s.mode == "clock" else start
        self.since = now  # when the current phase began
        self.rate: float | None = None  # EWMA requests/s
        self.transitions: list[tuple[float, Phase]] = [(now, self.phase)]
        self._count, self._last = 0.0, now
        self._lock = threading.Lock()

    # --- observing ---------------------------------------------------------------------------------
    def record(self, n: float = 1.0) -> None:
        with self._lock:
            self._count += n

    @property
    def load(self) -> float:
        return 0.0 if self.rate is None else self.rate / self.settings.capacity_rps

    def update(self, now: float | None = None) -> Phase:
        """Fold the requests recorded since the last update into the rate; move phase if due."""
        s = self.settings
        now = self.clock() if now is None else now
        with self._lock:
            dt = now - self._last
            if dt > 0:
                inst = self._count / dt
                a = 1.0 - math.exp(-dt / s.window_s)
                self.rate = inst if self.rate is None else self.rate + a * (inst - self.rate)
                self._count, self._last = 0.0, now
            target = clock_phase(now, s.period_s) if s.mode == "clock" else self._next(now)
            if target is not self.phase:
                self.phase, self.since = target, now
                self.transitions.append((now, target))
            return self.phase

    def _next(self, now: float) -> Phase:
        s, p, x = self.settings, self.phase, self.load
        if x > s.active_above:
            target = Phase.ACTIVE
        elif x < s.rest_below:
            target = Phase.REST
        elif p is Phase.REST:
            target = Phase.DAWN if x > s.rest_below + s.hysteresis else Phase.REST
        elif p is Phase.ACTIVE:
            target = Phase.DUSK if x < s.active_above - s.hysteresis else Phase.ACTIVE
        else:
            target = p  # dawn and dusk hold until load leaves the middle band
        if _RANK[target] < _RANK[p] and now - self.since < s.min_dwell_s:
            return p  # fall asleep only after the dwell time; wake up at once
        return target

    # --- gating ------------------------------------------------------------------------------------
    @property
    def duty_factor(self) -> float:
        return float(self.settings.duty[self.phase])

    @property
    def should_compute(self) -> bool:
        return self.phase in (Phase.ACTIVE, Phase.DAWN)

    @property
    def should_learn(self) -> bool:
        return self.should_compute

    @property
    def should_consolidate(self) -> bool:
        return self.phase in (Phase.DUSK, Phase.REST)

    def rate_for(self, kind: str) -> float:
        """The fraction of a job kind's nominal rate allowed in the current phase."""
        if kind == "duty":
            return self.duty_factor
        if kind == "learn":
            return self.duty_factor if self.should_learn else 0.0
        if kind == "consolidate":
            return 1.0 if self.should_consolidate else 0.0
        if kind == "always":
            return 1.0
        raise ValueError(f"unknown job kind {kind!r}; use one of {list(KINDS)}")


class Gate:
    """Whether a periodic background job of `kind` is due, under a controller's duty factors."""

    def __init__(
        self,
        controller: CircadianController,
        period_s: float,
        kind: str = "duty",
        now: float | None = None,
        max_burst: int = 1,
    ) -> None:
        if period_s <= 0 or max_burst < 1:
            raise ValueError("period_s must be > 0 and max_burst >= 1")
        controller.rate_for(kind)  # validates the kind
        self.controller, self.period_s, self.kind, self.max_burst = controller, period_s, kind, max_burst
        self._last = controller.clock() if now is None else now
        self.credit = 0.0
        self.runs = 0

    def due(self, now: float | None = None) -> int:
        """How many runs are due now (0 = none; truthy when due), at most `max_burst`: credit
        beyond that is dropped, so a caller that stopped asking does not get a burst of catch-up
        runs."""
        now = self.controller.clock() if now is None else now
        self.credit += max(0.0, now - self._last) * self.controller.rate_for(self.kind)
        self._last = now
        n = min(self.max_burst, int((self.credit + 1e-9) // self.period_s))
        self.credit = min(self.credit - n * self.period_s, self.period_s)
        self.runs += n
        return n
