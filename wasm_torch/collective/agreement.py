"""Spike-based Byzantine binary agreement: n members, at most f of them faulty, n >= 3f + 1.

Every member starts with a bit (for the network: "does my tally accept this proposal?") and all
correct members must decide the same bit, one that some correct member started with. The protocol
is the signature-free binary consensus of Mostéfaoui, Moumen and Raynal (PODC 2014), written as
integrate-and-fire neurons: each message is a *spike* (kind, round, bit) from one member, and each
member keeps one neuron per (kind, round, bit) whose potential is the number of distinct members
that spiked on it. A neuron fires once at each of its thresholds:

    EST(r, b)     f + 1  → relay: spike EST(r, b) yourself (at least one correct member holds b)
                  2f + 1 → b enters bin_values[r] (a majority of correct members back it);
                           the first such b is spiked as AUX(r, b)
    AUX(r, ·)     wait for n − f members whose AUX bit is in bin_values[r]; vals = their bits;
                  c = coin(r):  vals = {b} → est = b, and decide b if b = c;  else est = c
    DECIDE(b)     f + 1  → decide b (some correct member did) and spike DECIDE(b)
                  2f + 1 → halt (every correct member will see f + 1 DECIDE(b))

Why two correct members never decide differently (the property tests check it over random
schedules with Byzantine members): a member that decides b in round r saw n − f AUX spikes all
carrying b; any other correct member's n − f AUX spikes share at least n − 2f >= f + 1 senders with
them, so at least one correct sender, whose only AUX in round r was b — so b is in its vals and its
estimate becomes b (vals = {b}, or c = b). From then on every correct member estimates b, bin_values
can never receive ¬b (2f + 1 spikes need f + 1 correct ones), and only b can be decided.

The coin is `sha256(instance, r)`: common to all members but predictable. Safety does not depend on
it; termination does, and holds with probability 1 under fair (random) delivery — a scheduler that
knows the coin in advance could keep the members from deciding (Tholoniat and Gramoli describe such
an adversary). `simulate` runs n members over a message pool with random or adversarial delivery
and Byzantine strategies; with more than f Byzantine members the bound is broken and `simulate`
shows two correct members deciding differently (tests/collective/test_agreement.py).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from .errors import CollectiveError

KINDS = ("est", "aux", "decide")
MAX_ROUNDS = 256  # a member gives up (undecided) after this many rounds; spikes beyond it are ignored


def max_faulty(n: int) -> int:
    """The most faulty members n can tolerate: f = floor((n − 1) / 3)."""
    return max(0, (n - 1) // 3)


def coin(instance: str, rnd: int) -> int:
    return hashlib.sha256(f"wasm-torch-agreement/1\n{instance}\n{rnd}".encode()).digest()[0] & 1


@dataclass(frozen=True)
class Spike:
    kind: str  # est | aux | decide
    round: int  # 0 for decide
    bit: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.bit not in (0, 1) or not 0 <= self.round <= MAX_ROUNDS:
            raise CollectiveError(f"not a spike: {self.kind!r} round {self.round!r} bit {self.bit!r}")


class Neuron:
    """Integrate-and-fire over distinct senders; fires once per threshold (refractory afterwards)."""

    __slots__ = ("fired", "senders", "thresholds")

    def __init__(self, thresholds: Sequence[int]) -> None:
        self.thresholds = tuple(thresholds)
        self.senders: set[Hashable] = set()
        self.fired: set[int] = set()

    def spike(self, sender: Hashable) -> list[int]:
        """Integrate one spike; the thresholds crossed by it (each at most once ever)."""
        if sender in self.senders:
            return []
        self.senders.add(sender)
        out = [t for t in self.thresholds if len(self.senders) >= t and t not in self.fired]
        self.fired.update(out)
        return out

    @property
    def potential(self) -> int:
        return len(self.senders)


class Member:
    """One correct member of an agreement instance. `start()` and `receive()` return the spikes to
    broadcast to every member (itself included: deliver them back through `receive`)."""

    def __init__(self, me: Hashable, members: Sequence[Hashable], bit: int, instance: str,
                 faulty: int | None = None) -> None:  # fmt: skip
        if bit not in (0, 1):
            raise CollectiveError(f"the input must be 0 or 1, got {bit!r}")
        self.members = frozenset(members)
        if me not in self.members:
            raise CollectiveError(f"{me!r} is not a member of this instance")
        self.me, self.instance = me, instance
        self.n = len(self.members)
        self.f = max_faulty(self.n) if faulty is None else faulty
        if self.f < 0:
            raise CollectiveError("faulty must be >= 0")
        self.est = bit
        self.round = 1
        self.decided: int | None = None
        self.decided_round: int | None = None
        self.halted = False
        self.conflicts = 0  # DECIDE quorums for the other bit after we decided (more than f faulty)
        self._aux_sent: set[int] = set()
        self._neurons: dict[tuple[str, int, int], Neuron] = {}
        self._sent: set[Spike] = set()
        self._bins: dict[int, set[int]] = {}
        self._aux: dict[int, dict[Hashable, int]] = {}
        self._started = False

    # ---- helpers ----------------------------------------------------------------------------------
    def _neuron(self, kind: str, rnd: int, bit: int) -> Neuron:
        key = (kind, rnd, bit)
        nr = self._neurons.get(key)
        if nr is None:
            ths = (self.f + 1, 2 * self.f + 1)
            nr = self._neurons[key] = Neuron(ths)
        return nr

    def _emit(self, out: list[Spike], s: Spike) -> None:
        if s not in self._sent and not self.halted:
            self._sent.add(s)
            out.append(s)

    # ---- protocol ---------------------------------------------------------------------------------
    def start(self) -> list[Spike]:
        out: list[Spike] = []
        if not self._started:
            self._started = True
            self._emit(out, Spike("est", self.round, self.est))
            self._progress(out)
        return out

    def receive(self, sender: Hashable, s: Spike) -> list[Spike]:
        """Integrate a spike from `sender` (authenticated by the transport; non-members are ignored)."""
        out: list[Spike] = []
        if self.halted or sender not in self.members:
            return out
        if s.kind == "decide":
            for t in self._neuron("decide", 0, s.bit).spike(sender):
                if t == self.f + 1:
                    self._decide(s.bit, out)
                if t == 2 * self.f + 1:
                    self._decide(s.bit, out)
                    self.halted = True
            return out
        if s.round > MAX_ROUNDS:
            return out
        if s.kind == "est":
            for t in self._neuron("est", s.round, s.bit).spike(sender):
                if t == self.f + 1:
                    self._emit(out, Spike("est", s.round, s.bit))
                if t == 2 * self.f + 1:
                    self._bins.setdefault(s.round, set()).add(s.bit)
        else:
            self._aux.setdefault(s.round, {}).setdefault(sender, s.bit)  # a sender's first AUX counts
        self._progress(out)
        return out

    def _decide(self, bit: int, out: list[Spike]) -> None:
        if self.decided is None:
            self.decided, self.decided_round = bit, self.round
        elif self.decided != bit:  # only with more than f faulty members (the proof above): keep ours
            self.conflicts += 1
            return
        self._emit(out, Spike("decide", 0, bit))

    def _progress(self, out: list[Spike]) -> None:
        while self._started and not self.halted and self.round <= MAX_ROUNDS:
            r = self.round
            bins = self._bins.get(r, set())
            if not bins:
                return
            if r not in self._aux_sent:
                self._aux_sent.add(r)
                self._emit(out, Spike("aux", r, min(bins) if len(bins) == 1 else self._first_bin(r, bins)))
            aux = self._aux.get(r, {})
            backing = {b: sum(1 for v in aux.values() if v == b) for b in bins}
            if sum(backing.values()) < self.n - self.f:
                return
            single = [b for b, k in backing.items() if k >= self.n - self.f]
            vals = {single[0]} if single else {b for b, k in backing.items() if k}
            c = coin(self.instance, r)
            if len(vals) == 1:
                (b,) = vals
                self.est = b
                if b == c:
                    self._decide(b, out)
            else:
                self.est = c
            self.round = r + 1
            if self.round <= MAX_ROUNDS:
                self._emit(out, Spike("est", self.round, self.est))

    def _first_bin(self, r: int, bins: set[int]) -> int:
        # both bits entered bin_values before we spiked AUX: any one is allowed; take our estimate's
        return self.est if self.est in bins else min(bins)


# ---- simulation: many members, a message pool, Byzantine strategies ----------------------------------
BYZANTINE = ("silent", "flip", "equivocate", "random", "split")


@dataclass
class Outcome:
    decisions: dict[int, int | None]  # correct member -> decided bit (None: undecided)
    inputs: dict[int, int]
    delivered: int
    rounds: dict[int, int | None] = field(default_factory=dict)

    @property
    def agreement(self) -> bool:
        got = {d for d in self.decisions.values() if d is not None}
        return len(got) <= 1

    @property
    def terminated(self) -> bool:
        return all(d is not None for d in self.decisions.values())

    @property
    def validity(self) -> bool:
        """If every correct member started with b, nothing but b was decided."""
        starts = set(self.inputs.values())
        got = {d for d in self.decisions.values() if d is not None}
        return len(starts) > 1 or got <= starts


def simulate(
    n: int,
    byzantine: dict[int, str],
    inputs: Sequence[int] | None = None,
    seed: int = 0,
    max_deliveries: int = 200_000,
    schedule: str = "random",
    faulty: int | None = None,
    instance: str = "sim",
) -> Outcome:
    """Members 0..n−1; those in `byzantine` follow the named strategy; the rest run `Member`.
    schedule "random": deliver a uniformly random pending message each step (fair, asynchronous).
    schedule "partition": messages between the two halves of the correct members are delivered only
    when nothing else is pending (still eventually delivered: an adversarial but legal schedule).
    `faulty` overrides the f the correct members assume (default floor((n − 1) / 3))."""
    for k, s in byzantine.items():
        if s not in BYZANTINE or not 0 <= k < n:
            raise CollectiveError(f"byzantine member {k!r} with strategy {s!r}: strategies are {BYZANTINE}")
    if schedule not in ("random", "partition"):
        raise CollectiveError("schedule must be 'random' or 'partition'")
    rng = random.Random(seed)
    members = list(range(n))
    if inputs is None:
        inputs = [rng.randrange(2) for _ in members]
    correct = [i for i in members if i not in byzantine]
    half = set(correct[: len(correct) // 2])  # the "0" side for split / partition
    procs = {i: Member(i, members, inputs[i], instance, faulty) for i in correct}
    pend_near: list[tuple[int, int, Spike]] = []  # (dst, src, spike)
    pend_far: list[tuple[int, int, Spike]] = []

    def send(src: int, dst: int, s: Spike) -> None:
        far = schedule == "partition" and src in procs and dst in procs and ((src in half) != (dst in half))
        (pend_far if far else pend_near).append((dst, src, s))

    def broadcast(src: int, spikes: list[Spike]) -> None:
        for s in spikes:
            for dst in members:
                send(src, dst, s)

    def byz_send(src: int, strategy: str, template: Spike | None) -> None:
        if strategy == "silent":
            return
        for dst in members:
            if strategy == "split":
                bit = 0 if dst in half else 1
                for r in range(1, 9):
                    send(src, dst, Spike("est", r, bit))
                    send(src, dst, Spike("aux", r, bit))
                send(src, dst, Spike("decide", 0, bit))
            elif strategy == "equivocate" and template is not None:
                bit = rng.randrange(2)
                send(src, dst, Spike(template.kind, template.round, bit))
                send(src, dst, Spike(template.kind, template.round, 1 - bit))
            elif strategy == "flip" and template is not None:
                send(src, dst, Spike(template.kind, template.round, 1 - template.bit))
            elif strategy == "random":
                kind = rng.choice(KINDS)
                send(src, dst, Spike(kind, 0 if kind == "decide" else rng.randrange(1, 6), rng.randrange(2)))

    for i in correct:
        broadcast(i, procs[i].start())
    for b, strategy in byzantine.items():
        byz_send(b, strategy, Spike("est", 1, inputs[b]))
    delivered = 0
    reacted: set[tuple[int, Spike]] = set()
    while (pend_near or pend_far) and delivered < max_deliveries:
        pool = pend_near if pend_near else pend_far
        j = rng.randrange(len(pool))
        pool[j], pool[-1] = pool[-1], pool[j]
        dst, src, s = pool.pop()
        delivered += 1
        if dst in procs:
            broadcast(dst, procs[dst].receive(src, s))
        elif byzantine[dst] in ("flip", "equivocate", "random") and (dst, s) not in reacted:
            reacted.add((dst, s))  # react once to each distinct spike with its own bad ones (bounded)
            byz_send(dst, byzantine[dst], s)
        if all(p.halted for p in procs.values()):
            break
    return Outcome(
        {i: p.decided for i, p in procs.items()},
        {i: inputs[i] for i in correct},
        delivered,
        {i: p.decided_round for i, p in procs.items()},
    )
