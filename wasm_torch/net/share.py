"""Private pattern sharing between nodes: differentially private summaries of pattern memories, sent
in boxes that only the recipient can open (ML-KEM-768 + AES-256-GCM), relayed by a coordinator that
cannot read them.

    node A                                 coordinator                             node B
    POST /v1/share/key {kem, sig}  ───▶  share_keys            ◀───  POST /v1/share/key
    GET  /v1/share/keys            ◀───  [{node, pubkey, kem, sig}]
    seal(B's kem key, DP release)  ───▶  POST /v1/share/send {to, box}  ──▶  share_boxes
                                         POST /v1/share/inbox {} (signed by B)  ───▶  open, verify A

Keys. Each node has an ML-KEM-768 key pair (`share.kem` in its work folder, the 64-byte seed) and
publishes the encapsulation key signed with its Ed25519 node key (SHARE_KEY_DOMAIN + key bytes); a
sender checks that signature against the recipient's Ed25519 key, whose hash *is* the recipient's
id, so a coordinator cannot slip in a key of its own for a node it names.

Box = ML-KEM ciphertext (1088 bytes) ‖ 12-byte nonce ‖ AES-256-GCM(key, plaintext, aad), with
key = HKDF-SHA256(shared secret, info = BOX_INFO + sender id + recipient id) and aad = the KEM
ciphertext + both ids. The plaintext is canonical JSON {from, to, ts, entries, sig}: `sig` is the
sender's Ed25519 signature over SEAL_DOMAIN + KEM ciphertext + canonical body, so the recipient
knows who wrote it and that it was written for this box. Replays are refused (box ids remembered,
timestamps within 24 h).

What is inside is a release of collective.privacy: per public cell (the pattern's dominant op group
= the argmax of its FLOP-share gates) and public candidate configuration, the noisy sum of clipped
log-gains and the noisy count of the records behind it, ε = 0.1 by default; the accountant
(persisted in `privacy.json`, written before anything is sent) charges every record it covered, so with the default budget each
record is released once. Sync intervals are bounded to 1 min – 1 h (privacy.check_interval), and the
coordinator refuses a second box from one node to another within a minute.

The pattern memory is used only through its public API: records are read from `memory.buffer`
(the trajectory ring buffer, iterable), received knowledge is written with `memory.post_query`.
`prime(memory, pattern)` puts the peers' entries for the pattern's cell next to that pattern, so
the next `pre_query` for it (the tuner's warm start) ranks them with its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..collective import privacy
from ..collective.errors import CollectiveError
from .errors import BadMessage, BadSignature, Conflict
from .wire import LongStr, Signer, b64d, b64e, canonical, key_id_of, loads_strict, now_ms, schema, verify_raw

log = logging.getLogger("wasm_torch.net.share")
SHARE_KEY_DOMAIN = b"wasm-torch-net/1 ml-kem-768 key\n"
SEAL_DOMAIN = b"wasm-torch-net/1 pattern box\n"
BOX_INFO = b"wasm-torch-net/1 pattern box aes-256-gcm\n"
KEM_PUBLIC_BYTES, KEM_CT_BYTES, NONCE_BYTES = 1184, 1088, 12
MAX_BOX_BYTES = 256 * 1024
MAX_ENTRIES = 2048
BOX_MAX_AGE_MS = 24 * 3600 * 1000
ENTRY = {"cell": int, "config": str, "sum": float, "count": float, "epsilon": float}
MAX_ABS = 1e9  # a noisy sum or count beyond this is not a release of ours


# ---- keys --------------------------------------------------------------------------------------------
def load_or_create_kem(path: Path) -> mlkem.MLKEM768PrivateKey:
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != 64:
            raise BadMessage(f"{path} is not an ML-KEM-768 seed (64 bytes); move it aside to make a new key")
        return mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    key = mlkem.MLKEM768PrivateKey.generate()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes_raw())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return key


def key_message(signer: Signer, kem_public: bytes) -> dict[str, Any]:
    return {"type": "share-key", "kem": b64e(kem_public), "sig": b64e(signer.sign(SHARE_KEY_DOMAIN + kem_public))}


def check_listed_key(item: Any) -> tuple[str, bytes, bytes]:
    """A /v1/share/keys entry -> (node id, Ed25519 raw, ML-KEM raw), with the node's signature checked."""
    schema(item, {"node": str, "pubkey": str, "kem": LongStr, "sig": str}, "shared key")
    pub = b64d(item["pubkey"], "pubkey", 32)
    if len(pub) != 32 or key_id_of(pub) != item["node"]:
        raise BadSignature(f"listed key: pubkey does not belong to {item['node']}")
    kem = b64d(item["kem"], "kem", KEM_PUBLIC_BYTES)
    if len(kem) != KEM_PUBLIC_BYTES:
        raise BadMessage(f"an ML-KEM-768 key is {KEM_PUBLIC_BYTES} bytes")
    if not verify_raw(pub, b64d(item["sig"], "sig", 64), SHARE_KEY_DOMAIN + kem):
        raise BadSignature(f"the ML-KEM key listed for {item['node']} is not signed by that node")
    return item["node"], pub, kem


