"""AES-256-GCM weights at rest: round trip (multi-chunk), wrong or missing key, tampering of any
byte, a ciphertext swapped between artifacts (AAD), key rotation and an interrupted rotation,
the keyring (file, environment, never shown), and the CLI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import wasmtime

import wasm_torch
from wasm_torch.cli import main
from wasm_torch.errors import ArtifactError, DecryptionError, IntegrityError, KeyringError
from wasm_torch.integrity import encryption, signing
from wasm_torch.integrity.encryption import Keyring, decrypt_stream, encrypt_artifact, rotate_key
from wasm_torch.runtime import engine

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]
X = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()


@pytest.fixture(scope="module")
def sources(artifacts):
    """Two artifacts of the same architecture with different weights (same weights.bin size)."""
    a, b = _mlp(0), _mlp(1)
    return {
        "a": (a, artifacts("integrity_mlp_a", a, (torch.randn(2, 4),)).path),  # shared with test_signing
        "b": (b, artifacts("integrity_mlp_b", b, (torch.randn(2, 4),)).path),
    }


@pytest.fixture
def art(sources, tmp_path):
    return Path(shutil.copytree(sources["a"][1], tmp_path / "a"))


@pytest.fixture
def ring():
    r = Keyring()
    r.add("k1")
    return r


def only_encrypted(art) -> bool:
    """manifest.json, weights.bin.enc and the listed builds (model.wasm and any build variant), no weights.bin."""
    names = {p.name for p in art.iterdir()}
    listed = set(json.loads((art / "manifest.json").read_text())["files"]) - {"weights.bin"}
    return names == {"manifest.json", "weights.bin.enc"} | listed and "model.wasm" in names


def want(sources, name="a"):
    return sources[name][0](torch.from_numpy(X)).detach().numpy()


def test_round_trip_in_memory_multi_chunk(art, ring, sources):
    size = (art / "weights.bin").stat().st_size
    encrypt_artifact(art, ring, "k1", chunk_bytes=100)  # several chunks, the last one short
    assert only_encrypted(art)
    head = (art / "weights.bin.enc").read_bytes()
    assert head.startswith(encryption.MAGIC)
    assert len(head) > size + 16 * (-(-size // 100))  # a tag per chunk
    m = wasm_torch.load(art, keyring=ring)
    assert m.encrypted
    np.testing.assert_allclose(m(X), want(sources), rtol=1e-5, atol=1e-6)
    assert not (art / "weights.bin").exists()  # decrypted into memory only
    assert only_encrypted(art)


def test_wrong_key_and_missing_key_id(art, ring, monkeypatch):
    monkeypatch.delenv("WASM_TORCH_KEYRING", raising=False)
    monkeypatch.delenv("WASM_TORCH_KEYS", raising=False)
    encrypt_artifact(art, ring, "k1")
    impostor = Keyring()
    impostor.add("k1")  # same id, different random key
    with pytest.raises(DecryptionError, match="wrong key"):
        wasm_torch.load(art, keyring=impostor)
    other = Keyring()
    other.add("k9")
    with pytest.raises(KeyringError, match="no key 'k1'"):
        wasm_torch.load(art, keyring=other)
    with pytest.raises(KeyringError, match="no key 'k1'"):
        wasm_torch.load(art)  # no keyring anywhere


def test_any_tampered_byte_fails_before_compile(art, ring, monkeypatch):
    encrypt_artifact(art, ring, "k1", chunk_bytes=128, keep_plaintext=True)
    path = art / "weights.bin.enc"
    data, manifest = path.read_bytes(), (art / "manifest.json").read_bytes()
    assert (
        decrypt_stream(io.BytesIO(data), len(data), path, ring, manifest)
        == (art / "weights.bin").read_bytes()
    )
    for i in range(len(data)):  # exhaustive: header, nonces, ciphertext, tags (in memory: fast)
        b = bytearray(data)
        b[i] ^= 0x01
        with pytest.raises((DecryptionError, KeyringError)):  # a flipped key id names a key we lack
            decrypt_stream(io.BytesIO(b), len(b), path, ring, manifest)
            pytest.fail(f"byte {i} flipped and still decrypted")
    head = 12 + struct.unpack("<I", data[8:12])[0]
    c0, c1, rest = data[head : head + 144], data[head + 144 : head + 288], data[head + 288 :]
    assert len(rest) > 0  # at least three chunks of 128 bytes (+16-byte tags)
    for bad in (data[:-1], data + b"\0", data[:head] + c1 + c0 + rest, data[:head] + c0 + rest):
        with pytest.raises(DecryptionError):
            decrypt_stream(io.BytesIO(bad), len(bad), path, ring, manifest)

    def boom(*a, **k):
        raise AssertionError("compiled before the weights were authenticated")

    monkeypatch.setattr(engine, "module", boom)
    monkeypatch.setattr(wasmtime, "Module", boom)
    b = bytearray(data)
    b[-1] ^= 0x01
    path.write_bytes(bytes(b))
    with pytest.raises(DecryptionError, match="failed authentication"):
        wasm_torch.load(art, keyring=ring)


def test_ciphertext_cannot_move_between_artifacts(sources, tmp_path, ring):
    a = Path(shutil.copytree(sources["a"][1], tmp_path / "a"))
    b = Path(shutil.copytree(sources["b"][1], tmp_path / "b"))
    for art in (a, b):
        encrypt_artifact(art, ring, "k1")
    shutil.copy(b / "weights.bin.enc", a / "weights.bin.enc")
    with pytest.raises(DecryptionError, match="different artifact"):
        wasm_torch.load(a, keyring=ring)
    # also with the header's manifest digest rewritten to match: the AAD still binds the real one
    data = (a / "weights.bin.enc").read_bytes()
    n = struct.unpack("<I", data[8:12])[0]
    header = json.loads(data[12 : 12 + n])
    header["manifest_sha256"] = hashlib.sha256((a / "manifest.json").read_bytes()).hexdigest()
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    (a / "weights.bin.enc").write_bytes(data[:8] + struct.pack("<I", len(hb)) + hb + data[12 + n :])
    with pytest.raises(DecryptionError, match="failed authentication"):
        wasm_torch.load(a, keyring=ring)


def test_rotation_leaves_the_old_key_unneeded_and_the_signature_valid(art, ring, sources, tmp_path):
    key = signing.generate_key("ed25519")
    signing.sign_artifact(art, [key])
    encrypt_artifact(art, ring, "k1")
    new = Keyring()
    new.add("k2")
    assert rotate_key(art, ring, new, "k2") == ("k1", "k2")
    assert encryption.key_id_of(art) == "k2"
    m = wasm_torch.load(art, keyring=new, trusted_keys=[key.public_key()])  # manifest untouched
    np.testing.assert_allclose(m(X), want(sources), rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyringError):
        wasm_torch.load(art, keyring=ring)
    assert not list(art.glob(".*tmp*"))


def test_interrupted_rotation_leaves_a_loadable_artifact(art, ring, sources, monkeypatch):
    encrypt_artifact(art, ring, "k1")
    new = Keyring()
    new.add("k2")

    def crash(*a, **k):  # the process dies just before the rename
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(encryption.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        rotate_key(art, ring, new, "k2")
    monkeypatch.undo()
    (art / ".weights.bin.enc.tmp999").write_bytes(b"half-written")  # what a kill -9 leaves behind
    np.testing.assert_allclose(wasm_torch.load(art, keyring=ring)(X), want(sources), rtol=1e-5, atol=1e-6)
    rotate_key(art, ring, new, "k2")  # the rotation can simply be run again
    assert not (art / ".weights.bin.enc.tmp999").exists()
    np.testing.assert_allclose(wasm_torch.load(art, keyring=new)(X), want(sources), rtol=1e-5, atol=1e-6)


def test_refuses_to_encrypt_corrupt_weights(art, ring):
    w = art / "weights.bin"
    w.write_bytes(b"\1" + w.read_bytes()[1:])
    with pytest.raises(IntegrityError):
        encrypt_artifact(art, ring, "k1")
    assert not (art / "weights.bin.enc").exists()


def test_keyring_file_environment_and_secrecy(tmp_path, ring, art, monkeypatch):
    path = ring.save(tmp_path / "ring.json")
    assert path.stat().st_mode & 0o777 == 0o600
    again = Keyring.load(path)
    assert again.ids == ["k1"] and again.get("k1") == ring.get("k1")
    secret = ring.get("k1")
    assert secret.hex() not in repr(ring) and "k1" in repr(ring)
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        Keyring.load(path)
    with pytest.raises(KeyringError, match="32"):
        Keyring({"short": b"x" * 16})
    with pytest.raises(KeyringError, match="invalid key id"):
        Keyring().add("../etc")
    encrypt_artifact(art, ring, "k1")
    monkeypatch.setenv(
        "WASM_TORCH_KEYS",
        "k0:" + base64.b64encode(os.urandom(32)).decode() + ",k1:" + base64.b64encode(secret).decode(),
    )
    assert wasm_torch.load(art).encrypted  # keyring from the environment (config.py)
    with pytest.raises(ArtifactError):
        encrypt_artifact(art, ring, "k1")  # already encrypted: weights.bin is gone


def test_cli_encrypt_rotate_verify_info(art, tmp_path, capsys, monkeypatch):
    ring = tmp_path / "ring.json"
    assert main(["keygen", "--keyring", str(ring), "--key-id", "2026-01"]) == 0
    assert main(["keygen", "--keyring", str(ring), "--key-id", "2026-02"]) == 0
    out = capsys.readouterr().out
    secret = Keyring.load(ring).get("2026-01")
    assert base64.b64encode(secret).decode() not in out
    assert main(["keygen", str(tmp_path / "sig")]) == 0
    assert main(["sign", str(art), "--key", str(tmp_path / "sig.key")]) == 0
    assert main(["encrypt", str(art), "--keyring", str(ring), "--key-id", "2026-01"]) == 0
    assert main(["info", str(art)]) == 0
    assert "encrypted as weights.bin.enc" in capsys.readouterr().out
    args = ["verify", str(art), "--trust", str(tmp_path / "sig.pub"), "--keyring", str(ring)]
    assert main(args) == 0
    assert "decrypts and matches" in capsys.readouterr().out
    assert main(["rotate-key", str(art), "--old-keyring", str(ring), "--new-key-id", "2026-02"]) == 0
    assert "from key '2026-01' to '2026-02'" in capsys.readouterr().out
    assert main(["rotate-key", str(art), "--old-keyring", str(ring), "--new-key-id", "nope"]) == 2
    assert "no key 'nope'" in capsys.readouterr().err
    monkeypatch.setenv("WASM_TORCH_KEYRING", str(ring))
    np.save(tmp_path / "x.npy", X)
    assert main(["run", str(art), str(tmp_path / "x.npy")]) == 0
