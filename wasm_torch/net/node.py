"""A compute node: pull tasks, verify and run the signed module in the sandbox, return signed results.

    wasm-torch node --coordinator http://127.0.0.1:8700 --key keys/node.key --trust keys/publisher.pub

Per task: lease it (a signed request), fetch the artifact by content hash once (manifest.json must
hash to the id the coordinator named; then wasm_torch.load (runtime.load) checks signature.json against the
node's own trusted publisher keys and every file's sha256 before compiling — an unsigned or
tampered module is never run), load exactly the deterministic build the task pins (simd128, one
thread), run it with a memory cap and a deadline, and send outputs + their sha256 + the work units it computed, signed with the node key.

Survives coordinator restarts: every call retries with exponential backoff; a finished result is
re-sent until its lease runs out. Several --coordinator URLs are served round-robin, each with its
own statistics (requests, failures, latency, tasks, refusals) that the node logs and returns.
`--journal FILE` appends one line per acknowledged result (fsync'd): the node's own receipt book.

Phases and choice. Each coordinator's heartbeat answer says how far to move the next heartbeat
(the coordinator spreads its nodes' heartbeats evenly over the period, collective/kuramoto.py); the
node keeps one phase anchor per coordinator and schedules heartbeats and idle polls on that grid.
When several coordinators are ready, it picks by its models of them — latency, availability, and
whether they paid for results they acknowledged (checked every `audit_every` results against the
ledger) — and of itself (its run time against each coordinator's lease): collective/mutual.py.
With `NodeOptions.share`, it also shares its pattern memory privately with other nodes (share.py).

Growth. The node keeps at most `cache_artifacts` artifacts (downloaded, verified, loaded), evicting
the least recently used one that its coordinators did not tell it to keep. After each heartbeat it
reports what it holds and its round-trip time to each coordinator (`/v1/nodes/holdings`) and
follows the orders in the answer: fetch (download, verify and load ahead of the first task), keep
(never evicted while ordered), drop (evicted now). The coordinator plans them (growth.py).

`--fault` injects misbehaviour for tests of the network (never use it for real work): `wrong`
returns altered outputs, `crash-after=N` exits abruptly holding its Nth lease, `slow=S` waits S
seconds before answering.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import MANIFEST, SIGNATURE, Manifest, read_manifest
from ..collective.mutual import Chooser, PeerModel, SelfModel
from ..errors import ArtifactError, ExecutionError, WasmTorchError
from . import tensors
from .cache import ArtifactCache, parse_orders
from .client import Http, Refused
from .errors import BadMessage, Unreachable
from .growth import MAX_HOLDS
from .share import ShareOptions, Sharing
from .wire import Signer, schema
from .work import bind_shapes, pinned_build, work_units

log = logging.getLogger("wasm_torch.net.node")
MAX_TASK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Fault:
    """Test-only misbehaviour (see module docstring)."""

    wrong: bool = False
    crash_after: int | None = None
    slow_s: float = 0.0

    @staticmethod
    def parse(specs: list[str]) -> Fault:
        kw: dict[str, Any] = {}
        for s in specs:
            if s == "wrong":
                kw["wrong"] = True
            elif s.startswith("crash-after="):
                kw["crash_after"] = int(s.split("=", 1)[1])
            elif s.startswith("slow="):
                kw["slow_s"] = float(s.split("=", 1)[1])
            else:
                raise BadMessage(f"unknown --fault {s!r}: use wrong, crash-after=N or slow=SECONDS")
        return Fault(**kw)


@dataclass
class NodeOptions:
    coordinators: list[str]
    key: Path
    trust: list[Path]
    work_dir: Path
    name: str = "node"
    memory_limit_mb: int | None = 512
    deadline_s: float = 60.0
    stake: int = 0  # micro-credits to bond at registration
    max_tasks: int | None = None  # stop after this many acknowledged results
    idle_exit_s: float | None = None  # stop after this long without work anywhere
    journal: Path | None = None
    fault: Fault = field(default_factory=Fault)
    timeout_s: float = 30.0
    choice: str = "greedy"  # how to pick among ready coordinators: greedy | thompson | round-robin | random
    audit_every: int = 5  # acknowledged results between checks that a coordinator paid for them
    share: ShareOptions | None = None  # private pattern sharing (share.py); None: off
    cache_artifacts: int = 16  # artifacts held at once (on disk and loaded); least recently used go first
    growth: bool = True  # report holdings and follow the coordinators' growth orders (growth.py)


@dataclass
class Peer:
    """One coordinator as this node sees it."""

    url: str
    http: Http
    id: str = ""
    registered: bool = False
    next_poll: float = 0.0
    next_heartbeat: float = 0.0
    backoff: float = 0.2
    poll_s: float = 1.0
    heartbeat_s: float = 10.0
    done: int = 0
    refused: int = 0
    late: int = 0
    last_refusal: str = ""
    anchor: float = 0.0  # monotonic time defining this node's phase: heartbeats at anchor + k·heartbeat_s
    lease_s: float = 0.0  # the coordinator's lease, learned from its tasks (0: unknown)
    model: PeerModel = field(default_factory=PeerModel)
    canonical_since_audit: int = 0  # results the coordinator said were canonical since the last audit
    acked_since_audit: int = 0
    earned_at_audit: int | None = None
    slashed_at_audit: int = 0

    def stats(self) -> dict[str, Any]:
        return {"coordinator": self.id, "done": self.done, "refused": self.refused, "late": self.late,
                "last_refusal": self.last_refusal, "model": self.model.to_json(),
                **self.http.stats.to_json()}  # fmt: skip

    def next_slot(self, now: float, period: float) -> float:
        """The first time after `now` on this node's grid anchor + k·period."""
        k = math.floor((now - self.anchor) / period) + 1
        return self.anchor + k * period


