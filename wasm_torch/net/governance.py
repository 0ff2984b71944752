"""Governance: members propose changes to the network parameters, vote with their stake, and every
coordinator executes an accepted change exactly once.

Documents (each signed with its author's Ed25519 key over GOV_DOMAIN + canonical JSON of every
field but `sig`, and carrying the raw public key, so any coordinator can check it):

    proposal   {type, proposer, pubkey, changes, title, ts, nonce}     by a member with stake
    admission  {type, proposal, coordinator, snapshot, deadline_ms, rules, ts}   by the coordinator
               that admitted it: `proposal` is the signed proposal itself; `snapshot` is that
               coordinator's ledger prefix per issuer at admission (the stakes that vote); `rules`
               fix the voting rule, temperature, quorum, threshold and the minimum stake — so every
               coordinator tallies the same way whatever its own parameters are. pid = sha256 of it.
    vote       {type, proposal (pid), voter, pubkey, choice ("yes" | "no"), ts}

Ledger. Each step is a `gov` entry (ledger.py) in the CRDT ledger, so gossip carries it to every
coordinator and the Merkle root covers it: `proposal:<pid>` (account = proposer, evidence = pid),
`vote:<pid>` (account = voter, evidence = sha256 of the vote document; the entry's ts is when the
coordinator witnessed it), `decide:<pid>:<0|1>` (account = the deciding coordinator). Documents
themselves are kept in the `gov_docs` table and fetched from peers by hash (GET /v1/gov/doc/{hash});
a document that does not hash to its reference or whose signature fails is never stored.

Tally (the same on every coordinator that holds the same entries): the electorate is every account
whose stake at the snapshot — stake − unstake − slash entries within the snapshot prefix, over all
issuers — is at least the minimum; weights are collective.voting's softmax over those stakes (or
proportional); a vote counts when witnessed by a ledger entry with ts <= deadline and its document
verifies; a voter who signed both yes and no is void. Stake moved after the snapshot changes nothing.

Deciding. Once a proposal's deadline plus `vote_settle_s` has passed, each coordinator starts an
agreement instance (agree.py) with its own tally's verdict; the instance decides one bit on every
correct coordinator even if up to f of n >= 3f + 1 are faulty or saw different votes. Executing is
one transaction: the `decide` entry and — when accepted — the new parameters record (version + 1);
it happens only if this coordinator has no `decide` entry for the proposal yet, so restarts,
retries and replayed spikes never apply a change twice. A coordinator that missed the agreement
adopts the bit that f + 1 other coordinators' `decide` entries carry (at least one is correct).

Only GOVERNABLE parameters may be changed by vote; the voting rules themselves stay with operators
(a majority cannot vote itself a different way of counting). Votes are public, like the ledger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..collective import voting
from . import db
from .agree import Agreements
from .economy import MICRO
from .errors import BadMessage, BadSignature, Conflict, Forbidden, LateResult, NetError, UnknownObject
from .store import Store, Tx
from .wire import Signer, b64d, b64e, canonical, hex_digest, key_id_of, now_ms, schema, verify_raw

log = logging.getLogger("wasm_torch.net.governance")
GOV_DOMAIN = b"wasm-torch-net/1 governance\n"
GOVERNABLE = ("replication", "max_replicas", "adaptive_replication", "spot_check_floor", "price_floor",
              "slash_rate", "admission", "join_stake", "min_reputation", "growth_replicas")  # fmt: skip
MAX_CHANGES = 16
MAX_DOC_BYTES = 16 * 1024
MAX_WAIT_FACTOR = 6  # a tally missing entries or documents waits at most this × settle (+ 60 s)

PROPOSAL = {"type": str, "proposer": str, "pubkey": str, "changes": dict, "title": str, "ts": int,
            "nonce": str, "sig": str}  # fmt: skip
VOTE = {"type": str, "proposal": str, "voter": str, "pubkey": str, "choice": str, "ts": int, "sig": str}
ADMISSION = {"type": str, "proposal": dict, "coordinator": str, "snapshot": dict, "deadline_ms": int,
             "rules": dict, "ts": int, "sig": str}  # fmt: skip
RULES = {"rule": str, "temperature_micro": int, "quorum_ppm": int, "threshold_ppm": int, "min_stake": int}


# ---- documents ---------------------------------------------------------------------------------------
def sign_doc(signer: Signer, body: Mapping[str, Any]) -> dict[str, Any]:
    body = dict(body)
    return {**body, "sig": b64e(signer.sign(GOV_DOMAIN + canonical(body)))}


def doc_hash(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(dict(doc))).hexdigest()


def _verify(doc: Mapping[str, Any], pub: bytes, what: str) -> None:
    body = {k: v for k, v in doc.items() if k != "sig"}
    if not verify_raw(pub, b64d(doc["sig"], f"{what} sig", 64), GOV_DOMAIN + canonical(body)):
        raise BadSignature(f"the signature on this {what} does not verify: forged or altered")


def _self_signed(doc: Any, fields: dict[str, Any], what: str, id_field: str) -> dict[str, Any]:
    schema(doc, fields, what)
    if doc["type"] != what:
        raise BadMessage(f"expected a {what} document, got type {doc['type']!r}")
    raw = b64d(doc["pubkey"], f"{what} pubkey", 32)
    if len(raw) != 32 or key_id_of(raw) != doc[id_field]:
        raise BadSignature(f"the {what}'s pubkey is not the key of {doc[id_field]}")
    _verify(doc, raw, what)
    return doc


def _bounded(doc: Any, what: str) -> None:
    if not isinstance(doc, dict) or len(canonical(doc)) > MAX_DOC_BYTES:
        raise BadMessage(f"a {what} document is a JSON object of at most {MAX_DOC_BYTES:,} bytes")


def check_proposal(doc: Any) -> dict[str, Any]:
    doc = _self_signed(doc, PROPOSAL, "proposal", "proposer")
    ch = doc["changes"]
    if not ch or len(ch) > MAX_CHANGES:
        raise BadMessage(f"a proposal changes between 1 and {MAX_CHANGES} parameters")
    bad = sorted(set(ch) - set(GOVERNABLE))
    if bad:
        raise BadMessage(f"parameters {bad} cannot be changed by vote; governable: {list(GOVERNABLE)}")
    if len(doc["title"]) > 200 or len(doc["nonce"]) < 16:
        raise BadMessage("a proposal title is at most 200 characters and its nonce at least 16")
    return doc


def check_vote(doc: Any) -> dict[str, Any]:
    doc = _self_signed(doc, VOTE, "vote", "voter")
    hex_digest(doc["proposal"], "vote proposal")
    if doc["choice"] not in ("yes", "no"):
        raise BadMessage('a vote choice is "yes" or "no"')
    return doc


def check_admission(doc: Any, coordinator_keys: Mapping[str, bytes]) -> dict[str, Any]:
    schema(doc, ADMISSION, "admission")
    if doc["type"] != "admission":
        raise BadMessage("expected an admission document")
    pub = coordinator_keys.get(doc["coordinator"])
    if pub is None:
        raise Forbidden(f"admission by {doc['coordinator']}, which is not a coordinator of this federation")
    _verify(doc, pub, "admission")
    check_proposal(doc["proposal"])
    schema(doc["rules"], RULES, "admission rules")
    snap = doc["snapshot"]
    if len(snap) > 1000 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in snap.values()):
        raise BadMessage("admission snapshot must map issuers to non-negative sequence numbers")
    return doc


def proposal_doc(signer: Signer, changes: dict[str, Any], title: str = "") -> dict[str, Any]:
    return sign_doc(signer, {"type": "proposal", "proposer": signer.id, "pubkey": b64e(signer.public_raw),
                             "changes": changes, "title": title, "ts": now_ms(), "nonce": os.urandom(16).hex()})  # fmt: skip


def vote_doc(signer: Signer, pid: str, choice: str) -> dict[str, Any]:
    return sign_doc(signer, {"type": "vote", "proposal": pid, "voter": signer.id, "pubkey": b64e(signer.public_raw),
                             "choice": choice, "ts": now_ms()})  # fmt: skip


# ---- state derived from the ledger ---------------------------------------------------------------------
@dataclass
class Proposal:
    pid: str
    proposer: str
    votes: list[tuple[str, int, str, int, str]] = field(default_factory=list)  # (issuer, seq, doc, ts, voter)
    decides: dict[str, int] = field(default_factory=dict)  # coordinator -> bit


class Governance:
    def __init__(self, store: Store, agreements: Agreements) -> None:
        self.store, self.agree = store, agreements
        self.me = store.signer.id
        self.docs: dict[str, dict[str, Any]] = {}
        self.proposals: dict[str, Proposal] = {}
        self.executed: dict[str, int] = {}
        self.notes: dict[str, str] = {}
        self._scanned: dict[str, int] = {}
        self._stakes: dict[str, dict[str, int]] = {}
        self._valid_votes: dict[str, dict[str, Any] | None] = {}
        with store.engine.connect() as conn:
            for h, body in conn.execute(sa.select(db.gov_docs.c.hash, db.gov_docs.c.body)).all():
                self.docs[h] = json.loads(body)
        with store.lock:
            self.refresh()

    # ---- reading the ledger --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Fold gov entries added since the last call (caller holds the store lock)."""
        led = self.store.ledger
        if any(led.upto.get(i, 0) < last for i, last in self._scanned.items()):
            # entries were taken back (a transaction that issued them failed): fold everything again
            self.proposals, self._scanned, self._stakes, self._valid_votes = {}, {}, {}, {}
            self.executed = {}
        for issuer, by_seq in led.entries.items():
            last = self._scanned.get(issuer, 0)
            top = led.upto.get(issuer, 0)
            for s in range(last + 1, top + 1):
                e = by_seq.get(s)
                if e is not None and e.kind == "gov":
                    self._fold(e.issuer, e.seq, e.account, e.ref, e.evidence, e.ts)
            self._scanned[issuer] = max(last, top)

    def _fold(self, issuer: str, seq: int, account: str, ref: str, evidence: str, ts: int) -> None:
        parts = ref.split(":")
        if len(parts) < 2 or len(parts[1]) != 64:
            return
        kind, pid = parts[0], parts[1]
        if kind == "proposal" and evidence == pid:
            self.proposals.setdefault(pid, Proposal(pid, account)).proposer = account
        elif kind == "vote":
            self.proposals.setdefault(pid, Proposal(pid, ""))
            self.proposals[pid].votes.append((issuer, seq, evidence, ts, account))
        elif kind == "decide" and len(parts) == 3 and parts[2] in ("0", "1") and account == issuer:
            p = self.proposals.setdefault(pid, Proposal(pid, ""))
            p.decides.setdefault(issuer, int(parts[2]))
            if issuer == self.me:
                self.executed.setdefault(pid, int(parts[2]))

    def admission(self, pid: str) -> dict[str, Any] | None:
        d = self.docs.get(pid)
        return d if d is not None and d.get("type") == "admission" else None

    def stakes_at(self, pid: str, snapshot: Mapping[str, int]) -> dict[str, int] | None:
        """Stake per account within the snapshot prefix (micro-credits); None while a prefix is missing."""
        if pid in self._stakes:
            return self._stakes[pid]
        led = self.store.ledger
        if any(led.upto.get(i, 0) < s for i, s in snapshot.items()):
            return None
        out: dict[str, int] = {}
        for issuer, upto in snapshot.items():
            by_seq, rejected = led.entries.get(issuer, {}), led.rejected.get(issuer, set())
            for s in range(1, upto + 1):
                e = by_seq.get(s)
                if e is None or s in rejected or e.kind not in ("stake", "unstake", "slash"):
                    continue
                out[e.account] = out.get(e.account, 0) + (e.amount if e.kind == "stake" else -e.amount)
        self._stakes[pid] = out
        return out

    def _vote(self, h: str, pid: str, voter: str) -> dict[str, Any] | None:
        if h not in self._valid_votes:
            doc = self.docs.get(h)
            if doc is None:
                return None  # not fetched yet: not cached, try again later
            try:
                check_vote(doc)
                ok = doc["proposal"] == pid and doc["voter"] == voter
            except NetError:  # malformed or forged: never counted
                ok = False
            self._valid_votes[h] = doc if ok else None
        return self._valid_votes[h]

    def tally(self, pid: str) -> dict[str, Any] | None:
        """The local tally, or None while the admission, a snapshot prefix or a vote document is missing."""
        adm, p = self.admission(pid), self.proposals.get(pid)
        if adm is None or p is None:
            return None
        stakes = self.stakes_at(pid, adm["snapshot"])
        if stakes is None:
            return None
        r = adm["rules"]
        electorate = {a: s / MICRO for a, s in stakes.items() if s >= max(1, r["min_stake"])}
        choices: dict[str, set[bool]] = {}
        missing = 0
        for _issuer, _seq, h, ts, voter in p.votes:
            if ts > adm["deadline_ms"]:
                continue
            if h not in self.docs:
                missing += 1
                continue
            doc = self._vote(h, pid, voter)
            if doc is not None:
                choices.setdefault(voter, set()).add(doc["choice"] == "yes")
        t = voting.tally(electorate, choices, r["rule"], r["temperature_micro"] / MICRO,
                         r["quorum_ppm"] / 1e6, r["threshold_ppm"] / 1e6)  # fmt: skip
        return {"accepted": t.accepted, "turnout": t.turnout, "yes": t.yes, "no": t.no, "voters": t.voters,
                "void": t.void, "electorate": len(electorate), "reason": t.reason, "missing_docs": missing}  # fmt: skip

    # ---- intake (inside a Store transaction, under the writer lock) -----------------------------------
    def _store_doc(self, tx: Tx, h: str, kind: str, doc: dict[str, Any]) -> None:
        if not tx.conn.execute(sa.select(db.gov_docs.c.hash).where(db.gov_docs.c.hash == h)).first():
            tx.conn.execute(db.gov_docs.insert().values(hash=h, kind=kind, body=canonical(doc).decode(),
                                                        created_ms=now_ms()))  # fmt: skip
        self.docs[h] = doc

    def _stake_now(self, account: str) -> int:
        return self.store.ledger.account(account).staked()

    def propose(self, tx: Tx, sender: str, doc: Any) -> dict[str, Any]:
        _bounded(doc, "proposal")
        doc = check_proposal(doc)
        if doc["proposer"] != sender:
            raise BadSignature("the proposal is signed by another key than the message")
        prm = tx.params
        prm.updated(doc["changes"])  # every value valid here, or a 400 naming it
        if abs(now_ms() - doc["ts"]) > prm.clock_skew_s * 1000:
            raise Conflict("the proposal's timestamp is too far from the coordinator's clock")
        staked = self._stake_now(sender)
        if staked < max(1, prm.join_stake):
            raise Forbidden(f"{sender} holds {staked} micro-credits of stake; proposing needs {max(1, prm.join_stake)}")
        self.refresh()
        h = doc_hash(doc)
        for pid in self.proposals:
            adm = self.admission(pid)
            if adm is not None and doc_hash(adm["proposal"]) == h:
                raise Conflict(f"this proposal was already admitted as {pid}")
        t = now_ms()
        rules = {"rule": prm.vote_rule, "temperature_micro": int(prm.vote_temperature * MICRO),
                 "quorum_ppm": round(prm.vote_quorum * 1e6), "threshold_ppm": round(prm.vote_threshold * 1e6),
                 "min_stake": max(1, prm.join_stake)}  # fmt: skip
        adm = sign_doc(self.store.signer, {
            "type": "admission", "proposal": doc, "coordinator": self.me,
            "snapshot": dict(sorted(self.store.ledger.upto.items())), "deadline_ms": t + int(prm.vote_period_s * 1000),
            "rules": rules, "ts": t,
        })  # fmt: skip
        pid = doc_hash(adm)
        self._store_doc(tx, pid, "proposal", adm)
        tx.issue("gov", sender, 1, f"proposal:{pid}", evidence=pid)  # folded by the next refresh, once committed
        return {"proposal": pid, "deadline_ms": adm["deadline_ms"], "rules": rules, "changes": doc["changes"]}

    def vote(self, tx: Tx, sender: str, doc: Any) -> dict[str, Any]:
        _bounded(doc, "vote")
        doc = check_vote(doc)
        if doc["voter"] != sender:
            raise BadSignature("the vote is signed by another key than the message")
        self.refresh()
        pid = doc["proposal"]
        adm = self.admission(pid)
        if adm is None:
            raise UnknownObject(f"unknown proposal {pid[:16]}… (not admitted here, or not gossiped here yet)")
        if now_ms() > adm["deadline_ms"]:
            raise LateResult(f"voting on {pid[:16]}… closed at {adm['deadline_ms']} ms; this vote is too late")
        p = self.proposals[pid]
        if any(voter == sender for *_, voter in p.votes):
            raise Conflict(f"{sender} has already voted on {pid[:16]}…: one vote per member (a second one is refused)")
        stakes = self.stakes_at(pid, adm["snapshot"])
        if stakes is not None and stakes.get(sender, 0) < adm["rules"]["min_stake"]:
            raise Forbidden(
                f"{sender} held {stakes.get(sender, 0)} micro-credits of stake at the proposal's snapshot; voting "
                f"needs {adm['rules']['min_stake']} (stake added later does not count)"
            )
        h = doc_hash(doc)
        self._store_doc(tx, h, "vote", doc)
        tx.issue("gov", sender, 1, f"vote:{pid}", evidence=h)
        return {"proposal": pid, "vote": h, "choice": doc["choice"]}

    # ---- deciding and executing ------------------------------------------------------------------------
    def tick(self) -> list[tuple[str, int]]:
        """Start agreement on proposals past deadline + settle; execute decisions. Returns executions."""
        done = []
        with self.store.lock:
            self.refresh()
            pids = [p for p in self.proposals if p not in self.executed]
        prm = self.store.params
        members = set(self.agree.members)
        for pid in pids:
            p = self.proposals[pid]
            for bit in (0, 1):
                backers = {c for c, b in p.decides.items() if b == bit and c in members and c != self.me}
                if len(backers) >= self.agree.f + 1:
                    if self.execute(pid, bit, "adopted from the decide entries of f + 1 coordinators"):
                        done.append((pid, bit))
                    break
            if pid in self.executed:
                continue
            adm = self.admission(pid)
            if adm is None:
                continue
            due = adm["deadline_ms"] + int(prm.vote_settle_s * 1000)
            t = now_ms()
            if t < due:
                continue
            if not self.agree.started(pid):
                with self.store.lock:
                    tl = self.tally(pid)
                late = t > due + MAX_WAIT_FACTOR * int(prm.vote_settle_s * 1000) + 60_000
                if tl is None and not late:
                    continue  # waiting for gossip (entries in the snapshot, the admission)
                if tl is not None and tl["missing_docs"] and not late:
                    continue  # waiting for vote documents
                bit = int(bool(tl and tl["accepted"]))
                self.notes[pid] = "incomplete tally: voted reject" if tl is None else tl["reason"]
                self.agree.start(pid, bit)
            d = self.agree.decided(pid)
            if d is not None and self.execute(pid, d, "agreement"):
                done.append((pid, d))
        return done

    def execute(self, pid: str, bit: int, how: str) -> bool:
        """Record the decision and (accepted) apply the change — once: False if already done here."""
        new = None
        with self.store.tx() as tx:
            self.refresh()
            if pid in self.executed:
                return False
            adm = self.admission(pid)
            note = how
            if bit and adm is not None:
                try:
                    new = tx.params.updated(adm["proposal"]["changes"])
                except BadMessage as e:  # valid at admission, not against this coordinator's record now
                    note = f"{how}; accepted but not applicable here: {e}"
            elif bit:
                note = f"{how}; accepted but the admission document never arrived: nothing to apply"
            tx.issue("gov", self.me, 1, f"decide:{pid}:{bit}", evidence=pid)
            version = self.store.save_params(tx.conn, new) if new is not None else None
        if new is not None and version is not None:
            self.store.params, self.store.params_version = new, version
        self.executed[pid] = bit
        self.notes[pid] = note
        log.info("proposal %s… %s (%s)", pid[:16], "accepted" if bit else "rejected", note)
        return True

    # ---- documents from peers --------------------------------------------------------------------------
    def missing_docs(self, limit: int = 100) -> list[str]:
        with self.store.lock:
            self.refresh()
            want = []
            for pid, p in self.proposals.items():
                if pid not in self.docs:
                    want.append(pid)
                want.extend(h for _issuer, _seq, h, _ts, _voter in p.votes if h not in self.docs)
            return want[:limit]

    def accept_doc(self, h: str, doc: Any) -> bool:
        """A document fetched from a peer: stored only if it hashes to `h` and its signatures verify."""
        if not isinstance(doc, dict) or doc_hash(doc) != h:
            return False
        try:
            if doc.get("type") == "admission":
                check_admission(doc, self.store.ledger.keys)
                kind = "proposal"
            else:
                check_vote(doc)
                kind = "vote"
        except NetError:  # malformed, forged, or admitted by a stranger: not stored
            return False
        with self.store.tx() as tx:
            self._store_doc(tx, h, kind, doc)
        return True

    def sync_docs(self, http: Any) -> int:
        """Fetch the documents our gov entries reference and we lack, from one peer (gossip hook)."""
        got = 0
        for h in self.missing_docs():
            try:
                doc = http.get(f"/v1/gov/doc/{h}")
            except Exception:  # the peer may lack it too: another peer will have it
                continue
            got += self.accept_doc(h, doc)
        return got

    # ---- status ----------------------------------------------------------------------------------------
    def summary(self, pid: str) -> dict[str, Any]:
        with self.store.lock:
            self.refresh()
            adm, p = self.admission(pid), self.proposals.get(pid)
            if p is None:
                raise UnknownObject(f"unknown proposal {pid[:16]}…")
            tl = self.tally(pid)
        prop = adm["proposal"] if adm else {}
        return {
            "proposal": pid, "proposer": p.proposer, "title": prop.get("title"), "changes": prop.get("changes"),
            "deadline_ms": adm["deadline_ms"] if adm else None, "rules": adm["rules"] if adm else None,
            "votes": len(p.votes), "tally": tl, "agreement": self.agree.state(pid), "decides": dict(p.decides),
            "executed": self.executed.get(pid), "note": self.notes.get(pid, ""),
        }  # fmt: skip

    def list(self) -> list[dict[str, Any]]:
        with self.store.lock:
            self.refresh()
            pids = list(self.proposals)
        return [self.summary(p) for p in pids]
