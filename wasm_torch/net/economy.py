"""The credit economy: every formula the coordinator pays, charges or punishes with, in one place.

Units. Amounts are integers in micro-credits (MICRO per credit). A task's work is counted in work
units = floating-point operations of the compiled graph at the task's bound shapes (the compiler
records the count in the manifest; wasm_torch/net/work.py evaluates it), identical on every host and
engine. Prices are micro-credits per million work units (per MFLOP).

Where a formula needs a float it is evaluated once, by the issuing coordinator, and the result is
rounded down to whole micro-credits before it is signed into the ledger; other coordinators never
recompute it, so float differences between hosts cannot make ledgers disagree.
"""

from __future__ import annotations

import math

MICRO = 1_000_000  # micro-credits per credit

# ---- constants from the issue -------------------------------------------------------------------
MULTIPLIER_MAX_EXTRA = 9.0  # the multiplier starts at 1 + 9 = 10
MULTIPLIER_SCALE_CPU_HOURS = 1_000_000.0  # ... and decays with the network's compute, e-fold per 1M CPU-hours
UPTIME_BONUS_PER_HOUR = MICRO // 10  # 0.1 credit per hour a node stays reachable
PRIORITY_FACTOR = 2  # priority jobs cost twice as much
STORAGE_PER_MB_DAY = MICRO // 100  # 0.01 credit per MB per day of stored job data

# Converting work units to CPU-hours for the multiplier needs a reference speed. This is a
# definition (one CPU-hour of contribution = 3.6e12 counted flops), not a measurement.
REFERENCE_FLOPS_PER_CPU_SECOND = 1e9


def cpu_hours(work_units: int) -> float:
    """CPU-hours of contribution for `work_units` counted flops at the reference speed."""
    return work_units / REFERENCE_FLOPS_PER_CPU_SECOND / 3600.0


def contribution_multiplier(network_cpu_hours: float) -> float:
    """m = 1 + 9 · exp(−C / 1,000,000), C = CPU-hours the whole network has contributed so far.

    Early contributors earn up to 10x; the bonus halves every ~693,000 CPU-hours and tends to 1x.
    (The issue's table beside this formula contradicts it; the formula is what we implement.)
    """
    if network_cpu_hours < 0:
        raise ValueError("compute contributed cannot be negative")
    return 1.0 + MULTIPLIER_MAX_EXTRA * math.exp(-network_cpu_hours / MULTIPLIER_SCALE_CPU_HOURS)


def task_cost(work_units: int, price: int, priority: bool) -> int:
    """What the job owner pays for one validated replica of a task:

        cost = floor(units · price / 1e6) · (2 if priority else 1),   at least 1 micro-credit.
    """
    base = max(1, work_units * price // 1_000_000)
    return base * (PRIORITY_FACTOR if priority else 1)


def task_credit(work_units: int, price: int, multiplier: float) -> int:
    """What a node earns for a result that matches the canonical one:

        credit = floor(units · price / 1e6 · m),   at least 1 micro-credit.

    The part above 1x (m − 1) is new credit: the network subsidises early contribution.
    """
    return max(1, int(work_units * price * multiplier // 1_000_000))


def uptime_bonus(seconds: float) -> int:
    """0.1 credit per hour of uptime, proven by heartbeats (gaps longer than two heartbeat periods
    are not counted, see scheduler.heartbeat):  bonus = floor(seconds / 3600 · 100,000)."""
    return int(max(0.0, seconds) * UPTIME_BONUS_PER_HOUR // 3600)


def storage_cost(nbytes: int, days: float) -> int:
    """0.01 credit per MB per day the coordinator keeps a job's inputs and outputs:

        cost = ceil(bytes / 1e6 · days · 10,000).
    """
    return math.ceil(nbytes / 1e6 * days * STORAGE_PER_MB_DAY)


def reservation(tasks_units: list[int], price: int, priority: bool, max_replicas: int, storage: int) -> int:
    """A job's budget held before it runs: every task paid at the most replicas it may need, plus
    storage. What the job does not use is released when it finishes."""
    return sum(task_cost(u, price, priority) * max_replicas for u in tasks_units) + storage


def market_price(demand_units: int, supply_units: int, floor: int, ceiling_factor: int) -> int:
    """Price per MFLOP from supply and demand:

        price = floor · sqrt(max(1, D / S)),   capped at floor · ceiling_factor,

    D = work units queued (open tasks × replicas still needed), S = work units the network completed
    in the last market window (at least 1). An idle network sells at the floor; a backlog ten times
    what the nodes cleared in the last window costs ~3.2x.
    """
    ratio = demand_units / max(1, supply_units)
    return int(min(floor * ceiling_factor, floor * math.sqrt(max(1.0, ratio))))


# ---- stake and reputation -----------------------------------------------------------------------
def slash_amount(stake: int, rate: float) -> int:
    """A node whose result loses the quorum loses `rate` of the stake it holds at this coordinator:
    floor(stake · rate), and all of it when less than one credit would remain."""
    cut = int(stake * rate)
    return stake if stake - cut < MICRO else cut


def escrow_from_earning(credit: int, stake: int, join_stake: int) -> int:
    """Nodes that joined without stake bond half of each earning until they hold join_stake."""
    return max(0, min(credit // 2, join_stake - stake))


REPUTATION_START = 0.5
REPUTATION_GAIN = 0.01  # recovers slowly: each valid result closes 1% of the gap to 1
PENALTY = {  # drops fast: the fraction of reputation one offence takes away
    "wrong": 0.5,  # a result that lost the quorum
    "forged": 0.5,  # an attributable forgery: a signed claim about someone else's assignment
    "malformed": 0.2,  # a signed submission with bad tensors, a wrong hash or wrong work units
    "late": 0.2,  # a result after the lease expired
    "duplicate": 0.2,  # a second, different result for the same assignment
    "replay": 0.2,  # a message whose nonce was already used or whose clock is far off
    "timeout": 0.1,  # a lease that expired without a result (crash, slow, offline)
}


def reputation_after_success(r: float) -> float:
    """r ← r + (1 − r) · 0.01."""
    return r + (1.0 - r) * REPUTATION_GAIN


def reputation_after_fault(r: float, offence: str) -> float:
    """r ← r · (1 − PENALTY[offence]): one wrong result halves it; winning it back takes 41 valid
    results from the starting 0.5, 170 from 0.9 (tests/net/test_economy.py counts them)."""
    return r * (1.0 - PENALTY[offence])


def spot_check_rate(clean_streak: int, floor: float, half: int) -> float:
    """Adaptive replication: the probability that a trusted node's task is replicated anyway,

        p = max(floor, half / (half + streak)),

    1 for a new node, 1/2 after `half` clean results in a row, never below `floor` (never zero).
    """
    return max(floor, half / (half + max(0, clean_streak)))
