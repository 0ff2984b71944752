"""Never delete what we did not write (item 1): `publish` puts a built artifact in place only over a
missing or empty folder or one of our own artifacts, refuses anything else with a clear error and
leaves it untouched, and never targets '.', '/', the home folder or a folder containing them. The
end-to-end tests reproduce the report: `compile -o out/` over two artifacts and a README, and
`compile(m, x, ".")`."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

import wasm_torch
from wasm_torch.artifact import artifact_kind, check_target, publish
from wasm_torch.errors import ArtifactError


@pytest.fixture
def built(tmp_path, corpus):
    """A complete artifact in a temporary folder beside the targets, as compile() leaves it."""

    def make(name: str = ".wasm_torch_build") -> Path:
        return corpus.write_base(tmp_path / name)

    return make


def tree(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def test_new_and_empty_targets(built, tmp_path):
    out = publish(built(), tmp_path / "new" / "model")
    assert artifact_kind(out) == "artifact" and wasm_torch.load(out).name == "valid"
    (tmp_path / "empty").mkdir()
    assert publish(built(), tmp_path / "empty") == (tmp_path / "empty").resolve()
    assert oct(os.stat(tmp_path / "empty").st_mode & 0o777) != oct(0o700)  # not left private like mkdtemp


def test_an_earlier_artifact_is_replaced_and_its_siblings_kept(built, tmp_path, corpus):
    out = tmp_path / "out"
    corpus.write_base(out / "a")
    corpus.write_base(out / "b")
    (out / "README.md").write_text("mine")
    (out / "a" / "signature.json").write_text("{}")  # ours too: replaced with the rest
    before = tree(out / "b")
    new = built()
    (new / "weights.bin").write_bytes(b"\x01" * 64)
    corpus.rehash(new)
    publish(new, out / "a")
    assert (out / "a" / "weights.bin").read_bytes() == b"\x01" * 64
    assert not (out / "a" / "signature.json").exists()
    assert tree(out / "b") == before and (out / "README.md").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "a", "b"]  # no temp folders left


@pytest.mark.parametrize("setup, why", [
    (lambda d: (d / "README.md").write_text("mine"), "not empty and is not a wasm-torch artifact"),
    (lambda d: (d / "notes").mkdir(), "not empty and is not a wasm-torch artifact"),
    (lambda d: (d / "manifest.json").write_text('{"format": "something-else"}'), "not a wasm-torch artifact"),
])  # fmt: skip
def test_foreign_folders_are_refused_and_untouched(built, tmp_path, setup, why):
    target = tmp_path / "target"
    target.mkdir()
    setup(target)
    before = tree(target)
    with pytest.raises(ArtifactError, match=why) as e:
        publish(built(), target)
    assert str(target) in str(e.value) and "new or empty folder" in str(e.value)
    assert tree(target) == before


def test_files_the_manifest_lists_are_ours(built, tmp_path, corpus):
    """A build variant (model.threads.wasm) listed in the manifest is part of the artifact."""
    art = corpus.write_base(tmp_path / "art")
    (art / "model.threads.wasm").write_bytes(b"\0asm")
    m = json.loads((art / "manifest.json").read_text())
    m["files"]["model.threads.wasm"] = {}
    (art / "manifest.json").write_text(json.dumps(m))
    corpus.rehash(art)
    assert artifact_kind(art) == "artifact"
    publish(built(), art)
    assert not (art / "model.threads.wasm").exists()


def test_an_artifact_folder_holding_a_users_file_is_not_ours(built, tmp_path, corpus):
    art = corpus.write_base(tmp_path / "art")
    (art / "README.md").write_text("notes about this model")
    with pytest.raises(ArtifactError, match=r"README\.md"):
        publish(built(), art)
    assert (art / "README.md").read_text() == "notes about this model"


def test_protected_targets(built, tmp_path, monkeypatch):
    work = tmp_path / "home" / "user" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home" / "user"))
    for target, why in [(".", "not a folder name"), ("..", "not a folder name"), ("", "not a folder name"),
                        (str(work), "the current folder"), (str(work.parent), "contains the current folder|home"),
                        (str(tmp_path / "home"), "contains"), ("/", "not a folder name|root")]:  # fmt: skip
        with pytest.raises(ArtifactError, match=why):
            check_target(target)
    assert sorted(os.listdir(work)) == []


def test_links_and_files_are_not_replaced(built, tmp_path, corpus):
    real = corpus.write_base(tmp_path / "real")
    os.symlink(real, tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="symbolic link"):
        publish(built(), tmp_path / "link")
    with pytest.raises(ArtifactError, match="not a folder"):
        publish(built(), tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x" and artifact_kind(real) == "artifact"


def test_a_file_added_while_compiling_survives(built, tmp_path, corpus, monkeypatch):
    """The check passed, then someone wrote into the old artifact before the swap: their file is kept."""
    out = corpus.write_base(tmp_path / "out")
    import importlib

    mod = importlib.import_module("wasm_torch.artifact.publish")

    real_check = mod.check_target

    def check_then_write(target):
        r = real_check(target)
        (out / "late.txt").write_text("written during the compile")
        return r

    monkeypatch.setattr(mod, "check_target", check_then_write)
    publish(built(), out)
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".out.old-")]
    assert len(kept) == 1 and (kept[0] / "late.txt").read_text() == "written during the compile"
    assert artifact_kind(out) == "artifact"


def test_pipeline_folders_are_ours(built, tmp_path, corpus):
    pipe = tmp_path / "pipe"
    corpus.write_base(pipe / "stage_0")
    (pipe / "pipeline.json").write_text(json.dumps({"format": "wasm-torch-pipeline/1"}))
    assert artifact_kind(pipe) == "pipeline"
    publish(built(), pipe)
    assert artifact_kind(pipe) == "artifact" and not (pipe / "stage_0").exists()


def test_another_file_system(built, tmp_path, monkeypatch):
    """tmp on another device (rename fails with EXDEV): copied beside the target, then renamed."""
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        if not calls:
            calls.append(src)
            raise OSError(errno.EXDEV, "cross-device link")
        return real_rename(src, dst)

    other = tmp_path / "elsewhere"
    src = built()
    shutil.move(src, other)
    monkeypatch.setattr(os, "rename", rename)
    out = publish(other, tmp_path / "dst" / "m")
    assert artifact_kind(out) == "artifact" and not other.exists() and calls


# ---- end to end with the compiler ------------------------------------------------------------------
@pytest.mark.toolchain
@pytest.mark.wasm
def test_compile_never_deletes_a_users_folder(tmp_path, monkeypatch, corpus):
    import torch

    model, x = torch.nn.Linear(4, 2).eval(), torch.randn(1, 4)
    out = tmp_path / "out"
    corpus.write_base(out / "one")
    corpus.write_base(out / "two")
    (out / "README.md").write_text("our models")
    before = tree(out)
    with pytest.raises(wasm_torch.WasmTorchError, match="not empty and is not a wasm-torch artifact"):
        wasm_torch.compile(model, (x,), out)  # `wasm-torch compile ... -o out/`
    assert tree(out) == before
    art = wasm_torch.compile(model, (x,), out / "one")  # an earlier artifact's folder: replaced
    assert json.loads((out / "one" / "manifest.json").read_text())["name"] == "one" and art.path == out / "one"
    assert tree(out / "two") == before_two(before) and (out / "README.md").read_text() == "our models"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("keep me")
    monkeypatch.chdir(cwd)
    with pytest.raises(wasm_torch.WasmTorchError):
        wasm_torch.compile(model, (x,), ".")
    assert sorted(os.listdir(cwd)) == ["notes.txt"]


def before_two(before: dict[str, bytes]) -> dict[str, bytes]:
    return {k.split("/", 1)[1]: v for k, v in before.items() if k.startswith("two/")}


def test_package_never_overwrites_a_users_folder(tmp_path, corpus):
    """`wasm-torch package ART --web SITE` writes index.html, serve.py, ... into SITE: only a new,
    empty or earlier site folder is accepted."""
    from wasm_torch.deploy.web import package_site

    art = corpus.write_base(tmp_path / "art")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("my home page")
    (site / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match=r"notes\.txt"):
        package_site(art, site)
    assert (site / "index.html").read_text() == "my home page"
    fresh = package_site(art, tmp_path / "fresh")
    assert (fresh / "model" / "model.wasm").is_file()
    assert package_site(art, fresh) == fresh  # an earlier site is updated
