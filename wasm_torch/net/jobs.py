"""Coordinator side of artifacts and jobs: intake of signed artifacts, pricing and reserving a job,
splitting it into tasks, progress and the canonical outputs.

An artifact is stored by content hash (sha256 of its manifest.json, which pins the sha256 of every
other file) only after its signature verifies against the coordinator's trusted publisher keys,
its files match the manifest, it has the deterministic build tasks pin, and it records its work
estimate.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from ..artifact import ENCRYPTED_WEIGHTS, MANIFEST, SIGNATURE, Manifest, read_manifest
from ..errors import ArtifactError
from . import db, economy, tensors
from .errors import BadMessage, Forbidden, TooLarge, UnknownObject
from .store import Store, Tx
from .wire import now_ms
from .work import bind_shapes, has_work, output_shapes, pinned_build, work_units

MAX_FILES = 16
OUTPUT_PAGE_BYTES = 16 * 1024 * 1024
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Catalog:
    """Artifacts (with a parsed-manifest cache) and jobs."""

    def __init__(self, store: Store, trusted_publishers: Sequence[Any]) -> None:
        self.store = store
        self.trusted = list(trusted_publishers)
        self._manifests: dict[str, Manifest] = {}
        self._lock = threading.Lock()

    # ---- artifacts ----------------------------------------------------------------------------
    def add_artifact(self, files: dict[str, bytes]) -> dict[str, Any]:
        """Store a signed artifact: manifest.json, signature.json and exactly the files the manifest
        lists (model.wasm, weights.bin, other builds), after checking signature and hashes."""
        p = self.store.params
        if MANIFEST not in files or SIGNATURE not in files:
            raise BadMessage(f"an artifact upload needs {MANIFEST} and {SIGNATURE} (sign it: wasm-torch sign)")
        if len(files) > MAX_FILES or not all(FILE_NAME.match(n) for n in files):
            raise BadMessage(f"an artifact has at most {MAX_FILES} files with plain names")
        total = sum(len(b) for b in files.values())
        if total > p.max_artifact_bytes:
            raise TooLarge(f"artifact of {total:,} bytes is over the {p.max_artifact_bytes:,}-byte limit")
        if not self.trusted:
            raise Forbidden("this coordinator trusts no publisher key: start it with --trust PUBLISHER.pub")
        from ..integrity.signing import verify_artifact

        sha = hashlib.sha256(files[MANIFEST]).hexdigest()
        with tempfile.TemporaryDirectory(prefix="wt-net-upload-") as tmp:
            folder = Path(tmp) / sha  # content-addressed: any release name is accepted, as on nodes
            folder.mkdir()
            for name, data in files.items():
                (folder / name).write_bytes(data)
            try:
                manifest = read_manifest(folder, files[MANIFEST])
                listed = set(manifest.raw["files"])
                if ENCRYPTED_WEIGHTS in files or set(files) != listed | {MANIFEST, SIGNATURE}:
                    raise BadMessage(
                        f"an artifact upload has exactly {MANIFEST}, {SIGNATURE} and the files its manifest lists "
                        f"{sorted(listed)}, weights not encrypted (untrusted nodes cannot hold keys); "
                        f"got {sorted(files)}"
                    )
                verify_artifact(folder, self.trusted)
            except ArtifactError as e:  # unsigned, forged, tampered, malformed
                raise Forbidden(f"artifact refused: {e}".replace(str(folder), "<upload>")) from None
        self._check_runnable(manifest)
        with self.store.tx() as tx:
            if not tx.conn.execute(sa.select(db.artifacts.c.sha).where(db.artifacts.c.sha == sha)).first():
                tx.conn.execute(
                    db.artifacts.insert().values(sha=sha, name=str(manifest.name)[:128], nbytes=total, created_ms=now_ms())
                )
                tx.conn.execute(
                    db.artifact_files.insert(), [{"sha": sha, "name": n, "data": d} for n, d in files.items()]
                )
        return {"sha": sha, "name": manifest.name, "files": sorted(files)}

    def _check_runnable(self, manifest: Manifest) -> None:
        pinned_build(manifest, self.store.params.pinned_variant)
        if not has_work(manifest):
            raise BadMessage("artifact manifest has no work.flops; recompile with a wasm-torch that records it")
        for t in [*manifest.inputs, *manifest.outputs]:
            if t.dtype not in tensors.DTYPES:
                raise BadMessage(f"tensor {t.name!r} has dtype {t.dtype}, which the network does not carry")

    def has_artifact(self, sha: str) -> bool:
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(db.artifacts.c.sha).where(db.artifacts.c.sha == sha)).first() is not None

    def artifact_files(self, sha: str) -> list[str]:
        with self.store.engine.connect() as conn:
            names = conn.execute(sa.select(db.artifact_files.c.name).where(db.artifact_files.c.sha == sha)).scalars()
            return sorted(names)

    def artifact_file(self, sha: str, name: str) -> bytes:
        f = db.artifact_files.c
        with self.store.engine.connect() as conn:
            data = conn.execute(sa.select(f.data).where((f.sha == sha) & (f.name == name))).scalar()
        if data is None:
            raise UnknownObject(f"unknown artifact file {sha[:16]}…/{name[:64]}: upload the artifact first")
        return bytes(data)

    def manifest(self, sha: str) -> Manifest:
        with self._lock:
            m = self._manifests.get(sha)
        if m is None:
            m = read_manifest(sha, self.artifact_file(sha, MANIFEST))
            with self._lock:
                self._manifests[sha] = m
        return m

    # ---- jobs ---------------------------------------------------------------------------------
    def submit_job(self, tx: Tx, owner: str, artifact: str, bundles: list[Any], priority: bool) -> dict[str, Any]:
        p = tx.params
        if not bundles:
            raise BadMessage("a job needs at least one task")
        if len(bundles) > p.max_tasks_per_job:
            raise TooLarge(f"{len(bundles)} tasks is over the {p.max_tasks_per_job}-task limit per job")
        manifest = self.manifest(artifact)
        want = [(s.name, s.dtype) for s in manifest.inputs]
        units, syms_all, blobs, nbytes = [], [], [], 0
        for i, b in enumerate(bundles):
            named = tensors.decode(b, f"task {i} inputs", p.max_task_bytes)
            if [(n, a.dtype.name) for n, a in named] != want:
                got = [(n, a.dtype.name) for n, a in named]
                raise BadMessage(f"task {i}: inputs must be {want} (name, dtype) in this order, got {got}")
            try:
                syms = bind_shapes(manifest, {n: a.shape for n, a in named})
            except BadMessage as e:
                raise BadMessage(f"task {i}: {e}") from None
            out_bytes = sum(
                math.prod(shape) * np.dtype(dt).itemsize
                for _, dt, shape in output_shapes(manifest, syms)
            )
            if out_bytes > p.max_task_bytes:
                raise TooLarge(f"task {i}: outputs of {out_bytes:,} bytes over the {p.max_task_bytes:,}-byte limit")
            nbytes += tensors.nbytes(named) + out_bytes
            units.append(work_units(manifest, syms))
            syms_all.append(syms)
            blobs.append(json.dumps(b, separators=(",", ":")).encode())
        price = self.price(tx)
        storage = economy.storage_cost(nbytes, p.retention_days)
        hold = economy.reservation(units, price, priority, p.max_replicas, storage)
        job_id = "job-" + os.urandom(8).hex()
        ref = f"job:{job_id}"
        tx.issue("reserve", owner, hold, ref)
        if storage:
            tx.issue("spend", owner, storage, ref)
        t = now_ms()
        tx.conn.execute(
            db.jobs.insert().values(
                id=job_id, owner=owner, artifact=artifact, variant=p.pinned_variant, priority=priority,
                price=price, reserved=hold, storage=storage, spent=storage, status="running",
                n_tasks=len(bundles), done=0, failed=0, created_ms=t,
            )
        )  # fmt: skip
        tx.conn.execute(
            db.tasks.insert(),
            [
                {"id": f"{job_id}-{i}", "job": job_id, "idx": i, "inputs": blob, "syms": json.dumps(syms),
                 "units": u, "status": "open", "needed": p.replication, "active": 0, "created_ms": t}
                for i, (blob, syms, u) in enumerate(zip(blobs, syms_all, units, strict=True))
            ],
        )  # fmt: skip
        return {"job": job_id, "tasks": len(bundles), "price": price, "reserved": hold, "storage": storage,
                "work_units": sum(units)}  # fmt: skip

    def price(self, tx: Tx) -> int:
        p = tx.params
        t = db.tasks.c
        demand = tx.conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(t.units * t.needed), 0)).where(t.status == "open")
        ).scalar()
        since = now_ms() - int(p.market_window_s * 1000)
        supply = tx.conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(t.units), 0)).where((t.status == "done") & (t.done_ms > since))
        ).scalar()
        return economy.market_price(int(demand), int(supply), p.price_floor, p.price_ceiling_factor)

    def job_status(self, job_id: str) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            j = conn.execute(sa.select(db.jobs).where(db.jobs.c.id == job_id)).first()
            if j is None:
                raise UnknownObject(f"unknown job {job_id}")
            a, t = db.assignments.c, db.tasks.c
            running = conn.execute(
                sa.select(sa.func.count()).select_from(db.assignments.join(db.tasks, a.task == t.id))
                .where((t.job == job_id) & (a.status == "running"))
            ).scalar()  # fmt: skip
        held = self.store.ledger.reservation(self.store.signer.id, j.owner, f"job:{job_id}")
        return {
            "job": j.id, "status": j.status, "tasks": j.n_tasks, "done": j.done, "failed": j.failed,
            "running": running, "artifact": j.artifact, "variant": j.variant, "priority": j.priority,
            "price": j.price, "spent": j.spent, "reservation_left": held, "created_ms": j.created_ms,
            "finished_ms": j.finished_ms, "now_ms": now_ms(),
        }  # fmt: skip

    def job_outputs(self, job_id: str, start: int, limit: int) -> dict[str, Any]:
        self.job_status(job_id)  # 404 for unknown jobs
        limit = max(1, min(limit, 1000))
        t = db.tasks.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.idx, t.status, t.canonical, t.outputs)
                .where((t.job == job_id) & (t.idx >= start)).order_by(t.idx).limit(limit)
            ).all()  # fmt: skip
        page, size = [], 0
        for r in rows:  # at most OUTPUT_PAGE_BYTES of outputs per answer (always at least one task)
            size += len(r.outputs or b"")
            if page and size > OUTPUT_PAGE_BYTES:
                break
            page.append({"idx": r.idx, "status": r.status, "hash": r.canonical,
                         "outputs": json.loads(r.outputs) if r.outputs else None})  # fmt: skip
        return {"job": job_id, "tasks": page}
