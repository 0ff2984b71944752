"""The coordinator's state: database, in-memory ledger, parameters, and the one writer lock.

Every decision runs inside `Store.tx()`: the writer lock is held, one database transaction is open,
and ledger entries issued with `Tx.issue` are checked against the in-memory ledger, signed, inserted
in that same transaction and applied in memory. The HTTP answer is sent only after the commit, so an
acknowledged result and the credit it earned are both on disk or neither is. If the transaction
fails, the entries it issued are taken out of memory again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import db
from .economy import REPUTATION_START, reputation_after_fault, reputation_after_success
from .errors import BadEntry, Conflict, UnknownObject
from .ledger import Entry, Ledger, sign_entry
from .merkle import MerkleLog
from .params import NetworkParams
from .wire import Signer, canonical, now_ms


class Store:
    def __init__(self, url: str, signer: Signer, peer_keys: Mapping[str, bytes] | None = None) -> None:
        self.url = url
        self.engine = db.connect(url)
        self.signer = signer
        self.lock = threading.RLock()
        self.ledger = Ledger({**(peer_keys or {}), signer.id: signer.public_raw})
        with self.engine.begin() as conn:
            owner = self._meta(conn, "coordinator")
            if owner is None:
                self._set_meta(conn, "coordinator", signer.id)
            elif owner != signer.id:
                raise Conflict(
                    f"this database belongs to coordinator {owner}; start it with that coordinator's key "
                    f"(you gave {signer.id}) or use another database"
                )
            raw = self._meta(conn, "params")
            self.params = NetworkParams.from_json(json.loads(raw)) if raw else NetworkParams()
            self.params_version = int(self._meta(conn, "params_version") or 0)
            if raw is None:
                self._save_params(conn, self.params, 0)
            rows = conn.execute(sa.select(db.ledger.c.body)).all()
        for (body,) in rows:  # our own database: trusted, so not re-verified (gossip intake is)
            self.ledger.add(Entry.from_json(json.loads(body)), verify=False)

    # ---- meta and parameters ------------------------------------------------------------------
    @staticmethod
    def _meta(conn: Connection, key: str) -> str | None:
        return conn.execute(sa.select(db.meta.c.value).where(db.meta.c.key == key)).scalar()

    @staticmethod
    def _set_meta(conn: Connection, key: str, value: str) -> None:
        if conn.execute(sa.select(db.meta.c.key).where(db.meta.c.key == key)).first():
            conn.execute(db.meta.update().where(db.meta.c.key == key).values(value=value))
        else:
            conn.execute(db.meta.insert().values(key=key, value=value))

    def _save_params(self, conn: Connection, params: NetworkParams, version: int) -> None:
        self._set_meta(conn, "params", json.dumps(params.to_json(), sort_keys=True))
        self._set_meta(conn, "params_version", str(version))

    def save_params(self, conn: Connection, params: NetworkParams) -> int:
        """Store `params` as the next version inside an open transaction; returns that version. The
        caller installs it (`self.params, self.params_version = ...`) after the commit."""
        version = self.params_version + 1
        self._save_params(conn, params, version)
        return version

    def set_params(self, changes: dict[str, Any]) -> NetworkParams:
        """Validate and store new network parameters (one record, versioned)."""
        with self.tx() as tx:
            new = self.params.updated(changes)
            self._save_params(tx.conn, new, self.params_version + 1)
        self.params, self.params_version = new, self.params_version + 1
        return new

    # ---- transactions -------------------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[Tx]:
        with self.lock:
            issued: list[Entry] = []
            try:
                with self.engine.begin() as conn:
                    yield Tx(self, conn, issued)
            except BaseException:
                if issued:
                    self._forget(issued)
                raise

    def _forget(self, entries: Sequence[Entry]) -> None:
        led = self.ledger
        for e in entries:
            led.entries[e.issuer].pop(e.seq, None)
        for issuer in {e.issuer for e in entries}:
            tree = led.trees[issuer] = MerkleLog()
            for s in sorted(led.entries[issuer]):
                tree.put(s, led.entries[issuer][s].hash)
        led._rebuild()

    # ---- gossip intake ------------------------------------------------------------------------
    def merge_entries(self, entries: Sequence[Entry]) -> int:
        """Verify and persist entries from a peer; returns how many changed our ledger.
        Signatures are checked outside the writer lock (pure CPU); deciding and writing inside it."""
        led = self.ledger
        for e in entries:
            if e.issuer == self.signer.id:
                old = led.entries.get(e.issuer, {}).get(e.seq)
                if old is None or old.hash != e.hash:
                    raise BadEntry(f"a peer sent an entry in our own name ({e.issuer}#{e.seq}) we never issued")
            elif self._is_new(e):
                led.verify(e)
        with self.lock:
            fresh = [e for e in entries if e.issuer != self.signer.id and self._is_new(e)]
            for e in entries:  # equivocations that lose (larger hash) are only recorded
                old = led.entries.get(e.issuer, {}).get(e.seq)
                if old is not None and old.hash != e.hash and e not in fresh:
                    led.equivocations.append((e.issuer, e.seq))
            if not fresh:
                return 0
            with self.engine.begin() as conn:
                for e in fresh:
                    row = {"issuer": e.issuer, "seq": e.seq, "hash": e.hex, "body": canonical(e.to_json()).decode()}
                    key = (db.ledger.c.issuer == e.issuer) & (db.ledger.c.seq == e.seq)
                    if conn.execute(sa.select(db.ledger.c.seq).where(key)).first():
                        conn.execute(db.ledger.update().where(key).values(**row))
                    else:
                        conn.execute(db.ledger.insert().values(**row))
            return sum(led.add(e, verify=False) for e in fresh)

    def _is_new(self, e: Entry) -> bool:
        old = self.ledger.entries.get(e.issuer, {}).get(e.seq)
        return old is None or e.hash < old.hash


class Tx:
    """One open transaction under the writer lock."""

    def __init__(self, store: Store, conn: Connection, issued: list[Entry]) -> None:
        self.store, self.conn, self.issued = store, conn, issued

    @property
    def params(self) -> NetworkParams:
        return self.store.params

    def issue(self, kind: str, account: str, amount: int, ref: str = "", evidence: str = "") -> Entry:
        """Check, sign, persist (in this transaction) and apply one ledger entry of ours."""
        st = self.store
        led, me = st.ledger, st.signer
        led.check(kind, me.id, account, amount, ref)
        e = sign_entry(me, led.next_seq(me.id), kind, account, amount, ref, now_ms(), evidence)
        self.conn.execute(
            db.ledger.insert().values(issuer=e.issuer, seq=e.seq, hash=e.hex, body=canonical(e.to_json()).decode())
        )
        led.add(e, verify=False)
        self.issued.append(e)
        return e

    def use_nonce(self, sender: str, nonce: str, ts: int) -> None:
        c = db.nonces.c
        if self.conn.execute(sa.select(c.ts).where((c.sender == sender) & (c.nonce == nonce))).first():
            raise Conflict(f"replayed message: nonce {nonce[:16]}… from {sender} was already used")
        self.conn.execute(db.nonces.insert().values(sender=sender, nonce=nonce, ts=ts))

    # ---- nodes --------------------------------------------------------------------------------
    def node(self, node_id: str) -> sa.Row[Any]:
        row = self.conn.execute(sa.select(db.nodes).where(db.nodes.c.id == node_id)).first()
        if row is None:
            raise UnknownObject(f"unknown node {node_id}: register first (POST /v1/nodes/register)")
        return row

    def update_node(self, node_id: str, **values: Any) -> None:
        self.conn.execute(db.nodes.update().where(db.nodes.c.id == node_id).values(**values))

    def reward(self, node_id: str, units: int) -> None:
        n = self.node(node_id)
        self.update_node(
            node_id,
            reputation=reputation_after_success(n.reputation),
            streak=n.streak + 1,
            valid=n.valid + 1,
            work_units=n.work_units + units,
        )

    def penalize(self, node_id: str, offence: str) -> None:
        n = self.node(node_id)
        values: dict[str, Any] = {"reputation": reputation_after_fault(n.reputation, offence), "streak": 0}
        if offence == "wrong":
            values["invalid"] = n.invalid + 1
        elif offence == "timeout":
            values["timeouts"] = n.timeouts + 1
        else:
            values["offences"] = n.offences + 1
        self.update_node(node_id, **values)

    def new_node(self, node_id: str, pubkey: str, name: str, kind: str) -> None:
        t = now_ms()
        self.conn.execute(
            db.nodes.insert().values(
                id=node_id, pubkey=pubkey, name=name, kind=kind, created_ms=t, last_seen_ms=t,
                last_heartbeat_ms=0, reputation=REPUTATION_START, streak=0, valid=0, invalid=0,
                timeouts=0, offences=0, work_units=0, uptime_s=0.0, uptime_pending=0,
            )
        )  # fmt: skip
