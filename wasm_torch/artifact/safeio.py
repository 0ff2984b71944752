"""Opening the files of an artifact folder: only regular files directly inside it, size-checked first.

A manifest is data from whoever wrote the folder. Opening `folder / name` naively lets it name
`../../etc/shadow` or an absolute path (an existence and sha256 oracle for any file the loader can
read), `/dev/zero` (hashes forever), a FIFO (open() blocks forever) or a symbolic link to any of
those. Here a name is one path component from a strict alphabet; the file is opened with
O_NOFOLLOW | O_NONBLOCK (so neither a link nor a FIFO can redirect or block the open), then
checked with fstat on the open descriptor (no race between check and use): it must be a regular
file no larger than the caller's limit. Reads stop at the size fstat reported.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import ArtifactError
from .layout import NAME_RE

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def check_name(name: str, where: str) -> None:
    """Refuse a file name that is not one plain path component (no '/', '..', absolute path, NUL)."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise ArtifactError(
            f"{where}: file name {str(name)[:80]!r} is not allowed; artifact files are plain names inside "
            "the artifact folder (letters, digits, '_', '.', '-'; no paths)"
        )


def open_regular(folder: str | os.PathLike[str], name: str, *, max_bytes: int) -> tuple[BinaryIO, int]:
    """(binary file, size) for `folder/name`, a regular file of at most `max_bytes` bytes. `name` is one
    path component (manifest entries are checked further by check_name)."""
    folder = Path(folder)
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ArtifactError(f"{folder}: {str(name)[:80]!r} is not a file name inside the folder")
    path = folder / name
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing; the artifact is incomplete (recompile or restore it)") from None
    except OSError as e:
        if os.path.islink(path):
            raise ArtifactError(
                f"{path} is a symbolic link; artifact files must be regular files inside the folder "
                "(copy the file instead of linking it)"
            ) from None
        raise ArtifactError(f"{path} cannot be opened ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(
                f"{path} is not a regular file (a folder, FIFO, socket or device); an artifact holds only "
                "regular files"
            )
        if st.st_size > max_bytes:
            raise ArtifactError(f"{path} is {st.st_size:,} bytes, over the {max_bytes:,}-byte limit for it")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular(folder: str | os.PathLike[str], name: str, *, max_bytes: int) -> bytes:
    """The whole content of `folder/name` (see open_regular), read once."""
    f, size = open_regular(folder, name, max_bytes=max_bytes)
    with f:
        data = f.read(size + 1)
    if len(data) != size:
        raise ArtifactError(f"{Path(folder) / name} changed size while it was being read; try again")
    return data
