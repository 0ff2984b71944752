"""The coordinator: a FastAPI service in front of Store, Catalog and Scheduler.

    wasm-torch coordinator --db coord.db --port 8700 --key keys/coord.key --trust keys/publisher.pub

Routes (every POST except the artifact upload is a signed envelope, wire.py):

    GET  /                          progress page (jobs, nodes, ledger) refreshing itself
    GET  /node                      the browser node (web/node.html, runs tasks in a Web Worker)
    GET  /v1/info | /v1/status      identity, parameters, trusted publishers | everything on the page
    POST /v1/nodes/register         {pubkey, name, kind, stake}
    POST /v1/nodes/heartbeat        {}                     uptime bonus, current parameters
    POST /v1/nodes/holdings         {holds, rtt_ms, room}  what the node holds; its growth orders (growth.py)
    POST /v1/tasks/lease            {}                     a task, or 204 when there is none
    POST /v1/tasks/result           {assignment, task, hash, units, outputs}
    POST /v1/tasks/fail             {assignment, reason}   the node cannot run it (limits, trust)
    POST /v1/artifacts              {"files": {name: base64}}  signed artifact upload (self-authenticating)
    GET  /v1/artifacts/{sha} | /v1/artifacts/{sha}/{file}   file list | one file
    POST /v1/jobs                   {pubkey, artifact, tasks, priority}
    GET  /v1/jobs/{id} | /v1/jobs/{id}/outputs?start=&limit=
    GET  /v1/ledger/root | /v1/ledger/balance/{account} | /v1/ledger/entries?issuer=&after=&limit=
    POST /v1/ledger/grant | /v1/params   operator messages (coordinator key or --operator-key)
    POST /v1/gossip | /v1/gossip/push    peer coordinators (--peer-key)
    GET  /v1/evidence/{hash}        the signed results behind a slash
    POST /v1/gov/propose | /v1/gov/vote  {doc}  signed proposals and votes (governance.py)
    GET  /v1/gov/proposals[/{pid}] | /v1/gov/doc/{hash}   proposals, tallies, decisions; documents
    POST /v1/agree                  {spikes}  agreement among coordinators (agree.py; peers only)
    POST /v1/share/key | /v1/share/send | /v1/share/inbox, GET /v1/share/keys   the sealed-box
                                    mailbox of private pattern sharing (share.py, mailbox.py)

Errors are {"error": "..."} with the status of errors.py; the request handlers never let an
exception escape as a 500 for anything a client can send.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import NetworkError
from . import db, gossip, mailbox
from .agree import Agreements, parse_spikes
from .errors import (
    BadMessage,
    BadSignature,
    Conflict,
    Forbidden,
    NetError,
    TooLarge,
    UnknownObject,
    status_of,
)
from .governance import Governance
from .growth import parse_report
from .jobs import Catalog
from .scheduler import Scheduler
from .store import Store
from .wire import Envelope, LongStr, b64d, b64e, hex_digest, key_id_of, now_ms, open_envelope, public_from_raw

log = logging.getLogger("wasm_torch.net")
WEB = Path(__file__).resolve().parent / "web"
JS = Path(__file__).resolve().parents[1] / "js"
WEB_FILES = {"node.html", "node.mjs", "node-worker.mjs", "tensors.mjs", "status.html"}
STATUS_NODES = 200
JS_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}\.mjs$")  # the JS runtime's modules (wasm_torch/js)

SCHEMAS: dict[str, dict[str, Any]] = {
    "register": {"pubkey": str, "name": str, "kind": str, "stake": int},
    "heartbeat": {},
    "holdings": {"holds": list, "rtt_ms": dict, "room": int},
    "lease": {},
    "result": {"assignment": str, "task": str, "hash": str, "units": int, "outputs": list},
    "fail": {"assignment": str, "reason": str},
    "job": {"pubkey": str, "artifact": str, "tasks": list, "priority": bool},
    "grant": {"account": str, "amount": int, "note": str},
    "params": {"changes": dict},
    "gossip": {"root": str, "summary": dict},
    "push": {"entries": list},
    "agree": {"spikes": list},
    "gov-propose": {"doc": dict},
    "gov-vote": {"doc": dict},
    "share-key": {"kem": LongStr, "sig": str},
    "share-send": {"recipient": str, "box": LongStr},
    "share-inbox": {"ack": list},
}



class Coordinator:
    """Everything one coordinator process holds."""

    def __init__(
        self,
        store: Store,
        trusted_publishers: Sequence[Any] = (),
        operator_keys: dict[str, bytes] | None = None,
        peers: Sequence[str] = (),
        sweep_s: float = 1.0,
    ) -> None:
        self.store = store
        self.catalog = Catalog(store, trusted_publishers)
        self.scheduler = Scheduler(store, self.catalog)
        self.operators = {store.signer.id: store.signer.public_raw, **(operator_keys or {})}
        self.peer_keys = {k: v for k, v in store.ledger.keys.items() if k != store.signer.id}
        self.gossip = gossip.Gossip(store, store.signer, list(peers))
        self.agreements = Agreements(store.signer.id, list(store.ledger.keys))
        self.governance = Governance(store, self.agreements)
        self.gossip.hooks += [self._exchange_spikes, self._fetch_docs]
        self.sweep_s = sweep_s
        self._stop = threading.Event()
        self.publishers = []
        from ..integrity.signing import key_id, trusted

        for k in trusted(trusted_publishers):
            raw = k.public_bytes_raw()
            self.publishers.append({"key_id": key_id(k), "raw": b64e(raw)})

    @property
    def id(self) -> str:
        return self.store.signer.id

    def start(self) -> None:
        self.gossip.start()
        threading.Thread(target=self._sweeper, name="wasm-torch-sweeper", daemon=True).start()
        threading.Thread(target=self._grower, name="wasm-torch-growth", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.gossip.stop()

    def _sweeper(self) -> None:
        while not self._stop.wait(self.sweep_s):
            try:
                with self.store.tx() as tx:
                    self.scheduler.expire(tx)
                    mailbox.expire(tx)
            except Exception:  # a database hiccup must not kill the sweeper
                log.exception("lease sweep failed")
            try:
                self.governance.tick()
            except Exception:
                log.exception("governance tick failed")

    def _grower(self) -> None:
        """Replan growth every growth_period_s (off the request path: a plan takes up to a few
        hundred ms per hot artifact at 1,000 nodes)."""
        board = self.scheduler.growth
        while not self._stop.wait(min(1.0, self.sweep_s)):
            prm = self.store.params
            if prm.growth_period_s <= 0:
                board.clear()
            elif now_ms() - board.last_plan_ms >= prm.growth_period_s * 1000:
                try:
                    with self.store.engine.connect() as conn:
                        board.replan(conn, prm)
                except Exception:
                    log.exception("growth plan failed")

    # ---- gossip hooks: agreement spikes and governance documents ride on the gossip rounds -----------
    def _exchange_spikes(self, url: str, http: Any, peer: str) -> None:
        out = self.agreements.outgoing()
        got = http.post("/v1/agree", self.store.signer.seal({"type": "agree", "spikes": out}, peer))
        if isinstance(got, dict):
            self.agreements.receive(peer, parse_spikes(got.get("spikes", [])))

    def _fetch_docs(self, url: str, http: Any, peer: str) -> None:
        self.governance.sync_docs(http)

    # ---- authentication -----------------------------------------------------------------------
    def authenticate(self, body: bytes, kind: str, keys: Callable[[Envelope], bytes]) -> Envelope:
        """Parse and verify the signature (raises unattributable errors only)."""
        env = open_envelope(body, self.store.params.max_body_bytes, kind, SCHEMAS[kind])
        if env.payload["to"] != self.id:
            raise BadMessage(f"this message is addressed to coordinator {env.payload['to']}, not {self.id}")
        env.verify(keys(env))
        return env

    def check_clock(self, env: Envelope) -> None:
        skew = abs(now_ms() - env.payload["ts"])
        if skew > self.store.params.clock_skew_s * 1000:
            raise Conflict(
                f"message timestamp is {skew / 1000:.0f} s away from the coordinator's clock "
                f"(limit {self.store.params.clock_skew_s:.0f} s): fix the node's clock",
                offence="replay",
            )

    def self_signed(self, env: Envelope) -> bytes:
        """Key of a message that carries its own public key (registration, jobs)."""
        raw = b64d(env.payload["pubkey"], "pubkey", 32)
        public_from_raw(raw)
        if key_id_of(raw) != env.sender:
            raise BadSignature(f"pubkey does not belong to sender {env.sender}")
        return raw

    def node_key(self, env: Envelope) -> bytes:
        with self.store.engine.connect() as conn:
            pub = conn.execute(sa.select(db.nodes.c.pubkey).where(db.nodes.c.id == env.sender)).scalar()
        if pub is None:
            raise UnknownObject(f"unknown node {env.sender}: register first (POST /v1/nodes/register)")
        return b64d(pub, "stored pubkey")

    def operator_key(self, env: Envelope) -> bytes:
        k = self.operators.get(env.sender)
        if k is None:
            raise Forbidden(f"{env.sender} is not an operator of this coordinator")
        return k

    def doc_key(self, env: Envelope) -> bytes:
        """Key of a governance message: the document's own pubkey, which must be the sender's."""
        doc = env.payload["doc"]
        raw = b64d(doc.get("pubkey"), "document pubkey", 32)
        public_from_raw(raw)
        if key_id_of(raw) != env.sender:
            raise BadSignature(f"the document's pubkey does not belong to sender {env.sender}")
        return raw

    def peer_key(self, env: Envelope) -> bytes:
        k = self.peer_keys.get(env.sender)
        if k is None:
            raise Forbidden(f"{env.sender} is not a known peer coordinator (start with --peer-key)")
        return k

    def handle(self, body: bytes, kind: str, keys: Callable[[Envelope], bytes], action: Callable[..., Any]) -> Any:
        """Authenticate, burn the nonce and act in one transaction; penalise attributable errors."""
        env: Envelope | None = None
        verified = False
        try:
            env = self.authenticate(body, kind, keys)
            verified = True
            self.check_clock(env)
            with self.store.tx() as tx:
                tx.use_nonce(env.sender, env.payload["nonce"], env.payload["ts"])
                return action(tx, env)
        except NetError as e:
            if verified and env is not None and e.offence:
                self.scheduler.penalize(env.sender, e.offence)
            else:
                reason = type(e).__name__
                self.scheduler.rejected[reason] = self.scheduler.rejected.get(reason, 0) + 1
            raise

    # ---- status -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        from ..version import __version__

        return {
            "coordinator": self.id, "pubkey": b64e(self.store.signer.public_raw), "version": __version__,
            "params": self.store.params.to_json(), "params_version": self.store.params_version,
            "publishers": self.publishers, "peers": sorted(self.peer_keys),
        }  # fmt: skip

    def status(self) -> dict[str, Any]:
        led = self.store.ledger
        with self.store.engine.connect() as conn:
            job_ids = conn.execute(sa.select(db.jobs.c.id).order_by(db.jobs.c.created_ms.desc()).limit(20)).scalars()
            job_ids = list(job_ids)
            n_nodes = conn.execute(sa.select(sa.func.count()).select_from(db.nodes)).scalar()
            rows = conn.execute(  # the page shows the nodes seen most recently
                sa.select(db.nodes).order_by(db.nodes.c.last_seen_ms.desc()).limit(STATUS_NODES)
            ).all()
        nodes = []
        for n in rows:
            acct = led.account(n.id)
            nodes.append({
                "id": n.id, "name": n.name, "kind": n.kind, "reputation": round(n.reputation, 4),
                "valid": n.valid, "invalid": n.invalid, "timeouts": n.timeouts, "offences": n.offences,
                "streak": n.streak, "work_units": n.work_units, "earned": acct.earned().value,
                "staked": acct.staked(), "slashed": acct.totals["slash"].value, "last_seen_ms": n.last_seen_ms,
            })  # fmt: skip
        with self.store.lock:
            ledger = {"root": led.root(), "entries": len(led), "issuers": sorted(led.entries),
                      "equivocations": len(led.equivocations)}  # fmt: skip
        return {
            "coordinator": self.id, "now_ms": now_ms(), "params_version": self.store.params_version,
            "jobs": [self.catalog.job_status(j) for j in job_ids], "nodes": nodes, "nodes_total": n_nodes,
            "ledger": ledger,
            "rejected": dict(self.scheduler.rejected), "peers": self.gossip.peer_stats(),
            "heartbeat_order": round(self.scheduler.phases.order(), 4) if self.scheduler.phases else None,
            "growth": self.scheduler.growth.status(),
        }  # fmt: skip


def error(exc: BaseException) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=status_of(exc))


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise TooLarge(f"request body of {declared} bytes is over the {limit:,}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(coord: Coordinator) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        coord.start()
        yield
        coord.stop()

    app = FastAPI(title="wasm-torch coordinator", lifespan=lifespan, docs_url=None, redoc_url=None)
    sched, cat, store = coord.scheduler, coord.catalog, coord.store

    @app.exception_handler(NetworkError)
    async def _net_error(request: Request, exc: NetworkError) -> JSONResponse:
        return error(exc)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    async def envelope_route(request: Request, kind: str, keys: Callable[[Envelope], bytes],
                             action: Callable[..., Any]) -> Any:  # fmt: skip
        body = await read_body(request, store.params.max_body_bytes)
        return await run_in_threadpool(coord.handle, body, kind, keys, action)

    # ---- pages --------------------------------------------------------------------------------
    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(WEB / "status.html", media_type="text/html")

    @app.get("/node")
    async def node_page() -> FileResponse:
        return FileResponse(WEB / "node.html", media_type="text/html")

    @app.get("/web/{name}")
    async def web_file(name: str) -> FileResponse:
        if name not in WEB_FILES:
            raise UnknownObject(f"no such page file {name[:80]!r}")
        return FileResponse(WEB / name, media_type="text/javascript" if name.endswith(".mjs") else "text/html")

    @app.get("/js/{name}")
    async def js_file(name: str) -> FileResponse:
        if not JS_NAME.match(name) or not (JS / name).is_file():
            raise UnknownObject(f"no such runtime file {name[:80]!r}")
        return FileResponse(JS / name, media_type="text/javascript")

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        return coord.info()

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return await run_in_threadpool(coord.status)

    # ---- nodes and tasks ----------------------------------------------------------------------
    @app.post("/v1/nodes/register")
    async def register(request: Request) -> Any:
        return await envelope_route(request, "register", coord.self_signed, sched.register)

    @app.post("/v1/nodes/heartbeat")
    async def heartbeat(request: Request) -> Any:
        return await envelope_route(request, "heartbeat", coord.node_key, lambda tx, env: sched.heartbeat(tx, env.sender))

    @app.post("/v1/nodes/holdings")
    async def holdings(request: Request) -> Any:
        def act(tx: Any, env: Envelope) -> Any:
            return sched.growth.report(env.sender, *parse_report(env.payload), on=tx.params.growth_period_s > 0)

        return await envelope_route(request, "holdings", coord.node_key, act)

    @app.post("/v1/tasks/lease")
    async def lease(request: Request) -> Any:
        got = await envelope_route(request, "lease", coord.node_key, lambda tx, env: sched.lease(tx, env.sender))
        return Response(status_code=204) if got is None else got

    @app.post("/v1/tasks/result")
    async def result(request: Request) -> Any:
        def act(tx: Any, env: Envelope) -> Any:
            try:
                hex_digest(env.payload["hash"], "hash")
            except BadMessage as e:
                raise BadMessage(str(e), offence="malformed") from None
            return sched.submit(tx, env)

        return await envelope_route(request, "result", coord.node_key, act)

    @app.post("/v1/tasks/fail")
    async def fail(request: Request) -> Any:
        return await envelope_route(
            request, "fail", coord.node_key,
            lambda tx, env: sched.fail(tx, env.sender, env.payload["assignment"], env.payload["reason"]),
        )  # fmt: skip

    # ---- artifacts and jobs -------------------------------------------------------------------
    @app.get("/v1/artifacts/{sha}")
    async def artifact_index(sha: str) -> Any:
        names = await run_in_threadpool(cat.artifact_files, sha[:64])
        if not names:
            raise UnknownObject(f"unknown artifact {sha[:16]}…")
        return {"sha": sha, "files": names}

    @app.post("/v1/artifacts")
    async def upload(request: Request) -> Any:
        body = await read_body(request, store.params.max_artifact_bytes * 4 // 3 + 4096)
        from .wire import loads_strict

        doc = loads_strict(body, "artifact upload")
        if not isinstance(doc, dict) or set(doc) != {"files"} or not isinstance(doc["files"], dict):
            raise BadMessage('artifact upload must be {"files": {name: base64}}')
        if len(doc["files"]) > 16:
            raise BadMessage("an artifact has at most 16 files")
        files = {str(k)[:64]: b64d(v, f"file {str(k)[:64]}", store.params.max_artifact_bytes)
                 for k, v in doc["files"].items()}  # fmt: skip
        return await run_in_threadpool(cat.add_artifact, files)

    @app.get("/v1/artifacts/{sha}/{name}")
    async def artifact_file(sha: str, name: str) -> Response:
        data = await run_in_threadpool(cat.artifact_file, sha, name)
        mime = "application/wasm" if name.endswith(".wasm") else "application/octet-stream"
        if name.endswith(".json"):
            mime = "application/json"
        return Response(data, media_type=mime, headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @app.post("/v1/jobs")
    async def jobs(request: Request) -> Any:
        def act(tx: Any, env: Envelope) -> Any:
            p = env.payload
            hex_digest(p["artifact"], "artifact")
            if not cat.has_artifact(p["artifact"]):
                raise UnknownObject(f"unknown artifact {p['artifact'][:16]}…: upload it first (POST /v1/artifacts)")
            return cat.submit_job(tx, env.sender, p["artifact"], p["tasks"], p["priority"])

        return await envelope_route(request, "job", coord.self_signed, act)

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str) -> Any:
        return await run_in_threadpool(cat.job_status, job_id[:80])

    @app.get("/v1/jobs/{job_id}/outputs")
    async def outputs(job_id: str, start: int = 0, limit: int = 100) -> Any:
        return await run_in_threadpool(cat.job_outputs, job_id[:80], max(0, start), limit)

    # ---- ledger -------------------------------------------------------------------------------
    @app.get("/v1/ledger/root")
    async def root() -> Any:
        with store.lock:
            return {"root": store.ledger.root(), "entries": len(store.ledger)}

    @app.get("/v1/ledger/balance/{account}")
    async def balance(account: str) -> Any:
        return {"account": account[:80], **store.ledger.balance(account)}

    @app.get("/v1/ledger/entries")
    async def entries(issuer: str = "", after: int = 0, limit: int = 1000) -> Any:
        issuer = issuer or coord.id
        with store.lock:
            by_seq = store.ledger.entries.get(issuer, {})
            seqs = sorted(s for s in by_seq if s > after)[: max(1, min(limit, 10_000))]
            return {"issuer": issuer, "entries": [by_seq[s].to_json() for s in seqs]}

    @app.post("/v1/ledger/grant")
    async def grant(request: Request) -> Any:
        return await envelope_route(
            request, "grant", coord.operator_key,
            lambda tx, env: sched.mint(tx, env.payload["account"], env.payload["amount"], env.payload["note"]),
        )  # fmt: skip

    @app.post("/v1/params")
    async def params(request: Request) -> Any:
        def act(tx: Any, env: Envelope) -> Any:
            new = tx.params.updated(env.payload["changes"])  # validate before the write below
            return {"params": new.to_json()}

        got = await envelope_route(request, "params", coord.operator_key, act)
        new = await run_in_threadpool(store.set_params, got["params"])
        return {"params": new.to_json(), "params_version": store.params_version}

    @app.post("/v1/gossip")
    async def gossip_route(request: Request) -> Any:
        def act(tx: Any, env: Envelope) -> Any:
            return env.payload["root"], gossip.check_summary(env.payload["summary"])

        root_, summary = await envelope_route(request, "gossip", coord.peer_key, act)
        return await run_in_threadpool(gossip.answer, store, root_, summary)

    @app.post("/v1/gossip/push")
    async def push(request: Request) -> Any:
        def act(tx: Any, env: Envelope) -> Any:
            return gossip.parse_entries(env.payload["entries"], store.params.gossip_batch)

        got = await envelope_route(request, "push", coord.peer_key, act)
        return {"merged": await run_in_threadpool(store.merge_entries, got)}

    # ---- governance, agreement -----------------------------------------------------------------------
    gov = coord.governance

    @app.post("/v1/gov/propose")
    async def propose(request: Request) -> Any:
        return await envelope_route(request, "gov-propose", coord.doc_key,
                                    lambda tx, env: gov.propose(tx, env.sender, env.payload["doc"]))  # fmt: skip

    @app.post("/v1/gov/vote")
    async def vote(request: Request) -> Any:
        return await envelope_route(request, "gov-vote", coord.doc_key,
                                    lambda tx, env: gov.vote(tx, env.sender, env.payload["doc"]))  # fmt: skip

    @app.get("/v1/gov/proposals")
    async def proposals() -> Any:
        return {"proposals": await run_in_threadpool(gov.list)}

    @app.get("/v1/gov/proposals/{pid}")
    async def proposal(pid: str) -> Any:
        return await run_in_threadpool(gov.summary, pid[:64])

    @app.get("/v1/gov/doc/{h}")
    async def gov_doc(h: str) -> Any:
        doc = gov.docs.get(h[:64])
        if doc is None:
            raise UnknownObject(f"no governance document {h[:64]}")
        return doc

    @app.post("/v1/agree")
    async def agree(request: Request) -> Any:
        def act(tx: Any, env: Envelope) -> Any:
            return env.sender, parse_spikes(env.payload["spikes"])

        sender, spikes = await envelope_route(request, "agree", coord.peer_key, act)
        used = await run_in_threadpool(coord.agreements.receive, sender, spikes)
        return {"used": used, "spikes": coord.agreements.outgoing()}

    # ---- private pattern sharing: a mailbox for sealed boxes ---------------------------------------
    @app.post("/v1/share/key")
    async def share_key(request: Request) -> Any:
        return await envelope_route(request, "share-key", coord.node_key, mailbox.put_key)

    @app.get("/v1/share/keys")
    async def share_keys() -> Any:
        return {"keys": await run_in_threadpool(mailbox.list_keys, store)}

    @app.post("/v1/share/send")
    async def share_send(request: Request) -> Any:
        return await envelope_route(request, "share-send", coord.node_key, mailbox.send)

    @app.post("/v1/share/inbox")
    async def share_inbox(request: Request) -> Any:
        return await envelope_route(request, "share-inbox", coord.node_key, mailbox.inbox)

    @app.get("/v1/evidence/{h}")
    async def evidence(h: str) -> Response:
        with store.engine.connect() as conn:
            body = conn.execute(sa.select(db.evidence.c.body).where(db.evidence.c.hash == h[:64])).scalar()
        if body is None:
            raise UnknownObject(f"no evidence {h[:64]}")
        return Response(body, media_type="application/json")

    return app
