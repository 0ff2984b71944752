"""Kuramoto oscillators: the synchronisation theory, and the repulsive coupling that spreads heartbeats.

Two uses of one model, dθ_i/dt = ω_i + (K/N) Σ_j Γ(θ_j − θ_i):

1. **Synchronisation (the textbook model, Γ = sin).** With natural frequencies ω drawn from a
   Lorentzian of half-width γ, g(ω) = γ / (π (ω² + γ²)), Kuramoto's self-consistency gives the exact
   large-N order parameter r = |(1/N) Σ_j exp(iθ_j)|:

       K_c = 2 / (π g(0)) = 2γ,        r(K) = sqrt(1 − K_c / K) for K > K_c, 0 below.

   For a Gaussian of standard deviation σ, g(0) = 1 / (σ √(2π)) and K_c = σ √(8/π) ≈ 1.596 σ (no
   closed form for r above K_c). `simulate` integrates the mean-field equations (RK4); tests and
   bench/collective_kuramoto.py hold the simulated r(K) against the Lorentzian formula.

2. **Spreading (what the network uses).** The coordinator does not want its nodes' heartbeats in
   step — synchronised heartbeats arrive together and make request spikes. It wants the *splay
   state*: phases evenly spaced around the circle. So the coupling is **repulsive** (K < 0 in
   Kuramoto's sign convention) and acts in **every harmonic**, weighted 1/m:

       Γ(Δ) = −Σ_{m≥1} sin(mΔ) / m = −(π − Δ) / 2,   Δ = (θ_j − θ_i) mod 2π  (a sawtooth)

   A node a little ahead of i pushes i back, one a little behind pushes it forward, and the force
   vanishes exactly when the phases are evenly spaced. Repelling in the first harmonic only (Γ = −sin)
   drives r₁ to 0 but leaves states such as two antipodal clusters (r₁ = 0, yet half the nodes
   arrive at once) stable; the sawtooth suppresses every Fourier mode of the phase density. Its sum
   over all nodes has a closed form, so the force on node i costs one rank query:

       (1/N') Σ_j Δ_ij = (Σ_j θ_j − N' θ_i + 2π · #{j : θ_j < θ_i}) / N'
       force_i = −(π − mean Δ_ij) / 2

   `PhaseBoard` keeps the last phase of every node the coordinator heard from (its arrival time
   modulo the period), and answers each heartbeat with the shift that node should apply to its next
   one: Δθ_i = K · force_i (0 < K ≤ 1), i.e. K · force_i · T / 2π seconds. Each node thus couples to
   the whole population through the coordinator's mean field, at O(log N) per heartbeat.

`heartbeat_sim` runs the same PhaseBoard against simulated nodes (drifting clocks, network delay) to
measure the coordinator's peak-to-mean request rate against plain random jitter.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from .errors import CollectiveError

TWO_PI = 2.0 * math.pi


# ---- theory ---------------------------------------------------------------------------------------
def critical_coupling_lorentzian(gamma: float) -> float:
    """K_c = 2 / (π g(0)) with g(0) = 1 / (π γ): K_c = 2γ."""
    return 2.0 * gamma


def critical_coupling_gaussian(sigma: float) -> float:
    """K_c = 2 / (π g(0)) with g(0) = 1 / (σ √(2π)): K_c = σ √(8/π)."""
    return 2.0 / (math.pi / (sigma * math.sqrt(TWO_PI)))


def lorentzian_order(coupling: float, gamma: float) -> float:
    """Kuramoto's exact large-N order parameter for Lorentzian frequencies: sqrt(1 − 2γ/K) above K_c."""
    kc = critical_coupling_lorentzian(gamma)
    return math.sqrt(1.0 - kc / coupling) if coupling > kc else 0.0


def lorentzian_frequencies(n: int, gamma: float, centre: float = 0.0) -> np.ndarray:
    """n frequencies at the Lorentzian's quantiles (deterministic: less finite-N scatter than random
    draws): ω_j = centre + γ tan(π (j + 1/2) / n − π/2)."""
    if n < 1 or gamma <= 0:
        raise CollectiveError(f"need n >= 1 and gamma > 0, got n={n}, gamma={gamma}")
    q = (np.arange(n) + 0.5) / n
    return centre + gamma * np.tan(math.pi * q - math.pi / 2)


def order_parameter(theta: np.ndarray, harmonic: int = 1) -> float:
    """r_m = |(1/N) Σ exp(i m θ_j)|: 1 when all phases agree, ~1/√N for random phases, 0 in splay."""
    return float(np.abs(np.mean(np.exp(1j * harmonic * np.asarray(theta)))))


