"""Rollback protection: a release store remembering the highest signed version seen per model name.

Every signature.json signs a release record `{name, version}` together with the hashes of the
files it covers (signing.py). Signatures alone cannot stop an attacker who puts back an *older*
folder signed by the same key — it still verifies. The store closes that: a JSON file

    {"format": "wasm-torch-releases/1",
     "releases": {"minilm": {"version": 7, "statement_sha256": "<hex>", "key_ids": ["ed25519:…"]}}}

that a verifying load consults and updates under an exclusive file lock (several servers and
replicas may share one file):

- version above the stored one: accepted, and it becomes the stored one;
- the same version with the same signed statement: accepted (a reload, another replica);
- a lower version: refused (rollback);
- the same version with a different statement: refused (two different releases claim one
  version — re-sign the new build with a higher version).

Per name, across all trusted keys: rotating to a new signing key does not reset the counter.
The store is opt-in (`load(..., releases=PATH)` or WASM_TORCH_RELEASES) because it is state: a
machine that should enforce rollback protection must keep the file; deleting it forgets the
history. A corrupt store refuses every signed load (fail closed) until it is fixed or removed.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifact import strictjson
from ..errors import SignatureError

FORMAT = "wasm-torch-releases/1"
MAX_STORE_BYTES = 16 << 20
_SHA = re.compile(r"^[0-9a-f]{64}$")

try:
    import fcntl
except ImportError:  # not POSIX: one process at a time per store
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Release:
    """What a signature says it is: a model name and a monotonically increasing version."""

    name: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}


class ReleaseStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ReleaseStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        fix = f"fix or remove {self.path} (removing it forgets which versions were seen)"
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise SignatureError(f"release store {self.path} cannot be read ({e.strerror}); {fix}") from None
        doc = strictjson.loads(data, f"release store {self.path}", max_bytes=MAX_STORE_BYTES,
                               error=SignatureError, fix=fix)  # fmt: skip
        ok = isinstance(doc, dict) and set(doc) == {"format", "releases"} and doc["format"] == FORMAT
        ok = ok and isinstance(doc["releases"], dict)
        for r in doc["releases"].values() if ok else ():
            ok = ok and isinstance(r, dict) and type(r.get("version")) is int and r["version"] >= 0
            ok = ok and isinstance(r.get("statement_sha256"), str) and bool(_SHA.match(r["statement_sha256"]))
        if not ok:
            raise SignatureError(f"release store {self.path} is not a {FORMAT} file; {fix}")
        return doc["releases"]

    def _write(self, releases: dict[str, dict[str, Any]]) -> None:
        data = strictjson.dumps_canonical({"format": FORMAT, "releases": releases})
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def seen(self, name: str) -> int | None:
        """The highest version recorded for `name`, or None."""
        r = self._read().get(name)
        return None if r is None else int(r["version"])

    def admit(self, release: Release, statement_sha256: str, key_ids: list[str], where: str) -> None:
        """Accept `release` (recording it if new) or raise SignatureError (rules in the module docstring)."""
        with self._locked():
            releases = self._read()
            prev = releases.get(release.name)
            if prev is not None:
                if release.version < prev["version"]:
                    raise SignatureError(
                        f"{where} is release {release.version} of {release.name!r}, but version "
                        f"{prev['version']} was already seen ({self.path}): refusing a rollback to an older "
                        "signed release. Deploy the current release (or a newer one)."
                    )
                if release.version == prev["version"]:
                    if prev["statement_sha256"] != statement_sha256:
                        raise SignatureError(
                            f"{where} claims release {release.version} of {release.name!r}, but a different "
                            f"release with that version was already seen ({self.path}). Re-sign the new build "
                            f"with a higher version: wasm-torch sign FOLDER --key KEY --version {release.version + 1}"
                        )
                    return
            releases[release.name] = {
                "version": release.version,
                "statement_sha256": statement_sha256,
                "key_ids": sorted(key_ids),
            }
            self._write(releases)


def as_store(store: ReleaseStore | str | os.PathLike[str] | None) -> ReleaseStore | None:
    if store is None or isinstance(store, ReleaseStore):
        return store
    return ReleaseStore(store)
