"""The compiled-module cache cannot be poisoned (item 6). It holds native code that wasmtime runs
unchecked, so it is keyed by the sha256 of the bytes actually compiled — never the manifest's claim —
and an unverified load (verify=False) neither reads nor writes it. Corrupted or foreign cache files
are recompiled, and a cache folder other users can write is not used."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

import wasm_torch
from wasm_torch.config import Settings
from wasm_torch.errors import ArtifactError
from wasm_torch.runtime import engine

X = np.ones((1, 4), np.float32)
EVIL_BODY = """
    (f32.store offset=128 (local.get $a) (f32.const 666)) (f32.store offset=132 (local.get $a) (f32.const 666))
    (f32.store offset=136 (local.get $a) (f32.const 666)) (f32.store offset=140 (local.get $a) (f32.const 666))
    (i32.const 0)"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("WASM_TORCH_CACHE", str(d))
    monkeypatch.setattr(engine, "_modules", type(engine._modules)())  # this test's own memory cache
    return d


def test_an_unverified_load_cannot_plant_code_for_a_verified_one(tmp_path, corpus, cache):
    good = corpus.write_base(tmp_path / "good")
    evil = corpus.write_base(tmp_path / "evil", wasm=corpus.wat(body=EVIL_BODY))
    # the hostile folder claims the good module's sha256 (and size) for its own model.wasm
    m = json.loads((evil / "manifest.json").read_text())
    m["files"]["model.wasm"] = json.loads((good / "manifest.json").read_text())["files"]["model.wasm"]
    (evil / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError):  # sizes differ: even unverified, it is read by its listed size
        wasm_torch.load(evil, verify=False)
    m["files"]["model.wasm"]["bytes"] = (evil / "model.wasm").stat().st_size  # same size claim, wrong hash
    (evil / "manifest.json").write_text(json.dumps(m))
    hostile = wasm_torch.load(evil, verify=False)
    assert hostile(X)[0, 0] == 666 and hostile.module_source == "compiled"
    assert not (cache / "modules").exists() or not list((cache / "modules").iterdir())  # wrote nothing
    trusted = wasm_torch.load(good)
    np.testing.assert_array_equal(trusted(X), 2 * X)  # the good code, not the planted one
    assert trusted.module_source == "compiled"
    again = wasm_torch.load(good)
    assert again.module_source == "memory" and np.array_equal(again(X), 2 * X)
    with pytest.raises(wasm_torch.IntegrityError):
        wasm_torch.load(evil)  # verified: the claim is checked


def test_disk_cache_is_keyed_by_content_and_checked(tmp_path, corpus, cache, monkeypatch):
    good = corpus.write_base(tmp_path / "good")
    wasm_torch.load(good)
    files = list((cache / "modules").glob("*.cwasm"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0
    sha = json.loads((good / "manifest.json").read_text())["files"]["model.wasm"]["sha256"]
    settings = Settings(cache_dir=cache, debug=0, no_cache=False)
    assert files[0] == engine.cache_path(settings, sha, False, False)
    monkeypatch.setattr(engine, "_modules", type(engine._modules)())
    assert wasm_torch.load(good).module_source == "disk"
    data = files[0].read_bytes()
    files[0].write_bytes(data[:-100])  # truncated: its digest no longer matches
    monkeypatch.setattr(engine, "_modules", type(engine._modules)())
    m = wasm_torch.load(good)
    assert m.module_source == "compiled" and np.array_equal(m(X), 2 * X)


def test_a_cache_folder_others_can_write_is_not_used(tmp_path, corpus, cache, monkeypatch, caplog):
    good = corpus.write_base(tmp_path / "good")
    wasm_torch.load(good)
    os.chmod(cache / "modules", 0o777)
    monkeypatch.setattr(engine, "_modules", type(engine._modules)())
    with caplog.at_level(logging.WARNING, logger="wasm_torch.runtime"):
        m = wasm_torch.load(good)
    assert m.module_source == "compiled" and "writable by other users" in caplog.text
