"""The files of an artifact: hashing, and refusing contents that do not match the manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, IntegrityError
from .layout import MANIFEST
from .manifest import Manifest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def verify_bytes(folder: str | Path, manifest: Manifest, name: str, data: bytes | memoryview) -> None:
    """Refuse file contents (already read into memory) that do not match their sha256 in the manifest."""
    entry = manifest.raw["files"][name]
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise IntegrityError(
            f"{Path(folder) / name} does not match its sha256 in {MANIFEST}: the file is corrupt or was "
            "tampered with. Recompile the model or restore the original file."
        )


def verify_files(folder: str | Path, manifest: Manifest, skip: tuple[str, ...] = ()) -> None:
    """Refuse an artifact whose files do not match the hashes in its manifest.

    `skip`: names checked elsewhere (an encrypted weights.bin is checked after decryption).
    """
    folder = Path(folder)
    for name, entry in manifest.raw["files"].items():
        if name in skip:
            continue
        p = folder / name
        if not p.exists():
            raise ArtifactError(f"{p} is missing (listed in {MANIFEST}); the artifact is incomplete")
        if p.stat().st_size != entry["bytes"] or sha256_file(p) != entry["sha256"]:
            raise IntegrityError(
                f"{p} does not match its sha256 in {MANIFEST}: the file is corrupt or was tampered with. "
                "Recompile the model or restore the original file."
            )