# ---- boxes -------------------------------------------------------------------------------------------
def _aead_key(secret: bytes, sender: str, recipient: str) -> bytes:
    info = BOX_INFO + sender.encode() + b"\n" + recipient.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def seal(sender: Signer, recipient: str, recipient_kem: bytes, entries: Sequence[dict[str, Any]]) -> bytes:
    pub = mlkem.MLKEM768PublicKey.from_public_bytes(recipient_kem)
    secret, kem_ct = pub.encapsulate()
    body = {"from": sender.id, "to": recipient, "ts": now_ms(), "entries": list(entries)}
    sig = b64e(sender.sign(SEAL_DOMAIN + kem_ct + canonical(body)))
    plain = canonical({**body, "sig": sig})
    nonce = os.urandom(NONCE_BYTES)
    aad = kem_ct + sender.id.encode() + recipient.encode()
    ct = AESGCM(_aead_key(secret, sender.id, recipient)).encrypt(nonce, plain, aad)
    return kem_ct + nonce + ct


def open_box(me: Signer, kem_key: mlkem.MLKEM768PrivateKey, sender: str, sender_pub: bytes,
             box: bytes) -> list[dict[str, Any]]:  # fmt: skip
    """Decrypt and verify a box from `sender`; its entries, each checked. Anything wrong: BadMessage
    / BadSignature naming it (a tampered box fails the AES-GCM tag)."""
    if not KEM_CT_BYTES + NONCE_BYTES + 16 <= len(box) <= MAX_BOX_BYTES:
        raise BadMessage(f"a pattern box is between {KEM_CT_BYTES + NONCE_BYTES + 16} and {MAX_BOX_BYTES} bytes")
    kem_ct, nonce, ct = box[:KEM_CT_BYTES], box[KEM_CT_BYTES : KEM_CT_BYTES + NONCE_BYTES], box[KEM_CT_BYTES + NONCE_BYTES :]
    secret = kem_key.decapsulate(kem_ct)  # implicit rejection: a forged ciphertext gives a useless key
    aad = kem_ct + sender.encode() + me.id.encode()
    try:
        plain = AESGCM(_aead_key(secret, sender, me.id)).decrypt(nonce, ct, aad)
    except InvalidTag:
        raise BadMessage(f"a pattern box from {sender} does not decrypt: altered, or not sealed for this node") from None
    doc = loads_strict(plain, "pattern box")
    schema(doc, {"from": str, "to": str, "ts": int, "entries": list, "sig": str}, "pattern box")
    if doc["from"] != sender or doc["to"] != me.id:
        raise BadMessage(f"a pattern box names {doc['from']} -> {doc['to']}, not {sender} -> {me.id}")
    body = {k: v for k, v in doc.items() if k != "sig"}
    if not verify_raw(sender_pub, b64d(doc["sig"], "box sig", 64), SEAL_DOMAIN + kem_ct + canonical(body)):
        raise BadSignature(f"the pattern box is not signed by {sender}")
    if abs(now_ms() - doc["ts"]) > BOX_MAX_AGE_MS:
        raise Conflict("a pattern box older than a day (or from the future) is refused")
    if len(doc["entries"]) > MAX_ENTRIES:
        raise BadMessage(f"a pattern box carries at most {MAX_ENTRIES} entries")
    out = []
    for e in doc["entries"]:
        schema(e, ENTRY, "shared entry")
        if not (0 <= e["cell"] < 1024 and abs(e["sum"]) < MAX_ABS and abs(e["count"]) < MAX_ABS
                and e["epsilon"] > 0):  # fmt: skip -- abs(x) < bound is False for NaN too
            raise BadMessage(f"shared entry out of range: {str(e)[:200]}")
        json.loads(e["config"])
        out.append(e)
    return out


