"""The credit ledger: a grow-only set of signed entries, merged like a CRDT, that can never overdraw.

Entry (signed by its issuer coordinator over LEDGER_DOMAIN + canonical JSON of every field but sig):

    {"issuer": "ed25519:…", "seq": 7, "kind": "earn", "account": "ed25519:…", "amount": 1200,
     "ref": "task:…", "ts": 1767000000000, "evidence": "", "sig": "<base64>"}

Amounts are integers in micro-credits (1 credit = 1,000,000). Kinds and what they move, per
(account, issuer):

    mint     available +a            (operator grant)
    earn     available +a            (validated work, uptime bonus)
    reserve  available -a  reserved[ref] +a   (a job's budget is held before its tasks run)
    spend    reserved[ref] -a  spent +a       (a validated task is paid from the reservation)
    release  reserved[ref] -a  available +a   (what a finished job did not use)
    stake    available -a  staked +a          (the bond a node posts to join)
    unstake  staked -a  available +a
    slash    staked -a  slashed +a            (with evidence: the hash of the signed conflicting results)
    refund   spent -a  available +a           (a disputed spend reversed)
    gov      nothing (amount 1)               (governance: a proposal admitted, a vote witnessed, a
                                               decision executed; ref names which, evidence is the
                                               sha256 of the signed document; net/governance.py)

CRDT structure: for every account and kind, the total is a G-counter over issuers (only grows);
available, reserved, staked and spent are PN-counters built from those totals. The entry set is
merged by union keyed by (issuer, seq); two different entries with the same key (an issuer that
equivocates) resolve to the one with the smaller hash, deterministically, and are recorded.

Never negative (the bounded-counter idea): an entry that decreases a quantity is only valid against
what *its own issuer* has credited, and each issuer's entries are applied in seq order, contiguous
prefix only (an entry after a gap waits until the gap fills). An issuer checks before it signs; a
replica re-checks when it applies, and an entry that would overdraw is stored (so every replica has
the same set and root) but not applied, on every replica alike. Hence every replica, at every moment,
shows balances >= 0, and the replicas converge to the same balances and Merkle root once they hold the
same entries. The price: credit issued by coordinator A can be spent only through A.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .crdt import GCounter, PNCounter
from .errors import BadEntry, InsufficientCredit
from .merkle import MerkleLog, ledger_root
from .wire import Signer, b64d, b64e, canonical, schema, verify_raw

LEDGER_DOMAIN = b"wasm-torch-net/1 ledger entry\n"
KINDS = ("mint", "earn", "reserve", "spend", "release", "stake", "unstake", "slash", "refund", "gov")
MAX_AMOUNT = 10**18
MAX_AHEAD = 1_000_000  # an entry may not be further than this beyond the issuer's highest seq held
ENTRY_FIELDS = {
    "issuer": str,
    "seq": int,
    "kind": str,
    "account": str,
    "amount": int,
    "ref": str,
    "ts": int,
    "evidence": str,
    "sig": str,
}


@dataclass(frozen=True)
class Entry:
    issuer: str
    seq: int
    kind: str
    account: str
    amount: int
    ref: str
    ts: int
    evidence: str
    sig: str
    hash: bytes = field(default=b"", compare=False, repr=False)

    def body(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "seq": self.seq,
            "kind": self.kind,
            "account": self.account,
            "amount": self.amount,
            "ref": self.ref,
            "ts": self.ts,
            "evidence": self.evidence,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "sig": self.sig}

    @property
    def hex(self) -> str:
        return self.hash.hex()

    @staticmethod
    def from_json(d: Any) -> Entry:
        """Strict: exactly the fields, sane values; the signature is checked by Ledger.add."""
        schema(d, ENTRY_FIELDS, "ledger entry")
        if d["kind"] not in KINDS:
            raise BadEntry(f"ledger entry kind {d['kind']!r} is not one of {list(KINDS)}")
        if not 0 < d["amount"] <= MAX_AMOUNT:
            raise BadEntry(f"ledger entry amount {d['amount']} must be in (0, {MAX_AMOUNT}]")
        if not 0 < d["seq"] < 2**62:
            raise BadEntry(f"ledger entry seq {d['seq']} must be a positive integer")
        if d["kind"] == "slash" and not d["evidence"]:
            raise BadEntry("a slash entry must carry the hash of its evidence")
        return _with_hash(Entry(**d))


def _with_hash(e: Entry) -> Entry:
    h = hashlib.sha256(canonical(e.to_json())).digest()
    object.__setattr__(e, "hash", h)
    return e


def sign_entry(
    signer: Signer, seq: int, kind: str, account: str, amount: int, ref: str, ts: int, evidence: str = ""
) -> Entry:
    e = Entry(signer.id, seq, kind, account, int(amount), ref, int(ts), evidence, "")
    sig = b64e(signer.sign(LEDGER_DOMAIN + canonical(e.body())))
    return Entry.from_json({**e.body(), "sig": sig})


class Account:
    """One account's CRDT state: a G-counter over issuers per entry kind."""

    __slots__ = ("totals",)

    def __init__(self) -> None:
        self.totals: dict[str, GCounter] = {k: GCounter() for k in KINDS}

    def _t(self, kind: str, issuer: str | None) -> int:
        c = self.totals[kind]
        return c.value if issuer is None else c.get(issuer)

    def available(self, issuer: str | None = None) -> int:
        t = self._t
        return (
            t("mint", issuer) + t("earn", issuer) + t("release", issuer) + t("unstake", issuer)
            + t("refund", issuer) - t("reserve", issuer) - t("stake", issuer)
        )  # fmt: skip

    def reserved(self, issuer: str | None = None) -> int:
        return self._t("reserve", issuer) - self._t("spend", issuer) - self._t("release", issuer)

    def staked(self, issuer: str | None = None) -> int:
        return self._t("stake", issuer) - self._t("unstake", issuer) - self._t("slash", issuer)

    def spent(self) -> PNCounter:
        """Spent and disputed: P = spends, N = refunds."""
        return PNCounter(self.totals["spend"], self.totals["refund"])

    def earned(self) -> GCounter:
        return self.totals["earn"]

    def merge(self, other: Account) -> Account:
        out = Account()
        out.totals = {k: self.totals[k].merge(other.totals[k]) for k in KINDS}
        return out

    def view(self) -> dict[str, int]:
        return {
            "available": self.available(),
            "reserved": self.reserved(),
            "staked": self.staked(),
            "earned": self.totals["earn"].value,
            "minted": self.totals["mint"].value,
            "spent": self.spent().value,
            "slashed": self.totals["slash"].value,
            "balance": self.available() + self.reserved() + self.staked(),
        }


