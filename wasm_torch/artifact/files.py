"""The files of an artifact: hashing, and refusing contents that do not match the manifest.

Every file is opened through safeio (a regular file inside the folder, no link, FIFO or device)
and its size is compared with the manifest's `bytes` before a single byte is hashed, so a
manifest cannot make the loader read more than it declares.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import IntegrityError
from .layout import MANIFEST, MAX_MEMORY_BYTES
from .manifest import Manifest
from .safeio import open_regular, read_regular

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """sha256 of a regular file (a file this process just wrote, or one inside an artifact folder)."""
    path = Path(path)
    f, _ = open_regular(path.parent, path.name, max_bytes=MAX_MEMORY_BYTES)
    h = hashlib.sha256()
    with f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def _mismatch(folder: str | Path, name: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"{Path(folder) / name} does not match its entry in {MANIFEST} ({why}): the file is corrupt or was "
        "tampered with. Recompile the model or restore the original file."
    )


def verify_bytes(folder: str | Path, manifest: Manifest, name: str, data: bytes | memoryview) -> None:
    """Refuse file contents (already read into memory) that do not match their sha256 in the manifest."""
    sha, size = manifest.file(name)
    if len(data) != size:
        raise _mismatch(folder, name, f"{len(data):,} bytes, the manifest says {size:,}")
    if hashlib.sha256(data).hexdigest() != sha:
        raise _mismatch(folder, name, "sha256 differs")


def read_verified(folder: str | Path, manifest: Manifest, name: str, verify: bool = True) -> bytes:
    """Read one listed file once (size-checked against the manifest first) and check its sha256."""
    _, size = manifest.file(name)
    f, actual = open_regular(folder, name, max_bytes=MAX_MEMORY_BYTES)
    with f:
        if actual != size:
            raise _mismatch(folder, name, f"{actual:,} bytes, the manifest says {size:,}")
        data = f.read(size + 1)
    if verify:
        verify_bytes(folder, manifest, name, data)
    elif len(data) != size:
        raise _mismatch(folder, name, "it changed size while being read")
    return data


def verify_files(folder: str | Path, manifest: Manifest, skip: tuple[str, ...] = ()) -> None:
    """Refuse an artifact whose files do not match the hashes in its manifest.

    `skip`: names checked elsewhere (an encrypted weights.bin is checked after decryption).
    """
    for name in manifest.raw["files"]:
        if name in skip:
            continue
        sha, size = manifest.file(name)
        f, actual = open_regular(folder, name, max_bytes=MAX_MEMORY_BYTES)
        with f:
            if actual != size:
                raise _mismatch(folder, name, f"{actual:,} bytes, the manifest says {size:,}")
            h, n = hashlib.sha256(), 0
            while n <= size:
                chunk = f.read(min(CHUNK, size + 1 - n))
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
        if n != size or h.hexdigest() != sha:
            raise _mismatch(folder, name, "sha256 differs")


__all__ = ["file_entry", "read_regular", "read_verified", "sha256_file", "verify_bytes", "verify_files"]