def simulate(
    omega: np.ndarray, coupling: float, t_end: float = 200.0, dt: float = 0.05, seed: int = 0,
    average_from: float = 0.5,
) -> dict[str, float]:  # fmt: skip
    """Integrate dθ_i/dt = ω_i + K r sin(ψ − θ_i) (mean field, RK4) from random phases; returns the
    order parameter averaged over the last (1 − average_from) of the run, and its final value."""
    if dt <= 0 or t_end <= 0 or not 0 <= average_from < 1:
        raise CollectiveError("need dt > 0, t_end > 0 and 0 <= average_from < 1")
    rng = np.random.default_rng(seed)
    omega = np.asarray(omega, dtype=np.float64)
    theta = rng.uniform(0, TWO_PI, omega.shape[0])

    def rate(th: np.ndarray) -> np.ndarray:
        z = np.mean(np.exp(1j * th))
        return omega + coupling * np.imag(z * np.exp(-1j * th))

    steps = round(t_end / dt)
    start = int(steps * average_from)
    acc, k = 0.0, 0
    for s in range(steps):
        k1 = rate(theta)
        k2 = rate(theta + 0.5 * dt * k1)
        k3 = rate(theta + 0.5 * dt * k2)
        k4 = rate(theta + dt * k3)
        theta = np.mod(theta + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), TWO_PI)
        if s >= start:
            acc += order_parameter(theta)
            k += 1
    return {"r_mean": acc / max(1, k), "r_final": order_parameter(theta)}


# ---- spreading: the coordinator's phase board --------------------------------------------------------
def spread_force(others_sorted: list[float], others_sum: float, theta: float) -> float:
    """The sawtooth (all-harmonic repulsive) force on phase θ from the other phases: −(π − mean Δ)/2,
    in (−π/2, π/2]. Zero when the others are evenly spaced around θ; 0 with no others."""
    n = len(others_sorted)
    if n == 0:
        return 0.0
    rank = bisect.bisect_left(others_sorted, theta)
    mean_delta = (others_sum - n * theta + TWO_PI * rank) / n
    return -(math.pi - mean_delta) / 2.0


def harmonic_force(others: np.ndarray, theta: float, harmonics: int) -> float:
    """The same repulsion truncated to the first `harmonics` Fourier modes: −Σ_m Im(Z_m e^{−imθ})/m."""
    if others.size == 0:
        return 0.0
    m = np.arange(1, harmonics + 1)
    z = np.mean(np.exp(1j * np.outer(m, others)), axis=1)
    return float(-np.sum(np.imag(z * np.exp(-1j * m * theta)) / m))


@dataclass(frozen=True)
class PhaseAdvice:
    phase: float  # the node's phase as the coordinator saw it, radians in [0, 2π)
    shift_s: float  # add this to the node's next heartbeat time (negative: earlier)
    order: float  # r₁ over every live node, this one included (0 = spread, 1 = all together)
    nodes: int  # live nodes on the board


class PhaseBoard:
    """The last heartbeat phase of every node heard from within `horizon` periods, and the repulsive
    Kuramoto shift each should apply next. `harmonics=None` uses the exact sawtooth (every harmonic);
    an integer M truncates the coupling to the first M harmonics (kept for the comparison in the
    benchmark). Not thread-safe: the coordinator calls it under its writer lock."""

    def __init__(self, period_s: float, coupling: float = 0.5, horizon_periods: float = 2.0,
                 harmonics: int | None = None, expect: bool = True) -> None:  # fmt: skip
        if not period_s > 0:
            raise CollectiveError(f"period_s must be > 0, got {period_s}")
        if not 0 <= coupling <= 2:
            raise CollectiveError(f"coupling must be in [0, 2] (0 = off, 2 = straight to the slot), got {coupling}")
        if harmonics is not None and harmonics < 1:
            raise CollectiveError("harmonics must be >= 1, or None for the exact sawtooth")
        self.period_s, self.coupling, self.harmonics = float(period_s), float(coupling), harmonics
        self.expect = expect
        self.horizon_s = horizon_periods * self.period_s
        self._last: dict[Hashable, tuple[float, float]] = {}  # node -> (phase, time seen)
        self._sorted: list[float] = []
        self._sum = 0.0
        self._z1 = 0j  # Σ exp(iθ_j): r₁ without an O(N) pass per heartbeat
        self._seen: deque[tuple[float, Hashable]] = deque()
        self._updates = 0

    def __len__(self) -> int:
        return len(self._last)

    def phase_of(self, t_s: float) -> float:
        return (t_s % self.period_s) / self.period_s * TWO_PI

    def _remove(self, node: Hashable) -> None:
        old = self._last.pop(node, None)
        if old is not None:
            i = bisect.bisect_left(self._sorted, old[0])
            del self._sorted[i]
            self._sum -= old[0]
            self._z1 -= complex(math.cos(old[0]), math.sin(old[0]))

    def _expire(self, now: float) -> None:
        cutoff = now - self.horizon_s
        while self._seen and self._seen[0][0] < cutoff:
            t, node = self._seen.popleft()
            cur = self._last.get(node)
            if cur is not None and cur[1] == t:
                self._remove(node)

    def observe(self, node: Hashable, t_s: float) -> PhaseAdvice:
        """Record a heartbeat from `node` arriving at time t_s (seconds, the coordinator's clock)."""
        self._expire(t_s)
        known = node in self._last
        self._remove(node)
        theta = self.phase_of(t_s)
        if not known:  # a node's first heartbeat (or the board's first period) only takes its place:
            force = 0.0  # shifting on a half-filled board would aim at slots that are already taken
        elif self.harmonics is None:
            force = spread_force(self._sorted, self._sum, theta)
        else:
            force = harmonic_force(np.asarray(self._sorted), theta, self.harmonics)
        step = self.coupling * force
        shift = step / TWO_PI * self.period_s
        if self.expect:  # record where the node will be (it applies the shift), not where it was
            theta = (theta + step) % TWO_PI
        bisect.insort(self._sorted, theta)
        self._sum += theta
        self._z1 += complex(math.cos(theta), math.sin(theta))
        self._last[node] = (theta, t_s)
        self._seen.append((t_s, node))
        self._updates += 1
        if self._updates % 4096 == 0:  # rounding drift guard: recompute the running sums now and then
            self._sum = math.fsum(self._sorted)
            self._z1 = complex(np.sum(np.exp(1j * np.asarray(self._sorted))))
        return PhaseAdvice(theta, shift, self.order(), len(self._last))

    def order(self) -> float:
        return abs(self._z1) / len(self._sorted) if self._sorted else 0.0