# ---- the node side -----------------------------------------------------------------------------------
class MemoryLike(Protocol):
    """What sharing needs of wasm_torch.learn's PatternMemory (its public API)."""

    buffer: Any  # iterable of trajectories: .vector .gates .key .config .latency_s .baseline_s .space .time

    def post_query(self, pattern: Any, config: dict[str, Any], latency_s: float, baseline_s: float,
                   space: str = "") -> None: ...  # fmt: skip


@dataclass(frozen=True)
class SharedPattern:
    """The pattern argument post_query needs (vector, gates, key), without importing the learning code."""

    vector: np.ndarray
    gates: np.ndarray
    key: str
    summary: dict[str, Any] = field(default_factory=dict)


PEER_PREFIX = "peer:"
PRIOR_RECORDS = 5.0  # shrinkage of pooled peer gains toward "no gain" (prime)


def cell_of(gates: Any) -> int:
    """The public cell of a pattern: its dominant op group (argmax of the FLOP-share gates)."""
    return int(np.argmax(np.asarray(gates, dtype=np.float64)))


def record_id(t: Any) -> str:
    raw = json.dumps([t.key, t.config, float(t.time), float(t.latency_s), float(t.baseline_s), t.space],
                     sort_keys=True, default=str).encode()  # fmt: skip
    return hashlib.sha256(raw).hexdigest()[:32]


def records_of(memory: MemoryLike, space: str | None = None) -> list[privacy.Record]:
    """The memory's own records (entries primed from peers are not re-shared)."""
    out = []
    for t in memory.buffer:
        if str(t.key).startswith(PEER_PREFIX) or (space is not None and t.space != space):
            continue
        cfg = json.dumps(t.config, sort_keys=True, separators=(",", ":"))
        out.append(privacy.Record(record_id(t), cell_of(t.gates), cfg, math.log(t.baseline_s / t.latency_s)))
    return out


@dataclass
class ShareOptions:
    memory: MemoryLike
    candidates: list[dict[str, Any]]  # public candidate configurations (e.g. the search space's points)
    cells: int = 10  # the number of op groups in the pattern's gates
    interval_s: float = 600.0
    epsilon: float = privacy.EPSILON
    budget: float = privacy.EPSILON
    fanout: int = 3  # recipients per sync
    space: str = ""  # search-space id of the candidates
    seed: int | None = None

    def __post_init__(self) -> None:
        try:
            privacy.check_interval(self.interval_s)
            privacy.check_epsilon(self.epsilon)
            privacy.check_epsilon(self.budget, "the privacy budget")
        except CollectiveError as e:
            raise BadMessage(str(e)) from None
        if not self.candidates or self.cells < 1 or self.fanout < 1:
            raise BadMessage("pattern sharing needs candidate configurations, cells >= 1 and fanout >= 1")


