"""Signing and encryption in the server: with signatures required, a signed model is served while tampered, unsigned,
untrusted and undecryptable artifacts are refused before compile, listed with the reason in the
model index and health, and the server keeps serving. Also the `wasm-torch serve` flags."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import wasm_torch.serve
from wasm_torch.cli import main
from wasm_torch.errors import ArtifactError, KeyringError
from wasm_torch.integrity import signing
from wasm_torch.integrity.encryption import Keyring, encrypt_artifact
from wasm_torch.runtime import engine
from wasm_torch.serve.app import create_app
from wasm_torch.serve.registry import path_factory
from wasm_torch.serve.settings import ServeSettings

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]
X = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def mlp(artifacts):
    torch.manual_seed(0)  # the same name and model as tests/test_signing.py: compiled once per session
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    return model, artifacts("integrity_mlp_a", model, (torch.randn(2, 4),)).path


@pytest.fixture
def setup(mlp, tmp_path):
    """models/: good (signed), tampered (signed, then weights edited), unsigned, stranger (signed by
    an untrusted key), locked (signed, weights encrypted under a key the server lacks)."""
    trusted, stranger = signing.generate_key("ed25519"), signing.generate_key("ed25519")
    pub = signing.write_public_key(trusted, tmp_path / "trusted.pub")
    root = tmp_path / "models"
    for name in ("good", "tampered", "unsigned", "stranger", "locked"):
        shutil.copytree(mlp[1], root / name)
    for name in ("good", "tampered", "locked"):
        signing.sign_artifact(root / name, [trusted])
    signing.sign_artifact(root / "stranger", [stranger])
    w = root / "tampered" / "weights.bin"
    w.write_bytes(w.read_bytes()[:-1] + b"\x7f")
    lost = Keyring()
    lost.add("lost")
    encrypt_artifact(root / "locked", lost, "lost")
    return root, pub, mlp[0]


def infer(c: TestClient, name: str):
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    return c.post(f"/v2/models/{name}/infer", json=body)


def test_require_signed_serves_the_signed_model_and_refuses_the_others(setup, monkeypatch):
    root, pub, model = setup
    compiled: list[str] = []
    real = engine.module

    def counting(wasm, sha, *a, **k):
        compiled.append(sha)
        return real(wasm, sha, *a, **k)

    monkeypatch.setattr(engine, "module", counting)
    s = ServeSettings(replicas=1, healing=False, require_signature=True, trusted_keys=(pub,))
    app = create_app(root, s)
    calls = len(compiled)
    compiled.clear()
    path_factory(root / "good", s)()  # what loading "good" alone asks of wasmtime (with its variants)
    assert calls == len(compiled) >= 1  # only "good" reached wasmtime; the refused ones never compiled
    with TestClient(app) as c:
        r = infer(c, "good")
        assert r.status_code == 200, r.text
        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 3)
        np.testing.assert_allclose(got, model(torch.from_numpy(X)).detach().numpy(), rtol=1e-5, atol=1e-6)
        reasons = {
            "tampered": "sha256",
            "unsigned": "not signed",
            "stranger": "untrusted keys",
            "locked": "no key 'lost'",
        }
        for name, why in reasons.items():
            r = infer(c, name)
            assert r.status_code == 503, (name, r.text)
            msg = r.json()["error"]
            assert "refused at load" in msg and why in msg, msg
            assert str(root) not in msg  # the server's folder layout is not disclosed
            assert c.get(f"/v2/models/{name}/ready").status_code == 503
        index = {row["name"]: row for row in c.post("/v2/repository/index").json()}
        assert index["good"] == {"name": "good", "version": "1", "state": "READY", "reason": ""}
        assert all(
            index[n]["state"] == "UNAVAILABLE" and why in index[n]["reason"] for n, why in reasons.items()
        )
        assert [row["name"] for row in c.post("/v2/repository/index", json={"ready": True}).json()] == [
            "good"
        ]
        assert c.post("/v2/repository/index", json={"ready": "yes"}).status_code == 400
        health = c.get("/v2/health/ready")
        assert health.status_code == 200 and health.json() == {"ready": True, "refused": sorted(reasons)}
        assert infer(c, "good").status_code == 200  # still serving
        metrics = c.get("/metrics").text
        assert 'kind="model_refused"' in metrics and 'code="500"' not in metrics


def test_trust_without_require_checks_present_signatures_only(setup):
    root, pub, _ = setup
    s = ServeSettings(replicas=1, healing=False, trusted_keys=(pub,))
    with TestClient(create_app(root, s)) as c:
        assert infer(c, "unsigned").status_code == 200
        assert infer(c, "good").status_code == 200
        assert infer(c, "tampered").status_code == 503
        assert infer(c, "stranger").status_code == 503


def test_cli_flags_reach_the_server(setup, monkeypatch, tmp_path):
    root, pub, _ = setup
    seen = {}
    monkeypatch.setattr(wasm_torch.serve, "serve", lambda models, **kw: seen.update(models=models, **kw))
    ring = Keyring()
    ring.add("k")
    ring_path = ring.save(tmp_path / "ring.json")
    argv = ["serve", str(root), "--require-signed", "--trust", str(pub), "--keyring", str(ring_path)]
    assert main(argv) == 0
    s = seen["settings"]
    assert s.require_signature and s.trusted_keys == (pub,) and s.keyring == ring_path
    with TestClient(create_app(seen["models"], s.with_(replicas=1, healing=False, grpc_port=None))) as c:
        assert infer(c, "good").status_code == 200 and infer(c, "tampered").status_code == 503


def test_a_bad_trust_or_keyring_option_stops_the_server(setup, tmp_path):
    root, _, _ = setup
    with pytest.raises(KeyringError, match="does not exist"):
        create_app(root, ServeSettings(require_signature=True, trusted_keys=(tmp_path / "nope.pub",)))
    with pytest.raises(KeyringError, match="does not exist"):
        create_app(root, ServeSettings(keyring=tmp_path / "nope.json"))
    with pytest.raises(ArtifactError, match="no trusted public key"):
        create_app(root, ServeSettings(require_signature=True))


def test_encrypted_model_is_served_with_its_keyring(setup, tmp_path):
    root, pub, model = setup
    ring = Keyring()
    ring.add("k1")
    encrypt_artifact(root / "good", ring, "k1")
    s = ServeSettings(replicas=1, healing=False, require_signature=True, trusted_keys=(pub,))
    with TestClient(
        create_app({"good": root / "good"}, s.with_(keyring=ring.save(tmp_path / "r.json")))
    ) as c:
        r = infer(c, "good")
        assert r.status_code == 200, r.text
        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 3)
        np.testing.assert_allclose(got, model(torch.from_numpy(X)).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not (root / "good" / "weights.bin").exists()