# ---- simulation at scale ------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeartbeatSim:
    nodes: int = 1000
    period_s: float = 10.0
    periods: int = 60  # simulated time = periods × period_s
    strategy: str = "kuramoto"  # kuramoto | jitter | fixed | kuramoto-h1
    start: str = "herd"  # herd: every node starts within `herd_s` (a restart storm); random: uniform phases
    herd_s: float = 0.5
    coupling: float = 0.5
    jitter: float = 0.1  # jitter strategy: each interval is period × (1 ± U(0, jitter))
    drift: float = 1e-3  # clock rate error, uniform in ±drift
    delay_ms: float = 20.0  # median one-way delay (lognormal, sigma 0.5)
    bin_s: float = 0.1  # request-rate bins
    measure_periods: int = 10  # peak-to-mean over the last this many periods
    expect: bool = True  # the board records each node's phase after its shift (PhaseBoard.expect)
    seed: int = 0


STRATEGIES = ("kuramoto", "kuramoto-h1", "jitter", "fixed")


def heartbeat_sim(cfg: HeartbeatSim) -> dict[str, object]:
    """Event-driven: every node sends a heartbeat, it arrives after a random delay, the coordinator's
    PhaseBoard answers (kuramoto strategies) and the node schedules its next one. Returns the
    peak-to-mean arrival rate over the last `measure_periods` periods and per period, and r₁."""
    if cfg.strategy not in STRATEGIES:
        raise CollectiveError(f"strategy must be one of {STRATEGIES}, got {cfg.strategy!r}")
    if cfg.start not in ("herd", "random"):
        raise CollectiveError("start must be 'herd' or 'random'")
    rng = np.random.default_rng(cfg.seed)
    n, T = cfg.nodes, cfg.period_s
    rate = 1.0 + rng.uniform(-cfg.drift, cfg.drift, n)  # node clock periods are T * rate
    first = rng.uniform(0, cfg.herd_s, n) if cfg.start == "herd" else rng.uniform(0, T, n)
    harmonics = 1 if cfg.strategy == "kuramoto-h1" else None
    board = PhaseBoard(T, cfg.coupling, harmonics=harmonics, expect=cfg.expect) if cfg.strategy.startswith("kuramoto") else None
    mu = math.log(cfg.delay_ms / 1000.0)
    end = cfg.periods * T
    heap = [(float(first[i]), i) for i in range(n)]
    heapq.heapify(heap)
    arrivals: list[float] = []
    while heap:
        t_send, i = heapq.heappop(heap)
        if t_send > end:
            continue
        t_arr = t_send + float(rng.lognormal(mu, 0.5))
        arrivals.append(t_arr)
        nxt = t_send + T * rate[i]
        if board is not None:
            nxt += board.observe(i, t_arr).shift_s
        elif cfg.strategy == "jitter":
            nxt += T * float(rng.uniform(-cfg.jitter, cfg.jitter))
        heapq.heappush(heap, (nxt, i))
    arr = np.sort(np.asarray(arrivals))
    per_period = []
    for p in range(cfg.periods):
        per_period.append(_peak_to_mean(arr, p * T, (p + 1) * T, cfg.bin_s))
    lo = (cfg.periods - cfg.measure_periods) * T
    final_phases = np.mod(arr[arr >= end - T], T) / T * TWO_PI
    return {
        "peak_to_mean": _peak_to_mean(arr, lo, end, cfg.bin_s),
        "per_period": per_period,
        "order_r1": order_parameter(final_phases) if final_phases.size else 0.0,
        "requests": int(arr.size),
        "mean_per_bin": float(n * cfg.bin_s / T),
    }


def _peak_to_mean(arrivals: np.ndarray, lo: float, hi: float, bin_s: float) -> float:
    bins = round((hi - lo) / bin_s)
    sel = arrivals[(arrivals >= lo) & (arrivals < hi)]
    if bins < 1 or sel.size == 0:
        return 0.0
    counts = np.bincount(((sel - lo) / bin_s).astype(int).clip(0, bins - 1), minlength=bins)
    return float(counts.max() / counts.mean())
