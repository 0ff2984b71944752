"""Agreement among coordinators: one spike-based Byzantine binary agreement per governance proposal.

The federation's members are the coordinators whose keys every member holds (the ledger's issuer
keys: this coordinator and its --peer-key peers); n of them tolerate f = floor((n − 1) / 3) faulty
ones (collective/agreement.py has the protocol and why it is safe). Each member starts an instance
with its own tally's verdict once the proposal's deadline has passed (governance.py), and the
instance decides the same bit on every correct member.

Transport: spikes ride on the gossip loop. Every round, for every peer, POST /v1/agree carries every
spike this coordinator has emitted for instances still open — the whole outbox, so a lost message is
simply sent again — and the answer carries the peer's. Both directions are envelopes signed by the
sending coordinator's key, so a spike's sender is authenticated; a spike for an instance a member
has not started yet is dropped (it will come again). Spikes are idempotent: a duplicate changes
nothing. A decided instance keeps being re-sent for `linger_s` so that members that fell behind can
finish; a member that missed it altogether adopts the decision from f + 1 coordinators' `decide`
ledger entries instead (governance.py).

State is in memory: a coordinator restarted mid-agreement starts the instance afresh, which its
peers see as (at worst) one faulty member — tolerated while restarts plus faults stay within f.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from ..collective.agreement import KINDS, MAX_ROUNDS, Member, Spike, max_faulty
from .errors import BadMessage

MAX_SPIKES = 20_000  # per message
ID_LEN = 64


def parse_spikes(items: Any) -> list[tuple[str, Spike]]:
    """[[instance, kind, round, bit], ...] -> (instance, Spike); anything else is a BadMessage."""
    if not isinstance(items, list) or len(items) > MAX_SPIKES:
        raise BadMessage(f"spikes must be a list of at most {MAX_SPIKES:,} [instance, kind, round, bit]")
    out = []
    for it in items:
        ok = (
            isinstance(it, list) and len(it) == 4 and isinstance(it[0], str) and len(it[0]) == ID_LEN
            and it[1] in KINDS and isinstance(it[2], int) and not isinstance(it[2], bool)
            and 0 <= it[2] <= MAX_ROUNDS and it[3] in (0, 1) and not isinstance(it[3], bool)
        )  # fmt: skip
        if not ok:
            raise BadMessage(f"not a spike: {str(it)[:120]} (expected [64-hex instance, kind, round, 0|1])")
        out.append((it[0], Spike(it[1], it[2], it[3])))
    return out


class Agreements:
    def __init__(self, me: str, members: Sequence[str], linger_s: float = 60.0,
                 clock: Any = time.monotonic) -> None:  # fmt: skip
        self.me = me
        self.members = sorted(set(members) | {me})
        self.f = max_faulty(len(self.members))
        self.linger_s, self.clock = linger_s, clock
        self.lock = threading.Lock()
        self._inst: dict[str, Member] = {}
        self._outbox: dict[str, list[Spike]] = {}
        self._done_at: dict[str, float] = {}
        self.received = 0

    def start(self, instance: str, bit: int) -> None:
        with self.lock:
            if instance in self._inst:
                return
            m = self._inst[instance] = Member(self.me, self.members, bit, instance)
            self._outbox[instance] = []
            self._deliver(instance, m.start())

    def _deliver(self, instance: str, spikes: list[Spike]) -> None:
        """Broadcast: record for the peers, and deliver to ourselves now (a member is its own peer)."""
        m = self._inst[instance]
        queue = list(spikes)
        while queue:
            s = queue.pop(0)
            self._outbox[instance].append(s)
            queue.extend(m.receive(self.me, s))
        if m.decided is not None and instance not in self._done_at:
            self._done_at[instance] = self.clock()

    def receive(self, sender: str, spikes: list[tuple[str, Spike]]) -> int:
        """Spikes from an authenticated peer; returns how many reached a running instance."""
        used = 0
        with self.lock:
            for instance, s in spikes:
                m = self._inst.get(instance)
                if m is None or sender not in m.members or sender == self.me:
                    continue
                used += 1
                self._deliver(instance, m.receive(sender, s))
            self.received += used
        return used

    def outgoing(self) -> list[list[Any]]:
        """Every spike of instances not yet past their linger time (sent to every peer each round)."""
        now = self.clock()
        with self.lock:
            out = []
            for instance, spikes in self._outbox.items():
                done = self._done_at.get(instance)
                if done is not None and now - done > self.linger_s:
                    continue
                out.extend([instance, s.kind, s.round, s.bit] for s in spikes)
            return out[:MAX_SPIKES]

    def decided(self, instance: str) -> int | None:
        with self.lock:
            m = self._inst.get(instance)
            return None if m is None else m.decided

    def started(self, instance: str) -> bool:
        with self.lock:
            return instance in self._inst

    def state(self, instance: str) -> dict[str, Any] | None:
        with self.lock:
            m = self._inst.get(instance)
            if m is None:
                return None
            return {"round": m.round, "estimate": m.est, "decided": m.decided, "halted": m.halted,
                    "members": len(self.members), "faulty_tolerated": self.f}  # fmt: skip
