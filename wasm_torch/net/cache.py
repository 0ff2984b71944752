"""A node's artifact cache: verified artifact folders and their loaded modules, bounded in count.

At most `capacity` artifacts are held (on disk under `root/<sha256>` and loaded); adding one more
evicts the least recently used artifact that no coordinator told the node to keep (growth orders,
growth.py), or the least recently used of all when everything is pinned. Only folders named by a
sha256 under `root` are ever removed: the cache deletes nothing else.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..artifact import MANIFEST, Manifest
from ..errors import ArtifactError
from .errors import BadMessage
from .wire import is_hex_digest

MAX_ORDERS = 256


class ArtifactCache:
    def __init__(self, root: Path, capacity: int) -> None:
        if capacity < 1:
            raise BadMessage(f"the artifact cache must hold at least one artifact, got {capacity}")
        self.root, self.capacity = root, capacity
        root.mkdir(parents=True, exist_ok=True)
        self.held: OrderedDict[str, None] = OrderedDict()  # least recently used first
        for d in sorted(root.iterdir()):  # a previous run's cache (verified again when loaded)
            if is_hex_digest(d.name) and (d / MANIFEST).is_file():
                self.held[d.name] = None
        self.modules: dict[tuple[str, str], tuple[Any, Manifest]] = {}
        self.pins: dict[str, set[str]] = {}  # who ordered it (a coordinator url) -> artifacts to keep
        # loads: artifacts fetched (if not on disk), verified and compiled; load_ms: the time they took
        self.counts = {"downloads": 0, "loads": 0, "load_ms": 0, "prefetched": 0, "evicted": 0, "dropped": 0}

    def folder(self, sha: str) -> Path:
        if not is_hex_digest(sha):
            raise ArtifactError(f"an artifact id is 64 lowercase hex digits, got {str(sha)[:80]!r}")
        return self.root / sha

    def get(self, sha: str, variant: str) -> tuple[Any, Manifest] | None:
        got = self.modules.get((sha, variant))
        if got is not None:
            self.held.move_to_end(sha)
        return got

    def make_room(self, sha: str) -> None:
        """Before fetching or loading `sha`: evict until it fits, so the bound holds at every moment."""
        while len(self.held) >= self.capacity and sha not in self.held:
            pinned = self.pinned()
            self.evict(next((a for a in self.held if a not in pinned), next(iter(self.held))))
            self.counts["evicted"] += 1

    def add(self, sha: str, variant: str, module: Any, manifest: Manifest) -> None:
        self.make_room(sha)
        self.counts["loads"] += 1
        self.modules[(sha, variant)] = (module, manifest)
        self.held[sha] = None
        self.held.move_to_end(sha)

    def evict(self, sha: str) -> None:
        """Forget `sha`: its loaded modules and its folder."""
        for key in [k for k in self.modules if k[0] == sha]:
            del self.modules[key]
        self.held.pop(sha, None)
        shutil.rmtree(self.folder(sha), ignore_errors=True)

    def pinned(self) -> set[str]:
        return set().union(*self.pins.values())

    def drop(self, shas: set[str]) -> None:
        """Evict what a coordinator said to drop, unless some coordinator still says keep."""
        for sha in sorted(shas - self.pinned()):
            if sha in self.held:
                self.evict(sha)
                self.counts["dropped"] += 1


def parse_orders(got: Any) -> tuple[list[tuple[str, str]], set[str], set[str]]:
    """(fetch [(artifact, variant)], keep, drop) from a coordinator's holdings answer. Artifact ids
    name folders of the cache, so each must be a sha256 in hex; every list is bounded."""
    if not isinstance(got, dict):
        raise BadMessage("the holdings answer is not a JSON object")
    fetch, keep, drop = got.get("fetch", []), got.get("keep", []), got.get("drop", [])
    if not all(isinstance(x, list) and len(x) <= MAX_ORDERS for x in (fetch, keep, drop)):
        raise BadMessage(f"fetch, keep and drop must be lists of at most {MAX_ORDERS} entries")
    pairs = []
    for f in fetch:
        if not (isinstance(f, dict) and is_hex_digest(f.get("artifact")) and isinstance(f.get("variant"), str)):
            raise BadMessage("each fetch order is {artifact: <sha256 hex>, variant: <build name>}")
        pairs.append((f["artifact"], f["variant"][:64]))
    if not all(is_hex_digest(a) for a in (*keep, *drop)):
        raise BadMessage("keep and drop list artifact ids (sha256 hex)")
    return pairs, set(keep), set(drop)