class Ledger:
    """The entry set, its derived account states and Merkle root. `keys`: issuer id -> raw Ed25519
    public key of every coordinator whose entries are accepted."""

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self.keys: dict[str, bytes] = dict(keys or {})
        self.entries: dict[str, dict[int, Entry]] = {}
        self.trees: dict[str, MerkleLog] = {}
        self.equivocations: list[tuple[str, int]] = []
        self._reset_derived()

    def _reset_derived(self) -> None:
        self.upto: dict[str, int] = {}
        self.accounts: dict[str, Account] = {}
        self.reservations: dict[tuple[str, str, str], int] = {}  # (issuer, account, ref) -> held
        self.rejected: dict[str, set[int]] = {}
        self._root: bytes | None = None

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    # ---- adding -------------------------------------------------------------------------------
    def add(self, entry: Entry, verify: bool = True) -> bool:
        """Store an entry (verifying its issuer signature); True when it was new."""
        if verify:
            self.verify(entry)
        top = self.trees[entry.issuer].width if entry.issuer in self.trees else 0
        if entry.seq > top + MAX_AHEAD:
            raise BadEntry(
                f"ledger entry {entry.issuer}#{entry.seq} is more than {MAX_AHEAD:,} past the highest seq held "
                f"({top}); fetch the entries in between first"
            )
        mine = self.entries.setdefault(entry.issuer, {})
        old = mine.get(entry.seq)
        if old is not None:
            if old.hash == entry.hash:
                return False
            self.equivocations.append((entry.issuer, entry.seq))
            if entry.hash > old.hash:  # keep the smaller hash everywhere
                return False
            mine[entry.seq] = entry
            self.trees[entry.issuer].put(entry.seq, entry.hash)
            self._root = None
            if entry.seq <= self.upto.get(entry.issuer, 0):
                self._rebuild()
            return True
        mine[entry.seq] = entry
        self.trees.setdefault(entry.issuer, MerkleLog()).put(entry.seq, entry.hash)
        self._root = None
        self._advance(entry.issuer)
        return True

    def verify(self, entry: Entry) -> None:
        pub = self.keys.get(entry.issuer)
        if pub is None:
            raise BadEntry(
                f"ledger entry from unknown issuer {entry.issuer}: add the coordinator's public key "
                "(--peer-key) to accept its entries"
            )
        sig = b64d(entry.sig, "ledger entry sig", 64)
        if not verify_raw(pub, sig, LEDGER_DOMAIN + canonical(entry.body())):
            raise BadEntry(f"ledger entry {entry.issuer}#{entry.seq}: signature does not verify (forged)")

    def merge(self, other: Ledger | Iterable[Entry], verify: bool = True) -> int:
        """Add every entry of `other`; returns how many were new."""
        src = other.iter_entries() if isinstance(other, Ledger) else other
        return sum(self.add(e, verify) for e in src)

    def iter_entries(self) -> Iterable[Entry]:
        for issuer in sorted(self.entries):
            by_seq = self.entries[issuer]
            for s in sorted(by_seq):
                yield by_seq[s]

    # ---- derived state ------------------------------------------------------------------------
    def _advance(self, issuer: str) -> None:
        by_seq = self.entries.get(issuer, {})
        s = self.upto.get(issuer, 0)
        while s + 1 in by_seq:
            s += 1
            e = by_seq[s]
            if self.violation(e.kind, e.issuer, e.account, e.amount, e.ref) is None:
                self._apply(e)
            else:
                self.rejected.setdefault(issuer, set()).add(s)
        self.upto[issuer] = s

    def _rebuild(self) -> None:
        self._reset_derived()
        for issuer in sorted(self.entries):
            self._advance(issuer)

    def _apply(self, e: Entry) -> None:
        acct = self.accounts.get(e.account)
        if acct is None:
            acct = self.accounts[e.account] = Account()
        acct.totals[e.kind].increment(e.issuer, e.amount)
        key = (e.issuer, e.account, e.ref)
        if e.kind == "reserve":
            self.reservations[key] = self.reservations.get(key, 0) + e.amount
        elif e.kind in ("spend", "release"):
            self.reservations[key] -= e.amount

    def violation(self, kind: str, issuer: str, account: str, amount: int, ref: str) -> str | None:
        """Why this entry would overdraw what `issuer` holds for `account`, or None when it is valid."""
        acct = self.accounts.get(account) or Account()
        have: int | None = None
        what = ""
        if kind in ("reserve", "stake"):
            have, what = acct.available(issuer), "available credit"
        elif kind in ("spend", "release"):
            have, what = self.reservations.get((issuer, account, ref), 0), f"reservation {ref!r}"
        elif kind in ("unstake", "slash"):
            have, what = acct.staked(issuer), "stake"
        elif kind == "refund":
            have, what = acct.spent().get(issuer), "spent credit"
        if have is not None and amount > have:
            return f"{account} has {have} micro-credits of {what} at {issuer}, {amount} needed"
        return None

    def check(self, kind: str, issuer: str, account: str, amount: int, ref: str) -> None:
        why = self.violation(kind, issuer, account, amount, ref)
        if why is not None:
            raise InsufficientCredit(f"refused {kind} of {amount} micro-credits: {why}")

    # ---- queries ------------------------------------------------------------------------------
    def account(self, account: str) -> Account:
        return self.accounts.get(account) or Account()

    def balance(self, account: str) -> dict[str, int]:
        return self.account(account).view()

    def reservation(self, issuer: str, account: str, ref: str) -> int:
        return self.reservations.get((issuer, account, ref), 0)

    def next_seq(self, issuer: str) -> int:
        """One past the highest seq held from `issuer` (O(1): the tree's width is that seq)."""
        tree = self.trees.get(issuer)
        return (tree.width if tree else 0) + 1

    def root(self) -> str:
        if self._root is None:
            self._root = ledger_root({i: t.root() for i, t in self.trees.items() if len(t)})
        return self._root.hex()

    # ---- anti-entropy -------------------------------------------------------------------------
    def summary(self, max_extra: int = 4096) -> dict[str, dict[str, Any]]:
        """Per issuer: contiguous count held, seqs held beyond it, entries held, issuer root."""
        out: dict[str, dict[str, Any]] = {}
        for issuer, by_seq in self.entries.items():
            upto = self.upto.get(issuer, 0)
            extra = [] if len(by_seq) == upto else sorted(s for s in by_seq if s > upto)[:max_extra]
            out[issuer] = {"upto": upto, "extra": extra, "n": len(by_seq), "root": self.trees[issuer].root().hex()}
        return out

    def missing_for(self, theirs: Mapping[str, Mapping[str, Any]], limit: int) -> list[Entry]:
        """Entries we hold that a peer with summary `theirs` lacks (at most `limit`). When it holds the
        same seqs with a different issuer root (equivocation), send all of that issuer's entries."""
        out: list[Entry] = []
        for issuer in sorted(self.entries):
            by_seq = self.entries[issuer]
            t = theirs.get(issuer)
            top = self.trees[issuer].width if issuer in self.trees else 0
            if t is None:
                send: Iterable[int] = range(1, top + 1)
            else:
                upto, extra = int(t["upto"]), set(t["extra"])
                send = (s for s in range(upto + 1, top + 1) if s not in extra)
                if t["n"] == len(by_seq) and upto + len(extra) >= top and t["root"] != self.trees[issuer].root().hex():
                    send = range(1, top + 1)
            for s in send:
                e = by_seq.get(s)
                if e is None:
                    continue
                if len(out) >= limit:
                    return out
                out.append(e)
        return out
