"""Network parameters: one record, stored in the coordinator's database, read on every decision.

Everything governance may change lives here (replication factor, price floor, slash rate,
admission, timing), so changing the network is one validated update of one record with a version
number, never a code edit: by an operator (`Store.set_params`, `wasm-torch ledger params --set k=v`)
or by an accepted proposal (governance.py, which may change only the GOVERNABLE fields there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .economy import MICRO
from .errors import BadMessage

ADMISSION = ("open", "staked")
PLANNERS = ("gray-scott", "rendezvous")
VOTE_RULES = ("softmax", "proportional")


@dataclass(frozen=True)
class NetworkParams:
    # validation
    replication: int = 2  # distinct nodes per checked task (adaptive replication may accept one)
    max_replicas: int = 5  # replicas a task may need before it is declared inconclusive
    adaptive_replication: bool = False  # trusted nodes are spot-checked instead of always replicated
    spot_check_floor: float = 0.05  # ... but never less often than this
    spot_check_half: int = 20  # clean results in a row that halve the spot-check rate
    trust_streak: int = 10  # clean results in a row before a node counts as trusted
    pinned_variant: str = "simd128"  # the deterministic build every task pins (relaxed SIMD is not)
    # economy
    price_floor: int = 1000  # micro-credits per MFLOP
    price_ceiling_factor: int = 100
    market_window_s: float = 600.0
    slash_rate: float = 0.5
    join_stake: int = 10 * MICRO
    admission: str = "open"  # open: unstaked nodes join on probation; staked: stake first
    min_reputation: float = 0.05  # below this a node gets no tasks
    retention_days: float = 7.0  # storage charged for job data
    # timing
    lease_s: float = 30.0  # a node must return a result within this
    poll_s: float = 1.0  # how long a node waits before asking again when there is no work
    heartbeat_s: float = 10.0
    clock_skew_s: float = 300.0  # messages older or newer than this are refused (replay window)
    gossip_s: float = 2.0
    # limits
    max_body_bytes: int = 32 * 1024 * 1024
    max_artifact_bytes: int = 64 * 1024 * 1024
    max_tasks_per_job: int = 100_000
    max_task_bytes: int = 4 * 1024 * 1024  # tensor data of one task's inputs or outputs
    gossip_batch: int = 5000  # ledger entries per gossip message
    # governance (wasm_torch/net/governance.py): fixed into each proposal when it is admitted
    vote_period_s: float = 86400.0  # a proposal is open this long
    vote_settle_s: float = 10.0  # after the deadline, wait this long for gossip before tallying
    vote_quorum: float = 0.33  # share of the electorate's weight that must vote
    vote_threshold: float = 0.5  # a proposal passes when its yes share of the turnout is above this
    vote_rule: str = "softmax"  # softmax | proportional (collective/voting.py)
    vote_temperature: float = 50.0  # credits: the softmax temperature over stakes
    # heartbeat spreading (collective/kuramoto.py): 0 turns it off, 1 moves a node halfway to its slot
    phase_coupling: float = 1.0
    # growth (growth.py, collective/grayscott.py): where hot artifacts are kept. Off by default: it pays
    # when many artifacts are hot at once in small jobs, and costs when big jobs run one after another
    # (docs/network.md); 30 s is a sensible period to turn it on with
    growth_period_s: float = 0.0  # how often the coordinator replans; 0 = off
    growth_replicas: int = 2  # nodes that keep each hot artifact
    growth_window_s: float = 600.0  # leases younger than this are an artifact's demand
    growth_neighbours: int = 4  # links per node in the node graph
    growth_planner: str = "gray-scott"  # gray-scott | rendezvous (homes by hash only: the baseline)

    def __post_init__(self) -> None:
        problems = []
        if self.replication < 2:
            problems.append("replication must be >= 2 (adaptive_replication lets trusted nodes skip it)")
        if self.max_replicas < max(self.replication, 3):
            problems.append("max_replicas must be >= replication and >= 3 (a mismatch needs a third)")
        if not 0 < self.spot_check_floor <= 1:
            problems.append("spot_check_floor must be in (0, 1]: spot checks never stop")
        if self.spot_check_half < 1 or self.trust_streak < 0:
            problems.append("spot_check_half must be >= 1 and trust_streak >= 0")
        if self.pinned_variant != "simd128":
            problems.append("pinned_variant must be 'simd128': only deterministic builds can be compared by hash")
        if self.price_floor < 1 or self.price_ceiling_factor < 1:
            problems.append("price_floor and price_ceiling_factor must be >= 1")
        if not 0 <= self.slash_rate <= 1:
            problems.append("slash_rate must be in [0, 1]")
        if self.join_stake < 0:
            problems.append("join_stake must be >= 0")
        if self.admission not in ADMISSION:
            problems.append(f"admission must be one of {list(ADMISSION)}")
        if not 0 <= self.min_reputation < 1:
            problems.append("min_reputation must be in [0, 1)")
        for name in ("lease_s", "poll_s", "heartbeat_s", "clock_skew_s", "gossip_s", "market_window_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        for name in ("max_body_bytes", "max_artifact_bytes", "max_tasks_per_job", "max_task_bytes", "gossip_batch"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if not 1.0 <= self.vote_period_s <= 90 * 86400.0 or not 0 <= self.vote_settle_s <= 86400.0:
            problems.append("vote_period_s must be in [1 s, 90 days] and vote_settle_s in [0, 1 day]")
        if not (0 <= self.vote_quorum <= 1 and 0 <= self.vote_threshold < 1):
            problems.append("vote_quorum must be in [0, 1] and vote_threshold in [0, 1)")
        if self.vote_rule not in VOTE_RULES or not 0 < self.vote_temperature < 1e12:
            problems.append(f"vote_rule must be one of {list(VOTE_RULES)} and vote_temperature > 0")
        if not 0 <= self.phase_coupling <= 2:
            problems.append("phase_coupling must be in [0, 2] (0 = off, 2 = straight to the slot)")
        if not (self.growth_period_s == 0 or 1.0 <= self.growth_period_s <= 86400.0) or self.growth_window_s <= 0:
            problems.append("growth_period_s must be 0 (off) or in [1 s, 1 day], and growth_window_s > 0")
        if self.growth_planner not in PLANNERS:
            problems.append(f"growth_planner must be one of {list(PLANNERS)}")
        if not (1 <= self.growth_replicas <= 64 and 1 <= self.growth_neighbours <= 64):
            problems.append("growth_replicas and growth_neighbours must be in [1, 64]")
        if self.retention_days < 0:
            problems.append("retention_days must be >= 0")
        if problems:
            raise BadMessage("invalid network parameters: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> NetworkParams:
        if not isinstance(d, dict):
            raise BadMessage("network parameters must be a JSON object")
        return cls().updated(d)

    def updated(self, changes: dict[str, Any]) -> NetworkParams:
        """A copy with `changes` applied; values are checked against each field's type."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise BadMessage(f"unknown network parameters {unknown}; known: {sorted(fields)}")
        clean: dict[str, Any] = {}
        for k, v in changes.items():
            want = type(getattr(NetworkParams(), k))
            if want is bool:
                ok = isinstance(v, bool)
            elif want is int:
                ok = isinstance(v, int) and not isinstance(v, bool)
            elif want is float:
                ok = isinstance(v, int | float) and not isinstance(v, bool)
                v = float(v) if ok else v
            else:
                ok = isinstance(v, want)
            if not ok:
                raise BadMessage(f"network parameter {k!r} must be {want.__name__}, got {v!r}")
            clean[k] = v
        return dataclasses.replace(self, **clean)

    @staticmethod
    def parse_assignment(text: str) -> tuple[str, Any]:
        """'replication=3' -> ('replication', 3); values are JSON (true, 0.5, "staked") or bare words."""
        import json

        if "=" not in text:
            raise BadMessage(f"expected NAME=VALUE, got {text!r}")
        k, v = text.split("=", 1)
        try:
            return k.strip(), json.loads(v)
        except ValueError:
            return k.strip(), v
