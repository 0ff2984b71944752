"""The coordinator's side of private pattern sharing: a mailbox for sealed boxes it cannot open.

Nodes publish their ML-KEM-768 key (signed by their node key, checked here and again by every
sender), send boxes to each other, and fetch their own inbox; a box is deleted only once its
recipient acknowledges it (so a lost answer loses nothing). Bounds: a box is at most 256 KB, an inbox
holds at most INBOX_MAX boxes, one node may have at most one box pending per recipient per
SEND_EVERY_S, and boxes expire after a day. The protocol and the cryptography are in share.py.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from . import db
from .errors import BadMessage, BadSignature, Conflict, SlowDown, UnknownObject
from .share import KEM_PUBLIC_BYTES, MAX_BOX_BYTES, SHARE_KEY_DOMAIN
from .store import Store, Tx
from .wire import Envelope, b64d, now_ms, verify_raw

INBOX_MAX = 100
INBOX_PAGE = 16
SEND_EVERY_S = 60.0
BOX_TTL_MS = 24 * 3600 * 1000
LIST_MAX = 1000


def put_key(tx: Tx, env: Envelope) -> dict[str, Any]:
    node = tx.node(env.sender)
    kem = b64d(env.payload["kem"], "kem", KEM_PUBLIC_BYTES)
    if len(kem) != KEM_PUBLIC_BYTES:
        raise BadMessage(f"an ML-KEM-768 encapsulation key is {KEM_PUBLIC_BYTES} bytes, got {len(kem)}")
    sig = b64d(env.payload["sig"], "sig", 64)
    if not verify_raw(b64d(node.pubkey, "stored pubkey"), sig, SHARE_KEY_DOMAIN + kem):
        raise BadSignature("the ML-KEM key is not signed by this node's key", offence="malformed")
    c = db.share_keys.c
    row = {"kem": env.payload["kem"], "sig": env.payload["sig"], "ts": now_ms()}
    if tx.conn.execute(sa.select(c.node).where(c.node == env.sender)).first():
        tx.conn.execute(db.share_keys.update().where(c.node == env.sender).values(**row))
    else:
        tx.conn.execute(db.share_keys.insert().values(node=env.sender, **row))
    return {"node": env.sender, "registered": True}


def list_keys(store: Store) -> list[dict[str, Any]]:
    k, n = db.share_keys.c, db.nodes.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(k.node, k.kem, k.sig, n.pubkey).select_from(db.share_keys.join(db.nodes, k.node == n.id))
            .order_by(k.ts.desc()).limit(LIST_MAX)
        ).all()  # fmt: skip
    return [{"node": r.node, "pubkey": r.pubkey, "kem": r.kem, "sig": r.sig} for r in rows]


def send(tx: Tx, env: Envelope) -> dict[str, Any]:
    to, b = env.payload["recipient"], db.share_boxes.c
    if not tx.conn.execute(sa.select(db.share_keys.c.node).where(db.share_keys.c.node == to)).first():
        raise UnknownObject(f"{to} has not published a sharing key here")
    if to == env.sender:
        raise BadMessage("a node does not send pattern boxes to itself")
    box = b64d(env.payload["box"], "box", MAX_BOX_BYTES)
    if len(box) > MAX_BOX_BYTES:
        raise BadMessage(f"a pattern box is at most {MAX_BOX_BYTES:,} bytes")
    t = now_ms()
    recent = tx.conn.execute(
        sa.select(b.id).where((b.sender == env.sender) & (b.recipient == to) & (b.created_ms > t - SEND_EVERY_S * 1000))
    ).first()
    if recent:
        raise SlowDown(f"one box per recipient every {SEND_EVERY_S:.0f} s: {to} still has one from you")
    waiting = tx.conn.execute(sa.select(sa.func.count()).where(b.recipient == to)).scalar()
    if waiting >= INBOX_MAX:
        raise SlowDown(f"the inbox of {to} is full ({INBOX_MAX} boxes); try later")
    bid = hashlib.sha256(box).hexdigest()
    if tx.conn.execute(sa.select(b.id).where(b.id == bid)).first():
        raise Conflict("this box was already delivered to the mailbox")
    tx.conn.execute(db.share_boxes.insert().values(id=bid, recipient=to, sender=env.sender,
                                                   box=env.payload["box"], created_ms=t))  # fmt: skip
    return {"box": bid, "to": to}


def inbox(tx: Tx, env: Envelope) -> dict[str, Any]:
    ack, b = env.payload["ack"], db.share_boxes.c
    if len(ack) > 4 * INBOX_PAGE or not all(isinstance(a, str) and len(a) == 64 for a in ack):
        raise BadMessage(f"ack must be a list of at most {4 * INBOX_PAGE} box ids (64 hex)")
    if ack:
        tx.conn.execute(db.share_boxes.delete().where((b.recipient == env.sender) & b.id.in_(ack)))
    rows = tx.conn.execute(
        sa.select(b.id, b.sender, b.box).where(b.recipient == env.sender).order_by(b.created_ms).limit(INBOX_PAGE)
    ).all()
    return {"boxes": [{"id": r.id, "from": r.sender, "box": r.box} for r in rows]}


def expire(tx: Tx) -> int:
    b = db.share_boxes.c
    return tx.conn.execute(db.share_boxes.delete().where(b.created_ms < now_ms() - BOX_TTL_MS)).rowcount or 0
