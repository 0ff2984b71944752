"""Files of an artifact are only regular files inside its folder, size-checked before reading (item 4):
no path out of the folder, no symbolic link, FIFO (which would block open() forever) or device
(/dev/zero would hash forever). Each refusal is immediate and an ArtifactError."""

from __future__ import annotations

import os
import threading
import time

import pytest

import wasm_torch
from wasm_torch.artifact import open_regular, read_regular, verify_files
from wasm_torch.artifact.safeio import check_name
from wasm_torch.errors import ArtifactError


def test_regular_files_inside_the_folder_are_read(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    assert read_regular(tmp_path, "a.bin", max_bytes=3) == b"abc"
    with pytest.raises(ArtifactError, match="over the 2-byte limit"):
        read_regular(tmp_path, "a.bin", max_bytes=2)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".", "", "x\0y"])
def test_names_that_are_paths_are_refused(tmp_path, name):
    with pytest.raises(ArtifactError, match=r"not a file name|not allowed"):
        open_regular(tmp_path, name, max_bytes=10)
    with pytest.raises(ArtifactError, match="not allowed"):
        check_name(name, "manifest")


def test_links_fifos_devices_and_folders_are_refused_without_blocking(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(b"secret")
    os.symlink(outside, tmp_path / "link")
    os.symlink("/dev/zero", tmp_path / "zero")
    os.mkfifo(tmp_path / "fifo")  # nobody ever writes to it: a plain open() would block forever
    (tmp_path / "dir").mkdir()
    done: list[str] = []

    def attempt() -> None:
        for name, why in [("link", "symbolic link"), ("zero", "symbolic link"), ("fifo", "not a regular file"),
                          ("dir", "not a regular file"), ("missing", "is missing")]:  # fmt: skip
            with pytest.raises(ArtifactError, match=why):
                read_regular(tmp_path, name, max_bytes=1 << 30)
            done.append(name)

    t = threading.Thread(target=attempt, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(10)
    assert len(done) == 5, f"blocked after {done}"
    assert time.monotonic() - t0 < 5


def test_the_loader_never_reads_a_file_larger_than_its_manifest_entry(tmp_path, corpus, monkeypatch):
    """A weights.bin grown to 64 MiB is refused from its size: the bytes are never read or hashed."""
    folder = corpus.write_base(tmp_path / "a")
    with open(folder / "weights.bin", "ab") as f:
        f.truncate(64 << 20)
    import hashlib

    real = hashlib.sha256
    seen: list[int] = []

    def counting(data: bytes = b"", *a, **k):
        seen.append(len(data))
        return real(data, *a, **k)

    monkeypatch.setattr(hashlib, "sha256", counting)
    with pytest.raises(ArtifactError, match="67,108,864 bytes, the manifest says 64"):
        wasm_torch.load(folder)
    assert max(seen, default=0) < 1 << 20
    monkeypatch.undo()
    with pytest.raises(ArtifactError, match="the manifest says 64"):
        verify_files(folder, wasm_torch.artifact.read_manifest(folder))
