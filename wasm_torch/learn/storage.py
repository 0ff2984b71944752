"""Durable, pickle-free files for the learning state: atomic JSON / npz writes, an fsynced JSON-lines
journal, and strict readers that turn anything malformed into a `LearningError` naming the file.

Why a journal: `post_query` must not lose an acknowledged outcome when the process is killed, and
rewriting a 10,000-entry snapshot per outcome is wasteful. So an outcome is one appended, fsynced
JSON line; `background_learn` folds the journal into the npz snapshot (written to a temporary file,
fsynced, then renamed over the old one) and only then empties the journal. A torn *last* line is an
append that never returned (not acknowledged) and is ignored; a malformed line anywhere else means
the file was damaged, and we refuse it rather than guess.

We never delete or overwrite a file we cannot read: the error says which file and what to do.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LearningError

MAX_JSON_BYTES = 64 * 1024 * 1024  # a memory / bank file larger than this is not ours
MAX_LINE_BYTES = 1024 * 1024  # one journal record


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never a mix, even after
    a crash (temporary file in the same folder, fsync, rename, fsync the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, allow_nan=False, separators=(",", ":")).encode())


def atomic_write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    for k, v in arrays.items():
        if v.dtype.hasobject:
            raise LearningError(f"refusing to write object array {k!r} to {path} (it would need pickle)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _damaged(path: Path, why: str) -> LearningError:
    return LearningError(
        f"{path} is not a usable wasm-torch learning file ({why}). It was left as it is: move it "
        "aside (or point --memory at another folder) to start with an empty memory."
    )


def read_json(path: Path, what: str, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file we wrote; bad size, encoding, NaN/Infinity or syntax is a LearningError."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise _damaged(path, f"{size} bytes is over the {limit}-byte limit for a {what}")
        text = path.read_bytes().decode("utf-8")
        return json.loads(text, parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _damaged(path, f"cannot read it as a {what}: {e}") from e


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def read_npz(path: Path, spec: dict[str, tuple[str, int]]) -> dict[str, np.ndarray]:
    """Load an npz with allow_pickle=False and check each array's dtype kind and rank.

    spec: name -> (dtype kinds allowed, e.g. "f" or "U", rank)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = sorted(set(spec) - set(z.files))
            if missing:
                raise _damaged(path, f"missing arrays {missing}")
            out = {k: z[k] for k in spec}
    except LearningError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise _damaged(path, f"cannot read it as npz: {e}") from e
    for k, (kinds, rank) in spec.items():
        a = out[k]
        if a.dtype.kind not in kinds or a.ndim != rank:
            raise _damaged(path, f"array {k!r} is {a.dtype}{list(a.shape)}, expected kind {kinds!r} rank {rank}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise _damaged(path, f"array {k!r} has NaN or infinite values")
    return out


class Journal:
    """Append-only JSON lines; `append` returns only after the line is on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False, separators=(",", ":")).encode() + b"\n"
        if len(line) > MAX_LINE_BYTES:
            raise LearningError(f"a journal record of {len(line)} bytes is over the {MAX_LINE_BYTES}-byte limit")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:  # full disk, read-only folder: the outcome was not recorded, say so
            raise LearningError(f"could not record to {self.path}: {e}") from e

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if len(data) > MAX_JSON_BYTES:
            raise _damaged(self.path, f"journal of {len(data)} bytes is over the {MAX_JSON_BYTES}-byte limit")
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline; else an unacknowledged torn append
        del torn
        out = []
        for k, raw in enumerate(lines):
            try:
                rec = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                raise _damaged(self.path, f"line {k + 1} is not JSON: {e}") from e
            if not isinstance(rec, dict):
                raise _damaged(self.path, f"line {k + 1} is not a JSON object")
            out.append(rec)
        return out

    def clear(self) -> None:
        """Empty the journal (after its records are safely in the snapshot)."""
        if self.path.exists():
            atomic_write_bytes(self.path, b"")


@contextmanager
def locked(folder: Path, timeout_s: float = 60.0) -> Iterator[None]:
    """An inter-process lock on a learning folder (two tuners sharing one memory take turns)."""
    from filelock import FileLock, Timeout

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LearningError(f"cannot use {folder} as a learning folder: {e}") from e
    lock = FileLock(str(folder / ".lock"), timeout=timeout_s)
    try:
        with lock:
            yield
    except Timeout as e:
        raise LearningError(
            f"another process has held the lock on {folder} for over {timeout_s:g} s; "
            "wait for it to finish or use another --memory folder"
        ) from e
