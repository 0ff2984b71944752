"""The ledger's CRDT laws, checked with hypothesis: merge is commutative, associative and idempotent;
10,000 random operations delivered in random orders across random partitions converge to the same
balances and Merkle root; no replica ever shows a negative balance; forged entries are refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasm_torch.net.crdt import GCounter, PNCounter
from wasm_torch.net.errors import BadEntry, InsufficientCredit
from wasm_torch.net.ledger import KINDS, Entry, Ledger, sign_entry
from wasm_torch.net.wire import Signer

ISSUERS = [Signer.generate() for _ in range(3)]
KEYS = {s.id: s.public_raw for s in ISSUERS}
ACCOUNTS = [f"acct-{i}" for i in range(6)]
REFS = ["job:a", "job:b", "job:c"]

counters = st.dictionaries(st.sampled_from("abcd"), st.integers(0, 1000), max_size=4)


@given(counters, counters, counters)
def test_gcounter_merge_laws(a, b, c):
    x, y, z = GCounter(a), GCounter(b), GCounter(c)
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(x) == x
    assert x.merge(y).value >= max(x.value, y.value)


@given(counters, counters, counters, counters)
def test_pncounter_merge_laws(a, b, c, d):
    x, y = PNCounter(GCounter(a), GCounter(b)), PNCounter(GCounter(c), GCounter(d))
    assert x.merge(y) == y.merge(x)
    assert x.merge(x) == x
    assert x.merge(y).merge(y) == x.merge(y)


def test_gcounter_only_counts_up():
    with pytest.raises(ValueError):
        GCounter().increment("a", -1)


# ---- issuing: each issuer checks against its own entries, as a coordinator does ------------------
class Issuer:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.view = Ledger(KEYS)

    def issue(self, kind: str, account: str, amount: int, ref: str, force: bool = False) -> Entry | None:
        """Sign an entry if the issuer's own rights cover it; `force` signs an overdraw anyway (a buggy
        or malicious issuer) so replicas must refuse to apply it."""
        if not force:
            try:
                self.view.check(kind, self.signer.id, account, amount, ref)
            except InsufficientCredit:
                return None
        e = sign_entry(self.signer, self.view.next_seq(self.signer.id), kind, account, amount, ref, 0,
                       "ev" if kind == "slash" else "")  # fmt: skip
        self.view.add(e, verify=False)
        return e


def random_entries(rng: random.Random, n: int, overdraw_rate: float = 0.01) -> list[Entry]:
    issuers = [Issuer(s) for s in ISSUERS]
    weights = {"mint": 4, "earn": 4, "reserve": 3, "spend": 3, "release": 1, "stake": 2, "unstake": 1, "slash": 1,
               "refund": 1}  # fmt: skip
    kinds = list(weights)
    out: list[Entry] = []
    while len(out) < n:
        iss = rng.choice(issuers)
        kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
        e = iss.issue(kind, rng.choice(ACCOUNTS), rng.randint(1, 500), rng.choice(REFS), force=rng.random() < overdraw_rate)
        if e is not None:
            out.append(e)
    return out


def state(led: Ledger) -> tuple:
    return (led.root(), {a: led.balance(a) for a in ACCOUNTS}, {k: v for k, v in led.reservations.items() if v})


def ledger_of(entries: list[Entry], rng: random.Random | None = None) -> Ledger:
    led = Ledger(KEYS)
    es = list(entries)
    if rng:
        rng.shuffle(es)
    led.merge(es, verify=False)
    return led


def merged(*ledgers: Ledger) -> Ledger:
    out = Ledger(KEYS)
    for led in ledgers:
        out.merge(led, verify=False)
    return out


def never_negative(led: Ledger) -> None:
    for acct in led.accounts.values():
        for issuer in led.entries:
            assert acct.available(issuer) >= 0 and acct.reserved(issuer) >= 0 and acct.staked(issuer) >= 0
            assert acct.spent().get(issuer) >= 0
    assert all(v >= 0 for v in led.reservations.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(50, 300))
def test_ledger_merge_is_commutative_associative_idempotent(seed, n):
    rng = random.Random(seed)
    entries = random_entries(rng, n)
    a, b, c = (ledger_of(rng.sample(entries, rng.randint(0, n)), rng) for _ in range(3))
    assert state(merged(a, b)) == state(merged(b, a))
    assert state(merged(merged(a, b), c)) == state(merged(a, merged(b, c)))
    assert state(merged(a, a)) == state(a)
    for led in (a, b, c, merged(a, b, c)):
        never_negative(led)
    assert state(ledger_of(entries, rng)) == state(ledger_of(entries))  # delivery order does not matter


@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_ten_thousand_operations_in_random_partitions_converge(seed):
    """4 replicas; 10,000 entries from 3 issuers released in random order over 60 rounds; each round
    the replicas are split into random partitions and gossip (summary / missing_for, the coordinator's
    protocol) inside them with lossy, shuffled delivery. Every replica verifies every signature and is
    checked for negative balances after every round; after the partitions heal, all agree."""
    rng = random.Random(seed)
    entries = random_entries(rng, 10_000)
    replicas = [Ledger(KEYS) for _ in range(4)]
    pending = list(entries)
    rng.shuffle(pending)
    rounds = 60
    per_round = len(pending) // rounds + 1
    for r in range(rounds):
        for e in pending[r * per_round : (r + 1) * per_round]:  # each new entry appears at one replica
            rng.choice(replicas).add(e)
        order = list(range(4))
        rng.shuffle(order)
        cut = rng.randint(1, 3)
        for group in (order[:cut], order[cut:]):
            for i in group:
                for j in group:
                    if i != j and rng.random() < 0.7:
                        missing = replicas[j].missing_for(replicas[i].summary(), limit=rng.randint(1, 400))
                        rng.shuffle(missing)
                        replicas[i].merge(missing[: rng.randint(0, len(missing))])  # lossy delivery
        for led in replicas:
            never_negative(led)
    for _ in range(10):  # heal: full anti-entropy until nothing moves
        moved = 0
        for i in range(4):
            for j in range(4):
                if i != j:
                    moved += replicas[i].merge(replicas[j].missing_for(replicas[i].summary(), limit=5000))
        if not moved:
            break
    want = state(ledger_of(entries))
    for led in replicas:
        assert len(led) == len(entries)
        assert state(led) == want
        never_negative(led)
    assert any(led.rejected for led in replicas)  # the forced overdraws were stored but not applied


def test_overdraw_is_refused_by_the_issuer_and_ignored_by_replicas():
    iss = Issuer(ISSUERS[0])
    assert iss.issue("reserve", "x", 5, "job:a") is None  # nothing to reserve
    iss.issue("mint", "x", 10, "")
    assert iss.issue("reserve", "x", 7, "job:a") is not None
    assert iss.issue("spend", "x", 8, "job:a") is None  # more than the reservation holds
    assert iss.issue("spend", "x", 7, "job:b") is None  # another reservation
    bad = iss.issue("stake", "x", 100, "", force=True)
    led = ledger_of(iss.view.iter_entries())
    assert bad.seq in led.rejected[ISSUERS[0].id]
    assert led.balance("x") == {"available": 3, "reserved": 7, "staked": 0, "earned": 0, "minted": 10, "spent": 0,
                                "slashed": 0, "balance": 10}  # fmt: skip
    # rights are per issuer: credit minted by issuer 0 cannot be spent through issuer 1
    other = Issuer(ISSUERS[1])
    other.view.merge(iss.view, verify=False)
    assert other.issue("stake", "x", 1, "") is None


def test_gap_waits_for_the_missing_entry():
    iss = Issuer(ISSUERS[0])
    mint = iss.issue("mint", "x", 10, "")
    stake = iss.issue("stake", "x", 10, "")
    led = Ledger(KEYS)
    led.add(stake)
    assert led.balance("x")["staked"] == 0 and not led.rejected  # held back, not refused
    led.add(mint)
    assert led.balance("x")["staked"] == 10 and led.balance("x")["available"] == 0


def test_forged_and_foreign_entries_are_refused():
    iss = Issuer(ISSUERS[0])
    e = iss.issue("mint", "x", 10, "")
    led = Ledger(KEYS)
    forged = Entry.from_json({**e.to_json(), "amount": 10_000})
    with pytest.raises(BadEntry, match="forged"):
        led.add(forged)
    stranger = Signer.generate()
    with pytest.raises(BadEntry, match="unknown issuer"):
        led.add(sign_entry(stranger, 1, "mint", "x", 10, "", 0))
    for bad in ({**e.to_json(), "kind": "steal"}, {**e.to_json(), "amount": 0}, {**e.to_json(), "amount": -1},
                {**e.to_json(), "extra": 1}, {**e.to_json(), "seq": True}, {**e.to_json(), "sig": "!!"}):  # fmt: skip
        with pytest.raises(BadEntry if bad.get("kind") == "steal" or bad.get("amount", 1) < 1 else Exception):
            led.add(Entry.from_json(bad))
    assert len(led) == 0


def test_equivocating_issuer_converges_to_the_smaller_hash():
    s = ISSUERS[2]
    a = sign_entry(s, 1, "mint", "x", 10, "", 0)
    b = sign_entry(s, 1, "mint", "y", 99, "", 0)
    l1, l2 = Ledger(KEYS), Ledger(KEYS)
    l1.add(a)
    l2.add(b)
    l1.merge(l2)
    l2.merge(l1)
    assert state(l1) == state(l2) and (l1.equivocations or l2.equivocations)  # seen where both met
    keep = min((a, b), key=lambda e: e.hash)
    assert l1.entries[s.id][1].hash == keep.hash


def test_all_kinds_are_covered():
    assert set(KINDS) == {"mint", "earn", "reserve", "spend", "release", "stake", "unstake", "slash", "refund", "gov"}


def test_gov_entries_never_move_credit():
    """Governance records (proposal, vote, decide) ride in the ledger but change no balance."""
    s = ISSUERS[0]
    led = Ledger(KEYS)
    led.add(sign_entry(s, 1, "mint", "a", 50, "", 0))
    before = led.balance("a")
    led.add(sign_entry(s, 2, "gov", "a", 1, "vote:" + "ab" * 32, 0, "cd" * 32))
    assert led.balance("a") == before and led.upto[s.id] == 2 and not led.rejected.get(s.id)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 70), st.booleans()), min_size=1, max_size=150))
def test_merkle_log_matches_a_full_rebuild_under_any_insert_order(ops):
    """Inserts and replacements at any seq, with roots read at random points, always give the root of
    the position-indexed tree computed from scratch (gaps are zero leaves)."""
    import hashlib

    from wasm_torch.net.merkle import ZERO, MerkleLog, leaf, root_of

    m, held = MerkleLog(), {}
    for k, (seq, read) in enumerate(ops):
        h = hashlib.sha256(f"{seq}-{k}".encode()).digest()
        m.put(seq, h)
        held[seq] = h
        if read:
            top = max(held)
            assert m.root() == root_of([leaf(held[s]) if s in held else ZERO for s in range(1, top + 1)])
    top = max(held)
    assert m.root() == root_of([leaf(held[s]) if s in held else ZERO for s in range(1, top + 1)])
    assert len(m) == len(held)


def test_an_entry_far_ahead_is_refused():
    from wasm_torch.net.ledger import MAX_AHEAD

    led = Ledger(KEYS)
    with pytest.raises(BadEntry, match="past the highest seq"):
        led.add(sign_entry(ISSUERS[0], MAX_AHEAD + 5, "mint", "x", 1, "", 0))
    assert len(led) == 0
