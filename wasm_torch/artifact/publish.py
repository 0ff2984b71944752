"""Putting a freshly built artifact folder in place without ever deleting what we did not write.

`compile(..., out_dir)` builds in a temporary folder beside the target and calls `publish(tmp,
out_dir)`, which replaces `out_dir` only when it is missing, empty, or itself one of our artifacts
(a `wasm-torch/1` manifest or a pipeline folder, holding nothing but the files we write: the fixed
names and the files its manifest lists). Any other folder is refused with an error naming what is
in it. The current folder, `/`, the home
folder and every folder containing the current folder or the home folder are never targets.

The swap is two renames in the same parent folder: the old artifact moves aside, the new one takes
its name, then the old one is removed file by file — only names we write, so a file someone put
there in between survives (the folder is then left beside the target and logged).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from . import strictjson
from .layout import (
    DEBUG_FILES,
    ENCRYPTED_WEIGHTS,
    FORMAT,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_SMALL_FILE_BYTES,
    NAME_RE,
    PIPELINE,
    SIGNATURE,
    WASM,
    WEIGHTS,
)
from .safeio import read_regular

log = logging.getLogger("wasm_torch.artifact")
OUR_FILES = frozenset({MANIFEST, WASM, WEIGHTS, ENCRYPTED_WEIGHTS, SIGNATURE, *DEBUG_FILES})
_STALE = re.compile(r"^\.(weights\.bin\.enc|signature\.json)\.tmp\d+$")  # left by a crash mid-write
PIPELINE_FORMAT = "wasm-torch-pipeline/1"


def _read(folder: Path, name: str, max_bytes: int) -> dict[str, Any]:
    try:
        doc = strictjson.loads(read_regular(folder, name, max_bytes=max_bytes), name, max_bytes=max_bytes)
    except ArtifactError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _ours(folder: Path) -> set[str]:
    """The names we write in an artifact folder: the fixed ones and every file its manifest lists
    (model.wasm, weights.bin and any build variant), if the manifest is ours."""
    doc = _read(folder, MANIFEST, MAX_MANIFEST_BYTES)
    if doc.get("format") != FORMAT:
        return set()
    listed = doc.get("files")
    return set(OUR_FILES) | {n for n in (listed if isinstance(listed, dict) else ()) if NAME_RE.match(n)}


def artifact_kind(folder: str | os.PathLike[str]) -> str | None:
    """'artifact' or 'pipeline' when `folder` is one of ours and holds only files we write, else None."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return None
    entries = list(os.scandir(folder))
    names = {e.name for e in entries}
    if MANIFEST in names:
        ours = _ours(folder)
        ok = bool(ours) and all((e.name in ours or _STALE.match(e.name)) and e.is_file(follow_symlinks=False)
                                for e in entries)  # fmt: skip
        return "artifact" if ok else None
    if PIPELINE in names and _read(folder, PIPELINE, MAX_SMALL_FILE_BYTES).get("format") == PIPELINE_FORMAT:
        for e in entries:
            if e.name in (PIPELINE, SIGNATURE) and e.is_file(follow_symlinks=False):
                continue
            if not (e.is_dir(follow_symlinks=False) and artifact_kind(e.path) == "artifact"):
                return None
        return "pipeline"
    return None


def _protected(target: Path) -> str | None:
    if target.parent == target:
        return "the root folder"
    for label, p in (("the current folder", Path.cwd()), ("your home folder", Path.home())):
        p = p.resolve()
        if target == p:
            return label
        if target in p.parents:
            return f"a folder that contains {label} ({p})"
    return None


def _resolved(out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    if out.name in ("", ".", ".."):
        raise ArtifactError(
            f"{str(out_dir)!r} is not a folder name compile can write to: give a new folder such as "
            f"{os.path.join(str(out_dir) or '.', 'model')!r}"
        )
    return out.parent.resolve() / out.name


def check_target(out_dir: str | os.PathLike[str]) -> Path:
    """Refuse an output folder `publish` would not replace (see module docstring); returns it resolved."""
    target = _resolved(out_dir)
    what = _protected(target)
    if what is not None:
        raise ArtifactError(
            f"refusing to write an artifact to {target}: it is {what}. Give a new folder, e.g. {target / 'model'}"
        )
    if target.is_symlink():
        raise ArtifactError(f"{target} is a symbolic link; give the real folder (or a new one) as the output")
    if not target.exists():
        return target
    if not target.is_dir():
        raise ArtifactError(f"{target} exists and is not a folder; give a new folder as the output")
    if not any(target.iterdir()) or artifact_kind(target) is not None:
        return target
    shown = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
    more = f" and {len(shown) - 6} more" if len(shown) > 6 else ""
    raise ArtifactError(
        f"{target} is not empty and is not a wasm-torch artifact (it holds {', '.join(shown[:6])}{more}): "
        "refusing to replace it. Compile into a new or empty folder (e.g. "
        f"{target / 'model'}), or into the folder of an earlier artifact, which is replaced."
    )


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _remove_ours(folder: Path) -> bool:
    """Delete the files we write (and stage folders of a pipeline), then the folder; True if it is gone."""
    ours = _ours(folder) | {PIPELINE} if (folder / MANIFEST).is_file() else set(OUR_FILES) | {PIPELINE}
    for e in list(os.scandir(folder)):
        if e.is_dir(follow_symlinks=False) and artifact_kind(e.path) == "artifact":
            _remove_ours(Path(e.path))
        elif (e.name in ours or _STALE.match(e.name)) and e.is_file(follow_symlinks=False):
            os.unlink(e.path)
    try:
        folder.rmdir()
        return True
    except OSError:
        return False


def publish(tmp: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Move the complete artifact folder `tmp` to `out_dir` (rules in the module docstring)."""
    tmp, target = Path(tmp), check_target(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it 0700; an artifact is as readable as any new folder
    if tmp.parent.resolve() != target.parent:
        staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
        try:
            os.rename(tmp, staged / "a")
        except OSError as e:  # another file system: copy beside the target, then rename
            if e.errno != errno.EXDEV:
                raise
            shutil.copytree(tmp, staged / "a")
            shutil.rmtree(tmp)
        os.chmod(staged / "a", 0o777 & ~_umask())
        tmp = staged / "a"
    else:
        staged = None
    old = None
    try:
        if target.exists() and any(target.iterdir()):
            old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError as e:
            if old is not None:
                os.rename(old, target)
                old = None
            raise ArtifactError(
                f"could not move the new artifact to {target} ({e.strerror}): something else wrote there "
                "while compiling. Nothing was replaced."
            ) from None
    finally:
        if staged is not None:
            with contextlib.suppress(OSError):
                staged.rmdir()
    if old is not None and not _remove_ours(old):
        log.warning("%s held files wasm-torch did not write; they were kept in %s", target, old)
    return target
