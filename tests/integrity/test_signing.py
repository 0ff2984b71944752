"""Signed releases (Ed25519 + ML-DSA-65): round trip, hybrid policy, tampering of any byte of any
file rejected *before* wasmtime compiles anything, untrusted keys, unsigned artifacts, key files, CLI.
(Name binding, rollback, cascades and strict parsing: test_release.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import wasmtime

import wasm_torch
from wasm_torch.artifact.strictjson import dumps_canonical as canonical
from wasm_torch.cli import main
from wasm_torch.errors import ArtifactError, IntegrityError, KeyringError, SignatureError
from wasm_torch.integrity import signing
from wasm_torch.runtime import engine

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


@pytest.fixture(scope="module")
def mlp(artifacts):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    # the same name and model as in test_encryption.py: compiled once per session
    return model, artifacts("integrity_mlp_a", model, (torch.randn(2, 4),)).path


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name, alg in (("ed", "ed25519"), ("pq", "ml-dsa-65"), ("other", "ed25519")):
        k = signing.generate_key(alg)
        signing.write_private_key(k, d / f"{name}.key")
        signing.write_public_key(k, d / f"{name}.pub")
        out[name] = (k, d / f"{name}.pub")
    return out


@pytest.fixture
def art(mlp, tmp_path):
    return Path(shutil.copytree(mlp[1], tmp_path / "m"))


@pytest.fixture
def no_compile(monkeypatch):
    """Fail the test if anything reaches wasmtime compilation (our cache or wasmtime.Module)."""

    def boom(*a, **k):
        raise AssertionError("wasmtime compiled a module before verification finished")

    monkeypatch.setattr(engine, "module", boom)
    monkeypatch.setattr(wasmtime, "Module", boom)


def test_round_trip_with_both_algorithms(art, mlp, keys):
    signing.sign_artifact(art, [keys["ed"][0], keys["pq"][0]])
    doc = json.loads((art / "signature.json").read_text())
    assert [s["alg"] for s in doc["signatures"]] == ["ed25519", "ml-dsa-65"]
    assert doc["release"] == {"name": "m", "version": 1} and list(doc["covers"]) == ["manifest.json"]
    trusted = [keys["ed"][1], keys["pq"][1]]
    m = wasm_torch.load(art, trusted_keys=trusted)
    assert sorted(m.signed_by) == sorted(signing.key_id(keys[n][0]) for n in ("ed", "pq"))
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(m(x), mlp[0](torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert wasm_torch.load(art, trusted_keys=[keys["pq"][1]]).signed_by == [signing.key_id(keys["pq"][0])]
    assert signing.verify_artifact(art, trusted).key_ids == m.signed_by
    assert m.release == signing.Release("m", 1)


def test_hybrid_policy_needs_a_signature_per_trusted_algorithm(art, keys):
    signing.sign_artifact(art, [keys["ed"][0]])
    with pytest.raises(SignatureError, match=r"hybrid policy.*ml-dsa-65"):
        wasm_torch.load(art, trusted_keys=[keys["ed"][1], keys["pq"][1]])
    assert wasm_torch.load(art, trusted_keys=[keys["ed"][1]]).signed_by  # Ed25519 alone suffices
    signing.sign_artifact(art, [keys["pq"][0]])  # adds the second signature, keeps the first
    assert len(wasm_torch.load(art, trusted_keys=[keys["ed"][1], keys["pq"][1]]).signed_by) == 2


def _flips(data: bytes):
    for i in range(len(data)):
        b = bytearray(data)
        b[i] ^= 0x01
        yield i, bytes(b)


def test_every_byte_of_manifest_and_signature_is_covered(art, keys):
    """Exhaustive: flipping any single byte of manifest.json or signature.json is rejected."""
    signing.sign_artifact(art, [keys["ed"][0], keys["pq"][0]])
    trusted = signing.trusted([keys["ed"][1], keys["pq"][1]])  # parse the .pub files once
    manifest, sig = (art / "manifest.json").read_bytes(), (art / "signature.json").read_bytes()

    def verify(m: bytes, s: bytes) -> None:
        signing.verify_release(art, trusted, have={"manifest.json": m}, signature=s)

    verify(manifest, sig)
    for target in ("manifest", "signature"):
        for i, bad in _flips(manifest if target == "manifest" else sig):
            m, s = (bad, sig) if target == "manifest" else (manifest, bad)
            with pytest.raises(SignatureError):
                verify(m, s)
                pytest.fail(f"{target} byte {i} flipped and still accepted")


@pytest.mark.parametrize("name", ["manifest.json", "signature.json", "model.wasm", "weights.bin"])
def test_tampering_is_rejected_before_compile(art, keys, name, no_compile):
    signing.sign_artifact(art, [keys["ed"][0], keys["pq"][0]])
    trusted = [keys["ed"][1], keys["pq"][1]]
    path = art / name
    data = path.read_bytes()
    positions = sorted({0, len(data) - 1, *np.random.default_rng(1).integers(0, len(data), 10).tolist()})
    for i in positions:
        b = bytearray(data)
        b[i] ^= 0x80
        path.write_bytes(bytes(b))
        with pytest.raises(IntegrityError):
            wasm_torch.load(art, trusted_keys=trusted)
    path.write_bytes(data + b"\0")  # appending counts too
    with pytest.raises(IntegrityError):
        wasm_torch.load(art, trusted_keys=trusted)


def test_rewritten_manifest_with_updated_digest_fails_the_signature(art, keys, no_compile):
    """An attacker who swaps model.wasm, fixes its sha256 in the manifest and the manifest digest in
    signature.json still cannot produce a valid signature."""
    signing.sign_artifact(art, [keys["ed"][0]])
    evil = (art / "model.wasm").read_bytes() + b"\0"
    (art / "model.wasm").write_bytes(evil)
    doc = json.loads((art / "manifest.json").read_text())
    doc["files"]["model.wasm"] = {"sha256": hashlib.sha256(evil).hexdigest(), "bytes": len(evil)}
    (art / "manifest.json").write_text(json.dumps(doc, indent=1))
    sig = json.loads((art / "signature.json").read_text())
    sig["covers"]["manifest.json"] = hashlib.sha256((art / "manifest.json").read_bytes()).hexdigest()
    (art / "signature.json").write_bytes(canonical(sig) + b"\n")
    with pytest.raises(SignatureError, match="does not verify"):
        wasm_torch.load(art, trusted_keys=[keys["ed"][1]])


def test_untrusted_key_is_rejected(art, keys, no_compile):
    signing.sign_artifact(art, [keys["other"][0]])
    with pytest.raises(SignatureError, match="untrusted keys"):
        wasm_torch.load(art, trusted_keys=[keys["ed"][1]])


def test_unsigned_is_rejected_only_when_required(art, keys):
    assert wasm_torch.load(art).signed_by == []  # no trust configured: plain sha256 checks only
    assert wasm_torch.load(art, trusted_keys=[keys["ed"][1]], require_signed=False).signed_by == []
    with pytest.raises(SignatureError, match="not signed"):
        wasm_torch.load(art, trusted_keys=[keys["ed"][1]])  # trusting keys implies requiring them
    with pytest.raises(ArtifactError, match="trusted_keys"):
        wasm_torch.load(art, require_signed=True)
    signing.sign_artifact(art, [keys["other"][0]])  # present signatures are checked even if optional
    with pytest.raises(SignatureError):
        wasm_torch.load(art, trusted_keys=[keys["ed"][1]], require_signed=False)


def test_key_files(tmp_path, keys):
    k = signing.generate_key("ml-dsa-65")
    priv = signing.write_private_key(k, tmp_path / "k.key")
    pub = signing.write_public_key(k, tmp_path / "k.pub")
    assert priv.stat().st_mode & 0o777 == 0o600
    assert signing.key_id(signing.load_private_key(priv)) == signing.key_id(signing.load_public_key(pub))
    assert signing.key_id(k).startswith("ml-dsa-65:") and len(signing.key_id(k)) == len("ml-dsa-65:") + 32
    with pytest.raises(KeyringError, match="private key"):
        signing.load_public_key(priv)
    with pytest.raises(KeyringError, match="public key"):
        signing.load_private_key(pub)
    priv.chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        signing.load_private_key(priv)
    with pytest.raises(KeyringError, match="does not exist"):
        signing.load_public_key(tmp_path / "missing.pub")


def test_cli_keygen_sign_verify(art, tmp_path, capsys):
    stem = tmp_path / "keys" / "release"
    assert main(["keygen", str(stem)]) == 0
    assert main(["keygen", str(stem) + "-pq", "--alg", "ml-dsa-65"]) == 0
    out = capsys.readouterr().out
    assert "ed25519:" in out and "ml-dsa-65:" in out and "PRIVATE" not in out
    assert main(["sign", str(art), "--key", f"{stem}.key", "--key", f"{stem}-pq.key"]) == 0
    assert main(["verify", str(art), "--trust", f"{stem}.pub", "--trust", f"{stem}-pq.pub"]) == 0
    assert "signature OK" in capsys.readouterr().out
    assert main(["keygen", str(tmp_path / "stranger")]) == 0
    assert main(["verify", str(art), "--trust", str(tmp_path / "stranger.pub")]) == 2
    assert "untrusted" in capsys.readouterr().err
    (art / "weights.bin").write_bytes(b"\0" + (art / "weights.bin").read_bytes()[1:])
    assert main(["verify", str(art), "--trust", f"{stem}.pub"]) == 2
    assert "sha256" in capsys.readouterr().err


def test_refuses_to_sign_files_that_do_not_match_the_manifest(art, keys):
    (art / "model.wasm").write_bytes((art / "model.wasm").read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=r"model\.wasm"):
        signing.sign_artifact(art, [keys["ed"][0]])
    assert not (art / "signature.json").exists()
