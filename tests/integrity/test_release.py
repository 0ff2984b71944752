"""What a signature binds (item 7): every file that determines behaviour (manifest.json; a cascade's
cascade.json and its members' manifests), the release name (two signed folders swapped are refused)
and the version (a release store refuses rollbacks). signature.json is parsed strictly: no trailing
bytes, duplicate keys or duplicate entries. Built on the hand-made artifact (no compiler needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import wasm_torch
from wasm_torch.artifact.strictjson import dumps_canonical
from wasm_torch.cli import main
from wasm_torch.errors import IntegrityError, SignatureError
from wasm_torch.integrity import signing
from wasm_torch.integrity.releases import Release, ReleaseStore
from wasm_torch.serve.cascade import load_cascade, write_config

X = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    k = signing.generate_key("ed25519")
    signing.write_private_key(k, d / "k.key")
    return k, signing.write_public_key(k, d / "k.pub"), d


def art(corpus, folder: Path, scale: float = 2.0) -> Path:
    corpus.write_base(folder)
    (folder / "weights.bin").write_bytes(np.array([scale] + [0.0] * 15, np.float32).tobytes())
    corpus.rehash(folder)
    return folder


def test_the_release_name_is_bound(corpus, key, tmp_path):
    k, pub, _ = key
    a, b = art(corpus, tmp_path / "approve", 1.0), art(corpus, tmp_path / "deny", 0.0)
    for f in (a, b):
        signing.sign_artifact(f, [k])
    assert wasm_torch.load(a, trusted_keys=[pub]).release == Release("approve", 1)
    tmp = tmp_path / "swap"
    a.rename(tmp)
    b.rename(a)  # 'approve' now holds what was signed as 'deny'
    with pytest.raises(SignatureError, match="signed as release 'deny', but it is being loaded as 'approve'"):
        wasm_torch.load(a, trusted_keys=[pub])
    assert wasm_torch.load(a, trusted_keys=[pub], name="deny").release.name == "deny"  # explicit name
    assert wasm_torch.load(a, trusted_keys=[pub], name="*").release.name == "deny"
    # a content-addressed copy (folder named by its manifest's sha256) is bound by that hash
    sha = wasm_torch.load(a, trusted_keys=[pub], name="*").manifest_sha256
    shutil.copytree(a, tmp_path / sha)
    assert wasm_torch.load(tmp_path / sha, trusted_keys=[pub]).release.name == "deny"


def test_rollback_and_conflicting_releases_are_refused(corpus, key, tmp_path):
    k, pub, _ = key
    store = ReleaseStore(tmp_path / "state" / "releases.json")
    f = art(corpus, tmp_path / "m")
    signing.sign_artifact(f, [k])  # version 1 by default
    old = tmp_path / "old"
    shutil.copytree(f, old)
    assert wasm_torch.load(f, trusted_keys=[pub], releases=store).release.version == 1
    (f / "weights.bin").write_bytes(np.array([3.0] + [0.0] * 15, np.float32).tobytes())
    corpus.rehash(f)
    signing.sign_artifact(f, [k])  # the files changed: version 2 by default
    m = wasm_torch.load(f, trusted_keys=[pub], releases=store)
    assert m.release.version == 2 and np.array_equal(m(X), 3 * X) and store.seen("m") == 2
    assert wasm_torch.load(f, trusted_keys=[pub], releases=store).release.version == 2  # a reload is fine
    shutil.rmtree(f)
    shutil.copytree(old, f)  # put the older signed release back
    with pytest.raises(SignatureError, match="rollback"):
        wasm_torch.load(f, trusted_keys=[pub], releases=store)
    (f / "weights.bin").write_bytes(np.array([4.0] + [0.0] * 15, np.float32).tobytes())
    corpus.rehash(f)
    signing.sign_artifact(f, [k], version=2)  # a different build claiming the version already seen
    with pytest.raises(SignatureError, match="different release with that version"):
        wasm_torch.load(f, trusted_keys=[pub], releases=store)
    signing.sign_artifact(f, [k], version=3)
    assert wasm_torch.load(f, trusted_keys=[pub], releases=store).release.version == 3
    store.path.write_text("{not json")
    with pytest.raises(SignatureError, match="fix or remove"):
        wasm_torch.load(f, trusted_keys=[pub], releases=store)  # a corrupt store fails closed


def test_the_release_store_comes_from_the_environment(corpus, key, tmp_path, monkeypatch):
    k, pub, _ = key
    monkeypatch.setenv("WASM_TORCH_RELEASES", str(tmp_path / "r.json"))
    f = art(corpus, tmp_path / "m")
    signing.sign_artifact(f, [k], version=5)
    wasm_torch.load(f, trusted_keys=[pub])
    assert json.loads((tmp_path / "r.json").read_text())["releases"]["m"]["version"] == 5
    signing.sign_artifact(f, [k], version=4)
    with pytest.raises(SignatureError, match="rollback"):
        wasm_torch.load(f, trusted_keys=[pub])


def _resign(f: Path, k, change) -> None:
    """Rewrite signature.json through `change` and sign the result again with `k` (a valid signature
    over a statement the attacker chose): only the strict format check can refuse it."""
    doc = json.loads((f / "signature.json").read_text())
    change(doc)
    (f / "signature.json").write_bytes(dumps_canonical(doc) + b"\n")


@pytest.mark.parametrize("mutate, why", [
    (lambda b: b + b"x", "Extra data"),
    (lambda b: b + b"\n", "canonical form"),
    (lambda b: b.replace(b"{", b"{ ", 1), "canonical form"),
    (lambda b: b.replace(b'"covers":', b'"covers":{"manifest.json":"' + b"0" * 64 + b'"},"covers":', 1), "duplicate key"),
    (lambda b: b.replace(b'"signatures":[', b'"signatures":[' + b.split(b'"signatures":[')[1].split(b"]")[0] + b",", 1),
     "repeats key"),
    (lambda b: b[:-1] + b"\x00", "not valid JSON|control"),
])  # fmt: skip
def test_signature_json_is_parsed_strictly(corpus, key, tmp_path, mutate, why):
    k, pub, _ = key
    f = art(corpus, tmp_path / "m")
    signing.sign_artifact(f, [k])
    wasm_torch.load(f, trusted_keys=[pub])
    (f / "signature.json").write_bytes(mutate((f / "signature.json").read_bytes()))
    with pytest.raises(SignatureError, match=why):
        wasm_torch.load(f, trusted_keys=[pub])


def test_hybrid_signing_in_two_steps_keeps_the_version(corpus, key, tmp_path):
    k, pub, _ = key
    pq = signing.generate_key("ml-dsa-65")
    f = art(corpus, tmp_path / "m")
    signing.sign_artifact(f, [k], version=7)
    signing.sign_artifact(f, [pq])  # same files: same release, both signatures kept
    doc = json.loads((f / "signature.json").read_text())
    assert doc["release"]["version"] == 7 and len(doc["signatures"]) == 2
    m = wasm_torch.load(f, trusted_keys=[pub, pq.public_key()])
    assert len(m.signed_by) == 2


# ---- cascades -------------------------------------------------------------------------------------
@pytest.fixture
def cascade(corpus, key, tmp_path):
    k, pub, _ = key
    root = tmp_path / "sentiment"
    root.mkdir()
    art(corpus, root / "small", 1.0)
    art(corpus, root / "large", 5.0)
    write_config(root, "small", "large", threshold=0.9, output="y")
    signing.sign_artifact(root, [k], version=1)
    return root, k, pub


def test_a_signed_cascade_covers_its_config_and_members(cascade):
    root, _, pub = cascade
    doc = json.loads((root / "signature.json").read_text())
    assert sorted(doc["covers"]) == ["cascade.json", "large/manifest.json", "small/manifest.json"]
    member = json.loads((root / "small" / "signature.json").read_text())["release"]
    assert member == {"name": "sentiment/small", "version": 1}
    c = load_cascade(root, trusted_keys=[pub])
    out = c.run({"x": X})
    assert out["y"].shape == (2, 4) and c.threshold == 0.9
    assert signing.verify_artifact(root, [pub], name=None).release.name == "sentiment"


@pytest.mark.parametrize("attack", ["threshold", "swap_members", "member_elsewhere", "member_replaced", "unsigned"])
def test_cascade_tampering_is_refused(cascade, corpus, tmp_path, attack):
    root, k, pub = cascade
    cfg = json.loads((root / "cascade.json").read_text())
    if attack == "threshold":  # everything answered by the small model
        cfg["threshold"] = 0
    elif attack == "swap_members":
        cfg["small"], cfg["large"] = cfg["large"], cfg["small"]
    elif attack == "member_elsewhere":
        other = art(corpus, tmp_path / "elsewhere", 9.0)
        signing.sign_artifact(other, [k])
        cfg["small"] = str(other)
    if attack in ("threshold", "swap_members", "member_elsewhere"):
        (root / "cascade.json").write_text(json.dumps(cfg))
    if attack == "member_replaced":  # another validly signed member dropped in place of 'small'
        shutil.rmtree(root / "small")
        art(corpus, root / "small", 9.0)
        signing.sign_artifact(root / "small", [k])  # signs it as sentiment/small: only the pin catches it
    if attack == "unsigned":
        (root / "signature.json").unlink()
    why = {"member_replaced": r"small/manifest\.json was modified after signing",
           "unsigned": "not signed"}.get(attack, r"cascade\.json was modified after signing")
    with pytest.raises(IntegrityError, match=why):
        load_cascade(root, trusted_keys=[pub])


def test_a_member_swapped_after_start_up_is_refused_at_the_next_instance(cascade, corpus):
    """The server verifies the cascade once (start-up) and makes instances later (replicas, restarts):
    each member instance must run the manifest the cascade's signature pinned."""
    from wasm_torch.serve.cascade import cascade_factory

    root, k, pub = cascade
    make = cascade_factory(root, lambda p: lambda: wasm_torch.load(p, trusted_keys=[pub]), {"trusted_keys": [pub]})
    assert make().run({"x": X})["y"].shape == (2, 4)
    shutil.rmtree(root / "small")
    art(corpus, root / "small", 9.0)
    signing.sign_artifact(root / "small", [k])  # validly signed as sentiment/small, but not the pinned build
    with pytest.raises(IntegrityError, match=r"does not run the manifest\.json the cascade's signature pins"):
        make()