def load_or_create_key(path: Path) -> Signer:
    if not path.exists():
        from ..integrity.signing import generate_key, write_private_key, write_public_key

        key = generate_key("ed25519")
        write_private_key(key, path)
        write_public_key(key, path.with_suffix(".pub"))
        log.info("created node key %s", path)
    return Signer.from_file(path)


class Node:
    def __init__(self, opts: NodeOptions) -> None:
        if not opts.trust:
            raise ArtifactError("a node needs at least one trusted publisher key (--trust PUBLISHER.pub)")
        if not opts.coordinators:
            raise BadMessage("give at least one --coordinator URL")
        from ..integrity.signing import trusted

        self.opts = opts
        self.trust = trusted(opts.trust)
        self.signer = load_or_create_key(opts.key)
        self.peers = [Peer(u.rstrip("/"), Http(u, timeout=opts.timeout_s, attempts=1)) for u in opts.coordinators]
        start = time.monotonic()
        for p in self.peers:  # a random phase to begin with: a fleet restarted together does not start in step
            p.anchor = start + random.uniform(0.0, 1.0)
        self.me = SelfModel()
        self.chooser = Chooser(strategy=opts.choice)
        self.sharing = Sharing(opts.share, self.signer, opts.work_dir / "share") if opts.share else None
        self.refused_artifacts: set[str] = set()
        self.stop = threading.Event()
        self.leased = 0
        self.acked = 0
        self.work_dir = opts.work_dir
        self.cache = ArtifactCache(self.work_dir / "artifacts", opts.cache_artifacts)

    @property
    def id(self) -> str:
        return self.signer.id

    # ---- loop ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        idle_since = time.monotonic()
        k = 0
        while not self.stop.is_set():
            if self.opts.max_tasks is not None and self.acked >= self.opts.max_tasks:
                break
            now = time.monotonic()
            ready = [p for p in self.peers if p.next_poll <= now]
            if not ready:
                self.stop.wait(max(0.01, min(p.next_poll for p in self.peers) - now))
                if self.opts.idle_exit_s is not None and time.monotonic() - idle_since > self.opts.idle_exit_s:
                    break
                continue
            k += 1
            peer = self.choose(ready)
            if self.step(peer):
                idle_since = time.monotonic()
            elif self.opts.idle_exit_s is not None and time.monotonic() - idle_since > self.opts.idle_exit_s:
                break
        return self.summary()

    def choose(self, ready: list[Peer]) -> Peer:
        """The coordinator to ask next, by the node's models of them and of itself (mutual models)."""
        if len(ready) == 1:
            return ready[0]
        models = {p.url: p.model for p in ready}
        on_time = {p.url: self.me.on_time(p.lease_s) for p in ready}
        url = self.chooser.choose(models, [p.url for p in ready], on_time)
        return next(p for p in ready if p.url == url)

    def summary(self) -> dict[str, Any]:
        out = {"node": self.id, "acked": self.acked, "self": {"run_s": self.me.run_s, "tasks": self.me.tasks},
               "peers": {p.url: p.stats() for p in self.peers}, "artifacts": dict(self.cache.counts)}  # fmt: skip
        if self.sharing is not None:
            out["sharing"] = dict(self.sharing.stats)
        return out

    def step(self, peer: Peer) -> bool:
        """One poll of one coordinator; True when a task was run."""
        try:
            if not peer.registered:
                self.register(peer)
            if time.monotonic() >= peer.next_heartbeat - 0.25 * peer.poll_s:  # due on this poll of the grid
                self.heartbeat(peer)
            task = self.call(peer, "/v1/tasks/lease", {"type": "lease"})
            if task is not None:
                schema(task, TASK, "a leased task")
        except (Unreachable, BadMessage) as e:  # no answer, or one this node cannot use: the coordinator's fault
            self._backoff(peer, e)
            return False
        except Refused as e:
            self._refused(peer, e)
            peer.next_poll = time.monotonic() + max(peer.poll_s, 5.0)
            if e.status == 404 and "unknown node" in e.message:
                peer.registered = False  # the coordinator lost us (new database): register again
            return False
        peer.backoff = 0.2
        if self.sharing is not None and self.sharing.due():
            self._share(peer)
        if task is None:
            peer.next_poll = peer.next_slot(time.monotonic(), peer.poll_s)
            return False
        self.leased += 1
        if self.opts.fault.crash_after is not None and self.leased >= self.opts.fault.crash_after:
            log.warning("fault injection: crashing while holding %s", task.get("assignment"))
            os._exit(17)
        self.work(peer, task)
        return True

    def _backoff(self, peer: Peer, e: Exception) -> None:
        peer.next_poll = time.monotonic() + peer.backoff
        log.info("coordinator %s unreachable (%s); retrying in %.1f s", peer.url, e, peer.backoff)
        peer.backoff = min(10.0, peer.backoff * 2)

    def _refused(self, peer: Peer, e: Refused) -> None:
        peer.refused += 1
        peer.last_refusal = e.message[:300]
        if e.status == 410:
            peer.late += 1
        log.info("coordinator %s refused: %s", peer.url, e)

    def call(self, peer: Peer, path: str, payload: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        try:
            if not peer.id:
                peer.id = str(peer.http.get("/v1/info")["coordinator"])
            got = peer.http.post(path, self.signer.seal(payload, peer.id))
        except Unreachable:
            peer.model.observe_call(False)
            raise
        except Refused:
            peer.model.observe_call(True, (time.perf_counter() - t0) * 1e3)  # it answered
            raise
        peer.model.observe_call(True, (time.perf_counter() - t0) * 1e3)
        return got

    def _share(self, peer: Peer) -> None:
        assert self.sharing is not None
        try:
            self.sharing.sync(peer.http, peer.id)
        except (Unreachable, Refused, BadMessage) as e:
            log.info("pattern sharing through %s: %s", peer.url, e)

    def _audit(self, peer: Peer) -> None:
        """Did the coordinator pay for what it said was canonical? (honesty in the peer's model).
        Earned must have grown if any result was acknowledged canonical since the last audit; a
        slash of this node — whose results are computed honestly — counts against the coordinator."""
        try:
            bal = peer.http.get(f"/v1/ledger/balance/{self.id}")
        except (Unreachable, Refused) as e:
            log.info("audit of %s failed: %s", peer.url, e)
            return
        vals = [bal.get(k, 0) if isinstance(bal, dict) else None for k in ("earned", "slashed")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            log.info("audit of %s: the balance answer is malformed: %s", peer.url, str(bal)[:200])
            peer.model.observe_audit(False)  # a coordinator that cannot say what it paid is not trusted for it
            return
        earned, slashed = vals
        if peer.earned_at_audit is not None:
            paid = earned > peer.earned_at_audit or peer.canonical_since_audit == 0
            if self.opts.fault.wrong:  # a node told to cheat knows its own slashes are deserved
                slashed = peer.slashed_at_audit
            peer.model.observe_audit(paid and slashed <= peer.slashed_at_audit)
        peer.earned_at_audit, peer.slashed_at_audit = earned, slashed
        peer.canonical_since_audit = peer.acked_since_audit = 0

    def register(self, peer: Peer) -> None:
        from .wire import b64e

        got = self.call(peer, "/v1/nodes/register", {
            "type": "register", "pubkey": b64e(self.signer.public_raw), "name": self.opts.name[:128],
            "kind": "python", "stake": int(self.opts.stake),
        })  # fmt: skip
        peer.poll_s, peer.heartbeat_s = _timing(got)
        peer.registered = True
        log.info("registered %s at %s (stake %s, probation %s)", self.id, peer.url, got.get("staked"), got.get("probation"))

    def heartbeat(self, peer: Peer) -> None:
        got = self.call(peer, "/v1/nodes/heartbeat", {"type": "heartbeat"})
        peer.poll_s, peer.heartbeat_s = _timing(got)
        shift = got.get("phase_shift_s", 0.0)
        if isinstance(shift, int | float) and math.isfinite(shift):  # the coordinator's Kuramoto coupling:
            peer.anchor += max(-peer.heartbeat_s / 2, min(peer.heartbeat_s / 2, float(shift)))  # move our phase
        peer.next_heartbeat = peer.next_slot(time.monotonic() + 0.5 * peer.poll_s, peer.heartbeat_s)
        if self.opts.growth:
            self.holdings(peer)

    # ---- growth: what this node holds, and its coordinators' orders ---------------------------------
    def holdings(self, peer: Peer) -> None:
        """Report holdings and RTTs; follow the orders in the answer (module docstring)."""
        rtt = {p.id: round(p.model.latency_ms, 3) for p in self.peers if p.id and p.model.calls}
        holds = list(self.cache.held)[-MAX_HOLDS:]
        try:
            report = {"type": "holdings", "holds": holds, "rtt_ms": rtt, "room": self.cache.capacity}
            got = self.call(peer, "/v1/nodes/holdings", report)
            fetch, keep, drop = parse_orders(got)
        except (Refused, BadMessage) as e:  # a coordinator without growth, or bad orders: carry on without
            log.info("growth orders from %s: %s", peer.url, e)
            return
        log.debug("growth orders from %s: fetch %s keep %s drop %s", peer.url, fetch, keep, drop)
        self.cache.pins[peer.url] = keep | {a for a, _ in fetch}
        self.cache.drop(drop)
        for sha, variant in fetch[: self.cache.capacity]:
            if sha in self.cache.held or sha in self.refused_artifacts:
                continue
            try:
                self.module(peer, sha, variant)
                self.cache.counts["prefetched"] += 1
            except (WasmTorchError, OSError) as e:
                log.warning("cannot fetch %s ahead: %s", sha[:16], e)

    # ---- one task -----------------------------------------------------------------------------
    def work(self, peer: Peer, task: dict[str, Any]) -> None:
        aid = task["assignment"]
        peer.lease_s = float(task.get("lease_s", peer.lease_s) or 0.0)
        try:
            module, manifest = self.module(peer, task["artifact"], task["variant"])
            t0 = time.perf_counter()
            named, units = self.execute(module, manifest, task["inputs"])
            self.me.observe_run(time.perf_counter() - t0)
        except (WasmTorchError, OSError) as e:
            log.warning("cannot run %s: %s", aid, e)
            reason = "untrusted" if isinstance(e, ArtifactError) else "limit" if isinstance(e, ExecutionError) else "error"
            self._send(peer, "/v1/tasks/fail", {"type": "fail", "assignment": aid, "reason": reason}, task)
            return
        if self.opts.fault.wrong:
            named = [(n, _tamper(a)) for n, a in named]
        if self.opts.fault.slow_s:
            time.sleep(self.opts.fault.slow_s)
        digest = tensors.output_hash(named)
        payload = {"type": "result", "assignment": aid, "task": task["task"], "hash": digest, "units": units,
                   "outputs": tensors.encode(named)}  # fmt: skip
        got = self._send(peer, "/v1/tasks/result", payload, task)
        if got is not None:
            self.acked += 1
            peer.done += 1
            peer.acked_since_audit += 1
            if isinstance(got, dict) and got.get("verdict") == "canonical":
                peer.canonical_since_audit += 1
            self._journal(peer, aid, task["task"], digest)
            if peer.acked_since_audit >= self.opts.audit_every:
                self._audit(peer)

    def _send(self, peer: Peer, path: str, payload: dict[str, Any], task: dict[str, Any]) -> Any:
        """Send until acknowledged (returns the answer, {} when empty) or refused, or until the lease
        is over (then it would be late): None when not acknowledged."""
        delay = 0.2
        deadline = time.time() + max(1.0, task["deadline_ms"] / 1000 - time.time()) + 5.0
        while True:
            try:
                got = self.call(peer, path, payload)
                return {} if got is None else got
            except Refused as e:
                self._refused(peer, e)
                return None
            except Unreachable as e:
                if time.time() > deadline or self.stop.is_set():
                    log.warning("giving up on %s after the lease ended: %s", task["assignment"], e)
                    return None
                time.sleep(delay)
                delay = min(5.0, delay * 2)

    def _journal(self, peer: Peer, aid: str, task: str, digest: str) -> None:
        if self.opts.journal is None:
            return
        line = json.dumps({"coordinator": peer.id, "url": peer.url, "assignment": aid, "task": task,
                           "hash": digest, "ts": int(time.time() * 1000)})  # fmt: skip
        with open(self.opts.journal, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def execute(self, module: Any, manifest: Manifest, inputs: Any) -> tuple[list[tuple[str, np.ndarray]], int]:
        named = tensors.decode(inputs, "task inputs", MAX_TASK_BYTES)
        syms = bind_shapes(manifest, {n: a.shape for n, a in named})
        outs = module.run(dict(named))
        return [(s.name, outs[s.name]) for s in module.outputs], work_units(manifest, syms)

    def module(self, peer: Peer, sha: str, variant: str) -> tuple[Any, Manifest]:
        """The loaded module for artifact `sha` (build `variant`, one thread), fetched and verified once."""
        got = self.cache.get(sha, variant)
        if got is not None:
            return got
        folder = self.cache.folder(sha)
        if sha in self.refused_artifacts:
            raise ArtifactError(f"artifact {sha[:16]}… was refused before (signature or hashes)")
        from ..runtime import load

        self.cache.make_room(sha)
        t0 = time.perf_counter()
        if not (folder / MANIFEST).exists():
            self._download(peer, sha, folder)
            self.cache.counts["downloads"] += 1
        limit = None if self.opts.memory_limit_mb is None else self.opts.memory_limit_mb << 20
        try:
            manifest = read_manifest(folder)
        except ArtifactError:
            self.refused_artifacts.add(sha)
            self.cache.evict(sha)
            raise
        try:
            pinned_build(manifest, variant)  # deterministic, or the task cannot be compared by hash
        except BadMessage:  # a bad request for a good artifact (the next may name the right build)
            self.cache.evict(sha)
            raise
        try:
            m = load(folder, trusted_keys=self.trust, variant=variant, threads=1, memory_limit=limit,
                     deadline=self.opts.deadline_s)  # fmt: skip
        except (ArtifactError, BadMessage) as e:
            self.refused_artifacts.add(sha)
            self.cache.evict(sha)
            raise ArtifactError(str(e)) from None
        self.cache.add(sha, variant, m, manifest)
        self.cache.counts["load_ms"] += round((time.perf_counter() - t0) * 1000)
        return m, manifest

    def _download(self, peer: Peer, sha: str, folder: Path) -> None:
        base = f"/v1/artifacts/{sha}/"
        manifest = peer.http.raw(base + MANIFEST)
        if hashlib.sha256(manifest).hexdigest() != sha:
            self.refused_artifacts.add(sha)
            raise ArtifactError(f"coordinator {peer.url} sent a manifest that does not hash to {sha[:16]}…")
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / MANIFEST).write_bytes(manifest)
        try:
            listed = list(read_manifest(tmp, manifest).raw["files"])
        except ArtifactError:
            shutil.rmtree(tmp, ignore_errors=True)
            self.refused_artifacts.add(sha)
            raise
        for name in (SIGNATURE, *listed):  # names come from the manifest that hashes to the task's id
            if "/" in name or name.startswith("."):
                shutil.rmtree(tmp, ignore_errors=True)
                raise ArtifactError(f"artifact {sha[:16]}… lists a file with a path in its name: {name[:64]!r}")
            (tmp / name).write_bytes(peer.http.raw(base + name))
        os.replace(tmp, folder)


# a lease answer (scheduler.lease): exactly these fields, checked before anything is used
TASK = {"assignment": str, "task": str, "job": str, "artifact": str, "variant": str, "inputs": list, "units": int,
        "deadline_ms": int, "lease_s": float}  # fmt: skip


def _timing(got: Any) -> tuple[float, float]:
    """(poll_s, heartbeat_s) from a register or heartbeat answer: numbers in [0.01 s, 1 h], or the
    answer is refused (a coordinator cannot make a node spin or fall silent)."""
    vals = [got.get(k) if isinstance(got, dict) else None for k in ("poll_s", "heartbeat_s")]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0.01 <= v <= 3600 for v in vals):
        raise BadMessage(f"the coordinator's poll_s and heartbeat_s must be seconds in [0.01, 3600], got {vals}")
    return float(vals[0]), float(vals[1])


def _tamper(a: np.ndarray) -> np.ndarray:
    b = np.array(a, copy=True)
    flat = b.reshape(-1)
    if flat.size:
        flat[0] = flat[0] + 1 if b.dtype != np.bool_ else not flat[0]
    return b
