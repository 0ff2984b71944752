"""Anti-entropy between coordinators: compare Merkle roots, exchange only the missing entries.

One round, initiated by A towards peer B (every `gossip_s` seconds, for every peer):

    A → B  POST /v1/gossip       {root, summary}         summary: per issuer, contiguous count held,
                                                          seqs held beyond it, entry count, issuer root
    B → A  {same: true}  when the roots match, else {entries B has and A lacks, B's summary}
    A      verifies and stores those entries
    A → B  POST /v1/gossip/push  {entries A has and B lacks}

Both messages are envelopes signed by A's coordinator key, which B must know (--peer-key); every
entry is also signed by its issuer and checked on intake, so a peer can relay but never forge.
Messages are idempotent (merging twice changes nothing), so a lost or repeated round is harmless.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import NetworkError
from .client import Http, PeerStats, Refused
from .errors import BadEntry, BadMessage, Unreachable
from .ledger import Entry
from .store import Store
from .wire import Signer


def check_summary(summary: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(summary, dict) or len(summary) > 10_000:
        raise BadMessage("gossip summary must be an object of at most 10,000 issuers")
    for issuer, s in summary.items():
        if not isinstance(s, dict) or set(s) != {"upto", "extra", "n", "root"}:
            raise BadMessage(f"gossip summary for {issuer[:80]!r} must have exactly upto, extra, n, root")
        ints = [s["upto"], s["n"], *s["extra"]] if isinstance(s["extra"], list) else None
        if ints is None or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
            raise BadMessage("gossip summary upto/n/extra must be non-negative integers")
        if len(s["extra"]) > 100_000 or not isinstance(s["root"], str) or len(s["root"]) != 64:
            raise BadMessage("gossip summary extra is too long or root is not a sha256")
    return summary


def parse_entries(items: Any, limit: int) -> list[Entry]:
    if not isinstance(items, list):
        raise BadMessage("entries must be a list")
    if len(items) > limit:
        raise BadMessage(f"{len(items)} entries in one message; at most {limit}")
    try:
        return [Entry.from_json(d) for d in items]
    except BadMessage as e:
        raise BadEntry(str(e)) from None


def answer(store: Store, root: str, summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """B's side of a round."""
    led = store.ledger
    if root == led.root():
        return {"same": True}
    with store.lock:
        entries = led.missing_for(summary, store.params.gossip_batch)
        mine = led.summary()
    return {"same": False, "entries": [e.to_json() for e in entries], "summary": mine}


class Gossip:
    """A's side: a thread that runs one round with every peer each `gossip_s` seconds."""

    def __init__(self, store: Store, signer: Signer, peers: list[str], peer_ids: dict[str, str] | None = None,
                 make_http: Callable[[str], Http] | None = None) -> None:  # fmt: skip
        self.store, self.signer = store, signer
        self.peers = list(peers)
        self.peer_ids = dict(peer_ids or {})  # url -> coordinator id, learned from /v1/info
        make = make_http or (lambda url: Http(url, timeout=10.0, attempts=1))
        self.http = {url: make(url) for url in self.peers}
        self.stats: dict[str, dict[str, Any]] = {url: {"rounds": 0, "in": 0, "out": 0} for url in self.peers}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # called after every round with (url, http, peer id): agreement spikes and governance documents
        self.hooks: list[Callable[[str, Http, str], None]] = []

    def start(self) -> None:
        if self.peers and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="wasm-torch-gossip", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.store.params.gossip_s):
            for url in self.peers:
                try:
                    self.round(url)
                except (Unreachable, Refused, BadMessage, BadEntry) as e:
                    self.http[url].stats.last_error = str(e)[:300]
                self.run_hooks(url)

    def run_hooks(self, url: str) -> None:
        peer = self.peer_ids.get(url)
        if peer is None:
            return
        for hook in self.hooks:
            try:
                hook(url, self.http[url], peer)
            except (Unreachable, Refused, NetworkError) as e:
                self.http[url].stats.last_error = str(e)[:300]

    def round(self, url: str) -> int:
        """One anti-entropy round with `url`; returns entries exchanged (both directions)."""
        http = self.http[url]
        to = self.peer_ids.get(url)
        if to is None:
            to = self.peer_ids[url] = str(http.get("/v1/info")["coordinator"])
        led = self.store.ledger
        with self.store.lock:
            root, summary = led.root(), led.summary()
        got = http.post("/v1/gossip", self.signer.seal({"type": "gossip", "root": root, "summary": summary}, to))
        st = self.stats[url]
        st["rounds"] += 1
        st["last_ms"] = int(time.time() * 1000)
        if not isinstance(got, dict) or got.get("same"):
            return 0
        entries = parse_entries(got.get("entries", []), self.store.params.gossip_batch)
        n_in = self.store.merge_entries(entries)
        theirs = check_summary(got.get("summary", {}))
        with self.store.lock:
            out = led.missing_for(theirs, self.store.params.gossip_batch)
        if out:
            http.post("/v1/gossip/push", self.signer.seal({"type": "push", "entries": [e.to_json() for e in out]}, to))
        st["in"] += n_in
        st["out"] += len(out)
        return n_in + len(out)

    def peer_stats(self) -> dict[str, Any]:
        out = {}
        for url in self.peers:
            s: PeerStats = self.http[url].stats
            out[url] = {**self.stats[url], **s.to_json(), "coordinator": self.peer_ids.get(url)}
        return out
