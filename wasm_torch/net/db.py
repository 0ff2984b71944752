"""The coordinator's tables (SQLAlchemy Core) and engines for SQLite and PostgreSQL.

One coordinator process owns one database. SQLite (the default) runs in WAL mode with
synchronous=FULL, so a commit is on disk before the HTTP answer that acknowledges it: kill -9 loses
nothing acknowledged. PostgreSQL is used when the URL says so (`postgresql://user@host:port/db`;
the psycopg 3 driver is selected automatically). All writes go through Store's one writer lock, so
both engines see the same serial order of decisions.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .errors import BadMessage

metadata = sa.MetaData()
Blob, Big, Txt = sa.LargeBinary, sa.BigInteger, sa.Text

meta = sa.Table("meta", metadata, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", Txt))

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("pubkey", sa.String(64), nullable=False),  # base64 raw Ed25519
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # python | browser
    sa.Column("created_ms", Big, nullable=False),
    sa.Column("last_seen_ms", Big, nullable=False),
    sa.Column("last_heartbeat_ms", Big, nullable=False, default=0),
    sa.Column("reputation", sa.Float, nullable=False),
    sa.Column("streak", sa.Integer, nullable=False, default=0),  # clean results in a row
    sa.Column("valid", sa.Integer, nullable=False, default=0),
    sa.Column("invalid", sa.Integer, nullable=False, default=0),
    sa.Column("timeouts", sa.Integer, nullable=False, default=0),
    sa.Column("offences", sa.Integer, nullable=False, default=0),  # attributable protocol errors
    sa.Column("work_units", Big, nullable=False, default=0),
    sa.Column("uptime_s", sa.Float, nullable=False, default=0.0),
    sa.Column("uptime_pending", Big, nullable=False, default=0),  # micro-credits not yet issued
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("sha", sa.String(64), primary_key=True),  # sha256 of manifest.json (pins every file)
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("nbytes", Big, nullable=False),
    sa.Column("created_ms", Big, nullable=False),
)

artifact_files = sa.Table(  # manifest.json, signature.json and every file the manifest lists
    "artifact_files",
    metadata,
    sa.Column("sha", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("data", Blob, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("artifact", sa.String(64), nullable=False),
    sa.Column("variant", sa.String(32), nullable=False),
    sa.Column("priority", sa.Boolean, nullable=False),
    sa.Column("price", Big, nullable=False),  # micro-credits per MFLOP, quoted at submission
    sa.Column("reserved", Big, nullable=False),
    sa.Column("storage", Big, nullable=False),
    sa.Column("spent", Big, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),  # running | done
    sa.Column("n_tasks", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("created_ms", Big, nullable=False),
    sa.Column("finished_ms", Big),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("job", sa.String(64), nullable=False, index=True),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("inputs", Blob, nullable=False),  # JSON tensor bundle
    sa.Column("syms", Txt, nullable=False),
    sa.Column("units", Big, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # open | done | failed
    sa.Column("needed", sa.Integer, nullable=False),  # replicas wanted now
    sa.Column("active", sa.Integer, nullable=False, default=0),  # replicas running or submitted
    sa.Column("canonical", sa.String(64)),
    sa.Column("outputs", Blob),
    sa.Column("created_ms", Big, nullable=False),
    sa.Column("done_ms", Big, index=True),
)

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("task", sa.String(64), nullable=False, index=True),
    sa.Column("node", sa.String(64), nullable=False, index=True),
    sa.Column("leased_ms", Big, nullable=False),
    sa.Column("deadline_ms", Big, nullable=False),
    # running | submitted | expired | failed | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("hash", sa.String(64)),
    sa.Column("envelope", Txt),  # the signed result message, kept as evidence
    sa.Column("outputs", Blob),
    sa.Column("submitted_ms", Big),
    sa.Column("verdict", sa.String(16)),  # canonical | wrong | inconclusive
    sa.Index("assignments_task_node", "task", "node"),
    sa.Index("assignments_status_deadline", "status", "deadline_ms"),
)

nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("sender", sa.String(64), primary_key=True),
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("ts", Big, nullable=False, index=True),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("issuer", sa.String(64), primary_key=True),
    sa.Column("seq", Big, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("body", Txt, nullable=False),  # canonical JSON incl. signature
)

evidence = sa.Table(
    "evidence",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("body", Txt, nullable=False),
    sa.Column("created_ms", Big, nullable=False),
)

gov_docs = sa.Table(  # signed governance documents (proposals as admitted, votes), by sha256 (governance.py)
    "gov_docs",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # proposal | vote
    sa.Column("body", Txt, nullable=False),  # canonical JSON incl. signatures
    sa.Column("created_ms", Big, nullable=False),
)

share_keys = sa.Table(  # nodes' ML-KEM-768 keys for private pattern sharing (share.py)
    "share_keys",
    metadata,
    sa.Column("node", sa.String(64), primary_key=True),
    sa.Column("kem", Txt, nullable=False),  # base64 ML-KEM-768 encapsulation key
    sa.Column("sig", sa.String(128), nullable=False),  # the node's Ed25519 signature over it
    sa.Column("ts", Big, nullable=False),
)

share_boxes = sa.Table(  # sealed boxes waiting for their recipient (the coordinator cannot open them)
    "share_boxes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # sha256 of the box
    sa.Column("recipient", sa.String(64), nullable=False, index=True),
    sa.Column("sender", sa.String(64), nullable=False),
    sa.Column("box", Txt, nullable=False),
    sa.Column("created_ms", Big, nullable=False, index=True),
)


def normalise_url(url: str) -> str:
    """'coord.db' / 'sqlite:///coord.db' / 'postgresql://…' -> a SQLAlchemy URL with our drivers."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    scheme = url.split("://", 1)[0]
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if scheme in ("postgresql+psycopg", "sqlite"):
        return url
    raise BadMessage(f"unsupported database URL scheme {scheme!r}: use a file path, sqlite:///FILE or postgresql://…")


def connect(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        eng = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # a commit is durable before we acknowledge it
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    else:
        eng = sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    metadata.create_all(eng)
    return eng
