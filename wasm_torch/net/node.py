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

`--fault` injects misbehaviour for tests of the network (never use it for real work): `wrong`
returns altered outputs, `crash-after=N` exits abruptly holding its Nth lease, `slow=S` waits S
seconds before answering.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import MANIFEST, SIGNATURE, Manifest, read_manifest
from ..errors import ArtifactError, ExecutionError, WasmTorchError
from . import tensors
from .client import Http, Refused
from .errors import BadMessage, Unreachable
from .wire import Signer
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

    def stats(self) -> dict[str, Any]:
        return {"coordinator": self.id, "done": self.done, "refused": self.refused, "late": self.late,
                "last_refusal": self.last_refusal, **self.http.stats.to_json()}  # fmt: skip


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
        self.modules: dict[tuple[str, str], tuple[Any, Manifest]] = {}
        self.refused_artifacts: set[str] = set()
        self.stop = threading.Event()
        self.leased = 0
        self.acked = 0
        self.work_dir = opts.work_dir
        (self.work_dir / "artifacts").mkdir(parents=True, exist_ok=True)

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
            peer = ready[k % len(ready)]
            k += 1
            if self.step(peer):
                idle_since = time.monotonic()
            elif self.opts.idle_exit_s is not None and time.monotonic() - idle_since > self.opts.idle_exit_s:
                break
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {"node": self.id, "acked": self.acked, "peers": {p.url: p.stats() for p in self.peers}}

    def step(self, peer: Peer) -> bool:
        """One poll of one coordinator; True when a task was run."""
        try:
            if not peer.registered:
                self.register(peer)
            if time.monotonic() >= peer.next_heartbeat:
                self.heartbeat(peer)
            task = self.call(peer, "/v1/tasks/lease", {"type": "lease"})
        except Unreachable as e:
            self._backoff(peer, e)
            return False
        except Refused as e:
            self._refused(peer, e)
            peer.next_poll = time.monotonic() + max(peer.poll_s, 5.0)
            if e.status == 404 and "unknown node" in e.message:
                peer.registered = False  # the coordinator lost us (new database): register again
            return False
        peer.backoff = 0.2
        if task is None:
            peer.next_poll = time.monotonic() + peer.poll_s
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
        if not peer.id:
            peer.id = str(peer.http.get("/v1/info")["coordinator"])
        return peer.http.post(path, self.signer.seal(payload, peer.id))

    def register(self, peer: Peer) -> None:
        from .wire import b64e

        got = self.call(peer, "/v1/nodes/register", {
            "type": "register", "pubkey": b64e(self.signer.public_raw), "name": self.opts.name[:128],
            "kind": "python", "stake": int(self.opts.stake),
        })  # fmt: skip
        peer.registered = True
        peer.poll_s, peer.heartbeat_s = float(got["poll_s"]), float(got["heartbeat_s"])
        log.info("registered %s at %s (stake %s, probation %s)", self.id, peer.url, got["staked"], got["probation"])

    def heartbeat(self, peer: Peer) -> None:
        got = self.call(peer, "/v1/nodes/heartbeat", {"type": "heartbeat"})
        peer.poll_s, peer.heartbeat_s = float(got["poll_s"]), float(got["heartbeat_s"])
        peer.next_heartbeat = time.monotonic() + peer.heartbeat_s

    # ---- one task -----------------------------------------------------------------------------
    def work(self, peer: Peer, task: dict[str, Any]) -> None:
        aid = task["assignment"]
        try:
            module, manifest = self.module(peer, task["artifact"], task["variant"])
            named, units = self.execute(module, manifest, task["inputs"])
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
        if self._send(peer, "/v1/tasks/result", payload, task):
            self.acked += 1
            peer.done += 1
            self._journal(peer, aid, task["task"], digest)

    def _send(self, peer: Peer, path: str, payload: dict[str, Any], task: dict[str, Any]) -> bool:
        """Send until acknowledged or refused, or until the lease is over (then it would be late)."""
        delay = 0.2
        deadline = time.time() + max(1.0, task["deadline_ms"] / 1000 - time.time()) + 5.0
        while True:
            try:
                self.call(peer, path, payload)
                return True
            except Refused as e:
                self._refused(peer, e)
                return False
            except Unreachable as e:
                if time.time() > deadline or self.stop.is_set():
                    log.warning("giving up on %s after the lease ended: %s", task["assignment"], e)
                    return False
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
        if (sha, variant) in self.modules:
            return self.modules[(sha, variant)]
        if sha in self.refused_artifacts:
            raise ArtifactError(f"artifact {sha[:16]}… was refused before (signature or hashes)")
        from ..runtime import load

        folder = self.work_dir / "artifacts" / sha
        if not (folder / MANIFEST).exists():
            self._download(peer, sha, folder)
        limit = None if self.opts.memory_limit_mb is None else self.opts.memory_limit_mb << 20
        try:
            manifest = read_manifest(folder)
            pinned_build(manifest, variant)  # deterministic, or the task cannot be compared by hash
            m = load(folder, trusted_keys=self.trust, variant=variant, threads=1, memory_limit=limit,
                     deadline=self.opts.deadline_s)  # fmt: skip
        except (ArtifactError, BadMessage) as e:
            self.refused_artifacts.add(sha)
            shutil.rmtree(folder, ignore_errors=True)
            raise ArtifactError(str(e)) from None
        self.modules[(sha, variant)] = (m, manifest)
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


def _tamper(a: np.ndarray) -> np.ndarray:
    b = np.array(a, copy=True)
    flat = b.reshape(-1)
    if flat.size:
        flat[0] = flat[0] + 1 if b.dtype != np.bool_ else not flat[0]
    return b
