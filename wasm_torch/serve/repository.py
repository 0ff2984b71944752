"""Hot reload: poll the model repository folder and follow its changes (`--model-control poll`).

Every `repository_poll_s` the watcher takes a fingerprint of each artifact folder under the
repository (relative path, size and modification time of every file, hashed) and:

- a folder whose fingerprint changed is reloaded once the change has settled (the same new
  fingerprint on two polls in a row, so a folder being copied in is not loaded half-written);
  the old version serves until the new one is ready, and requests in flight on the old version
  finish on it (`Registry.lease`); a new version that fails its checks (malformed, tampered,
  unsigned under the signing policy) is refused and the old version keeps serving;
- a new folder is loaded the same way; a folder that disappeared is unloaded (requests in flight
  finish; new ones get 404).

A refused change is not retried until the folder changes again. The watcher only reads the
folder; it never writes or deletes anything in it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from wasm_torch.serve.errors import LoadRefused
from wasm_torch.serve.registry import Registry

log = logging.getLogger("wasm_torch.serve")


def fingerprint(folder: Path) -> str:
    """A hash of every file's relative path, size and mtime under `folder` ("" if unreadable)."""
    h = hashlib.sha256()
    try:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = Path(root, name)
                st = path.stat()
                h.update(f"{path.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError:  # a file vanished mid-walk: the folder is changing; the next poll sees it settled
        return ""
    return h.hexdigest()


class RepositoryWatcher:
    """Polls `registry.root` and loads, reloads or unloads what changed (see the module doc)."""

    def __init__(self, registry: Registry, interval_s: float) -> None:
        if registry.root is None:
            raise ValueError("polling needs a repository folder (serve a folder, not a dict of models)")
        self.registry, self.interval_s = registry, interval_s
        self.seen = {name: fingerprint(path) for name, path in registry.on_disk().items()}
        self._pending: dict[str, str] = {}  # name -> fingerprint seen once, waiting to settle
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.actions: list[tuple[str, str]] = []  # (model, what happened), for tests and logs

    def poll(self) -> None:
        """One pass: compare each folder's fingerprint with the one being served, act on settled
        changes."""
        on_disk = self.registry.on_disk()
        for name, path in on_disk.items():
            now = fingerprint(path)
            if not now or now == self.seen.get(name):
                self._pending.pop(name, None)
                continue
            if self._pending.get(name) != now:  # changed since the last poll: wait for it to settle
                self._pending[name] = now
                continue
            del self._pending[name]
            self.seen[name] = now  # a refused version is not retried until the folder changes again
            try:
                self.actions.append((name, self.registry.load(name)))
            except LoadRefused as e:
                self.actions.append((name, "refused"))
                log.error("repository poll: %s", e)
        for name in [n for n in self.seen if n not in on_disk]:
            del self.seen[name]
            self._pending.pop(name, None)
            if name in self.registry.pools:
                self.registry.unload(name, "its folder was removed from the repository")
                self.actions.append((name, "unloaded"))

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.poll()
                except Exception:  # the watcher must outlive any one bad pass
                    log.exception("repository poll failed")

        self._thread = threading.Thread(target=loop, daemon=True, name="wt-repository")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