def test_cli_sign_and_verify_with_name_version_and_store(corpus, key, tmp_path, capsys):
    _, pub, d = key
    f = art(corpus, tmp_path / "m")
    assert main(["sign", str(f), "--key", str(d / "k.key"), "--version", "4"]) == 0
    assert "release 'm' version 4" in capsys.readouterr().out
    store = tmp_path / "r.json"
    assert main(["verify", str(f), "--trust", str(pub), "--releases", str(store)]) == 0
    assert "version 4" in capsys.readouterr().out
    assert main(["verify", str(f), "--trust", str(pub), "--name", "other"]) == 2
    assert "being loaded as 'other'" in capsys.readouterr().err
    assert main(["sign", str(f), "--key", str(d / "k.key"), "--version", "3"]) == 0
    assert main(["verify", str(f), "--trust", str(pub), "--releases", str(store)]) == 2
    assert "rollback" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sign", str(f), "--key", str(d / "k.key"), "--version", "-1"])


def test_keygen_never_overwrites_half_a_key_pair(tmp_path, capsys):
    (tmp_path / "release.pub").write_text("someone's public key")
    with pytest.raises(SystemExit, match="exists"):
        main(["keygen", str(tmp_path / "release")])
    assert (tmp_path / "release.pub").read_text() == "someone's public key"
    assert not (tmp_path / "release.key").exists()