class Sharing:
    """A node's pattern sharing: its ML-KEM key, privacy accountant and the knowledge received."""

    def __init__(self, opts: ShareOptions, signer: Signer, folder: Path,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.opts, self.signer, self.folder, self.clock = opts, signer, folder, clock
        folder.mkdir(parents=True, exist_ok=True)
        self.kem = load_or_create_kem(folder / "share.kem")
        self.kem_public = self.kem.public_key().public_bytes_raw()
        self.candidates = [json.dumps(c, sort_keys=True, separators=(",", ":")) for c in opts.candidates]
        self.accountant = self._load("privacy.json", privacy.Accountant.from_json, lambda: privacy.Accountant(opts.budget))
        self.received: dict[str, Any] = self._load("received.json", _check_received, lambda: {"entries": [], "boxes": []})
        self.rng = np.random.default_rng(opts.seed)
        self.next_sync = 0.0
        self.registered: set[str] = set()
        self.stats = {"syncs": 0, "sent_boxes": 0, "released": 0, "received_entries": 0, "refused_boxes": 0,
                      "refused_releases": 0}  # fmt: skip

    def _load(self, name: str, parse: Callable[[Any], Any], default: Callable[[], Any]) -> Any:
        path = self.folder / name
        if not path.exists():
            return default()
        try:
            return parse(loads_strict(path.read_bytes(), str(path)))
        except (BadMessage, CollectiveError) as e:
            raise BadMessage(f"{path}: {e}. It was left as it is: move it aside to start afresh.") from None

    def _save(self, name: str, doc: Any) -> None:
        path = self.folder / name
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(json.dumps(doc, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def due(self) -> bool:
        return self.clock() >= self.next_sync

    def sync(self, http: Any, coordinator: str) -> dict[str, Any]:
        """One round through `coordinator`: publish our key, read our inbox, send one release."""
        self.next_sync = self.clock() + self.opts.interval_s
        self.stats["syncs"] += 1
        if coordinator not in self.registered:
            http.post("/v1/share/key", self.signer.seal(key_message(self.signer, self.kem_public), coordinator))
            self.registered.add(coordinator)
        listed = http.get("/v1/share/keys")
        keys: dict[str, tuple[bytes, bytes]] = {}
        for item in listed.get("keys", []) if isinstance(listed, dict) else []:
            try:
                node, pub, kem = check_listed_key(item)
                keys[node] = (pub, kem)
            except BadMessage as e:
                log.warning("ignoring a listed sharing key: %s", e)
        self._inbox(http, coordinator, keys)
        return self._send(http, coordinator, keys)

    def _inbox(self, http: Any, coordinator: str, keys: dict[str, tuple[bytes, bytes]]) -> None:
        """Fetch boxes, keep what verifies, then acknowledge them (the coordinator deletes only what
        was acknowledged, so a lost answer loses nothing); up to 4 pages per sync."""
        ack: list[str] = []
        for _ in range(4):
            got = http.post("/v1/share/inbox", self.signer.seal({"type": "share-inbox", "ack": ack}, coordinator))
            items = got.get("boxes", []) if isinstance(got, dict) else []
            if not items:
                break
            ack = self._take(items, keys)
            self._save("received.json", self.received)  # on disk before the acknowledgement goes out

    def _take(self, items: list[Any], keys: dict[str, tuple[bytes, bytes]]) -> list[str]:
        seen = set(self.received["boxes"])
        ack = []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                ack.append(item["id"][:64])
            try:
                schema(item, {"id": str, "from": str, "box": LongStr}, "inbox item")
                box = b64d(item["box"], "box", MAX_BOX_BYTES)
                bid = hashlib.sha256(box).hexdigest()
                if bid in seen:
                    raise Conflict("a pattern box seen before (replayed)")
                if item["from"] not in keys:
                    raise BadSignature(f"no signed key listed for sender {item['from']}")
                entries = open_box(self.signer, self.kem, item["from"], keys[item["from"]][0], box)
            except (BadMessage, BadSignature, Conflict, ValueError) as e:
                self.stats["refused_boxes"] += 1
                log.warning("refused a pattern box: %s", e)
                continue
            seen.add(bid)
            self.received["boxes"].append(bid)
            self.received["entries"].extend({**e, "from": item["from"]} for e in entries)
            self.stats["received_entries"] += len(entries)
        self.received["boxes"] = self.received["boxes"][-10_000:]
        self.received["entries"] = self.received["entries"][-10_000:]
        return ack

    def release(self) -> list[privacy.Shared]:
        """The DP release of every own record with budget left (charged and saved before returning)."""
        recs = [r for r in records_of(self.opts.memory, self.opts.space or None)
                if self.accountant.can_release([r.rid], self.opts.epsilon)]  # fmt: skip
        if not recs:
            return []
        out = privacy.release(recs, self.candidates, self.opts.cells, self.accountant, self.opts.epsilon, self.rng)
        self._save("privacy.json", self.accountant.to_json())  # spent before anything leaves this node
        self.stats["released"] += len(recs)
        return out

    def _send(self, http: Any, coordinator: str, keys: dict[str, tuple[bytes, bytes]]) -> dict[str, Any]:
        peers = sorted(k for k in keys if k != self.signer.id)
        if not peers:
            return {"sent": 0, "entries": 0}
        shared = self.release()
        if not shared:
            return {"sent": 0, "entries": 0}
        entries = [s.to_json() for s in shared]
        rng = random.Random(int(self.rng.integers(1 << 62)))
        sent = 0
        for node in rng.sample(peers, min(self.opts.fanout, len(peers))):
            box = seal(self.signer, node, keys[node][1], entries)
            try:
                http.post("/v1/share/send", self.signer.seal({"type": "share-send", "recipient": node, "box": b64e(box)},
                                                             coordinator))  # fmt: skip
                sent += 1
            except Exception as e:  # a refusal for one recipient (rate limit, full inbox) must not stop the rest
                log.info("sharing with %s: %s", node, e)
        self.stats["sent_boxes"] += sent
        return {"sent": sent, "entries": len(entries)}

    def prime(self, memory: MemoryLike, pattern: Any, space: str | None = None, copies: int = 3,
              max_configs: int = 8) -> int:  # fmt: skip
        """Write what peers shared about `pattern`'s cell into `memory` next to `pattern`, so that
        pre_query(pattern) — the tuner's warm start — weighs it; returns the number of writes.

        Entries from all peers are pooled per configuration — their noisy sums and counts add up,
        their independent noise averages out — and the log-gain estimate is shrunk toward 0 (no gain)
        by PRIOR_RECORDS pseudo-records, Σ sum / (Σ count + PRIOR_RECORDS), so a configuration
        backed by a few (noisy) records cannot outrank one backed by many. The best `max_configs` are written under `copies` pattern
        keys at the pattern's own vector: the memory weighs neighbour patterns, and a single
        neighbour would be outvoted by a few of the node's own, more distant ones."""
        c = cell_of(pattern.gates)
        pooled: dict[str, list[float]] = {}
        for e in self.received["entries"]:
            if e["cell"] == c:
                acc = pooled.setdefault(e["config"], [0.0, 0.0])
                acc[0] += e["count"]
                acc[1] += e["sum"]
        clip = privacy.GAIN_CLIP
        scored = sorted(((min(clip, max(-clip, lg / max(n + PRIOR_RECORDS, PRIOR_RECORDS))), cfg)
                         for cfg, (n, lg) in pooled.items()), reverse=True)  # fmt: skip
        vec, gates = np.asarray(pattern.vector, dtype=np.float32), np.asarray(pattern.gates, dtype=np.float32)
        base = hashlib.sha256(f"{c}|{vec.tobytes().hex()}".encode()).hexdigest()[:14]
        n = 0
        for k in range(copies if scored else 0):
            p = SharedPattern(vec, gates, f"{PEER_PREFIX}{base}{k:02d}")
            for log_gain, cfg in scored[:max_configs]:
                memory.post_query(p, json.loads(cfg), math.exp(-log_gain), 1.0, self.opts.space if space is None else space)
                n += 1
        return n


def _check_received(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict) or set(d) != {"entries", "boxes"} or not all(isinstance(d[k], list) for k in d):
        raise BadMessage('expected {"entries": [...], "boxes": [...]}')
    for e in d["entries"]:
        schema(e, {**ENTRY, "from": str}, "received entry")
    return d
