"""The model repository: index, load, unload and hot reload, with the signing policy on loads.

A reload swaps the model's pool while requests run on the old one: they finish there (a lease
holds it) and the old pool closes after; nothing in flight is dropped, also under load against a
real `wasm-torch serve` reloaded through tritonclient.grpc. A tampered or unsigned new version is
refused (422) and the old version keeps serving. Poll mode follows changed, new and removed
folders. Model control is off by default (403).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as tg
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from wasm_torch.integrity import signing
from wasm_torch.serve.app import create_app
from wasm_torch.serve.settings import ServeSettings

from .conftest import start_server, stop_server
from .fakes import FakeModel

SETTINGS = ServeSettings(replicas=1, healing=False, max_queue_delay_s=0.001, max_batch_size=1)
X = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)


def body(x: np.ndarray = X, name: str = "input") -> dict:
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def answer(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


# --- in flight during a reload (fakes, deterministic) ---------------------------------------------
class Versioned(FakeModel):
    """y = x @ W + version, slow enough (0.4 s) to be in flight during a reload."""

    def __init__(self, version: int, delay_s: float) -> None:
        super().__init__()
        self.version, self.delay_s = version, delay_s

    def run(self, inputs):
        time.sleep(self.delay_s)
        y = super().run(inputs)
        return {"y": y["y"] - 1 + self.version}


def test_a_reload_lets_the_request_in_flight_finish_on_the_old_version():
    gen = {"version": 1, "delay": 0.4}
    app = create_app({"m": lambda: Versioned(gen["version"], gen["delay"])},
                     SETTINGS.with_(model_control="explicit"), seed=0)  # fmt: skip
    registry = app.state.server.registry
    with TestClient(app) as c:
        old_pool = registry.pools["m"]
        results: dict[str, httpx.Response] = {}
        t = threading.Thread(target=lambda: results.update(old=c.post("/v2/models/m/infer", json=body(name="x"))))
        t.start()
        time.sleep(0.1)  # the request is now running on version 1
        gen["version"], gen["delay"] = 2, 0.0
        assert c.post("/v2/repository/models/m/load").status_code == 200
        assert registry.pools["m"] is not old_pool
        new = c.post("/v2/models/m/infer", json=body(name="x"))
        t.join(10)
        np.testing.assert_allclose(answer(results["old"]), X @ FakeModel.W + 1, rtol=1e-6)  # finished on v1
        np.testing.assert_allclose(answer(new), X @ FakeModel.W + 2, rtol=1e-6)
        assert registry.wait_retired(10) and old_pool._closed.is_set()  # closed once its lease returned
        metrics = c.get("/metrics").text
        assert 'wasm_torch_repository_actions_total{action="reload",model="m",outcome="ok"} 1.0' in metrics


def test_unload_and_load_and_the_index_say_what_happened():
    app = create_app({"m": FakeModel, "n": FakeModel}, SETTINGS.with_(model_control="explicit"), seed=0)
    with TestClient(app) as c:
        assert c.post("/v2/repository/models/m/unload", json={"parameters": {"unload_dependents": False}}).status_code == 200
        r = c.post("/v2/models/m/infer", json=body(name="x"))
        assert r.status_code == 404 and "not loaded" in r.json()["error"]
        index = {row["name"]: row for row in c.post("/v2/repository/index").json()}
        assert index["m"]["state"] == "UNAVAILABLE" and index["m"]["reason"] == "unloaded on request"
        assert index["n"]["state"] == "READY"
        assert [row["name"] for row in c.post("/v2/repository/index", json={"ready": True}).json()] == ["n"]
        assert c.post("/v2/repository/models/m/load").status_code == 200
        answer(c.post("/v2/models/m/infer", json=body(name="x")))


@pytest.mark.parametrize(
    "path,payload,status,word",
    [
        ("/v2/repository/models/m/load", {"parameters": {"config": "{}"}}, 400, "config overrides"),
        ("/v2/repository/models/m/load", {"parameters": {"file:1/model.wasm": "AGFzbQ=="}}, 400, "uploaded model files"),
        ("/v2/repository/models/m/load", {"parameters": []}, 400, "object"),
        ("/v2/repository/models/m/load", {"model": "m"}, 400, "request body"),
        ("/v2/repository/models/m/unload", {"parameters": {"unload_dependents": "yes"}}, 400, "boolean"),
        ("/v2/repository/models/nope/load", {}, 404, "not found"),
        ("/v2/repository/models/..%2F..%2Fetc/load", {}, 404, "not found"),
        ("/v2/repository/models/nope/unload", {}, 404, "not found"),
    ],
)
def test_hostile_repository_requests_are_4xx(path, payload, status, word):
    with TestClient(create_app({"m": FakeModel}, SETTINGS.with_(model_control="explicit"), seed=0)) as c:
        r = c.post(path, json=payload)
        assert r.status_code == status and word in r.json()["error"].lower(), r.text
        answer(c.post("/v2/models/m/infer", json=body(name="x")))


def test_model_control_is_off_by_default_and_auth_guards_it():
    with TestClient(create_app({"m": FakeModel}, SETTINGS, seed=0)) as c:
        for action in ("load", "unload"):
            r = c.post(f"/v2/repository/models/m/{action}")
            assert r.status_code == 403 and "--model-control explicit" in r.json()["error"]
        assert c.post("/v2/repository/index").status_code == 200
    s = SETTINGS.with_(model_control="explicit", auth_tokens=frozenset({"t"}))
    with TestClient(create_app({"m": FakeModel}, s, seed=0)) as c:
        assert c.post("/v2/repository/models/m/unload").status_code == 401
        assert c.post("/v2/repository/index").status_code == 401


# --- real artifacts: versions, signing, polling -----------------------------------------------------
def mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()


@pytest.fixture(scope="module")
def versions(artifacts):
    """Two versions of one model (same shapes, other weights): {1: (path, torch), 2: ...}."""
    batch = torch.export.Dim("batch", min=1, max=16)
    out = {}
    for v in (1, 2):
        model = mlp(100 + v)
        out[v] = (artifacts(f"repo_mlp_v{v}", model, (torch.randn(2, 4),), dynamic_shapes=({0: batch},)).path, model)
    return out


def torch_answer(model: torch.nn.Module, x: np.ndarray = X) -> np.ndarray:
    return model(torch.from_numpy(x)).detach().numpy()


def put(src: Path, dst: Path) -> None:
    """Overwrite the artifact folder `dst` with `src`, file by file (new modification times)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copyfile(f, dst / f.name)


@pytest.mark.toolchain
def test_loads_follow_the_signing_policy_and_a_refused_reload_keeps_the_old_version(versions, tmp_path):
    key = signing.generate_key("ed25519")
    pub = signing.write_public_key(key, tmp_path / "trusted.pub")
    root = tmp_path / "models"
    put(versions[1][0], root / "mlp")
    signing.sign_artifact(root / "mlp", [key])
    s = SETTINGS.with_(model_control="explicit", require_signature=True, trusted_keys=(pub,))
    with TestClient(create_app(root, s, seed=0)) as c:
        v1 = torch_answer(versions[1][1])
        np.testing.assert_allclose(answer(c.post("/v2/models/mlp/infer", json=body())), v1, rtol=1e-4, atol=1e-5)
        put(versions[2][0], root / "mlp")  # version 2, not signed: refused, version 1 keeps serving
        r = c.post("/v2/repository/models/mlp/load")
        assert r.status_code == 422 and "previous version keeps serving" in r.json()["error"]
        np.testing.assert_allclose(answer(c.post("/v2/models/mlp/infer", json=body())), v1, rtol=1e-4, atol=1e-5)
        row = next(r for r in c.post("/v2/repository/index").json() if r["name"] == "mlp")
        assert row["state"] == "READY" and "last reload was refused" in row["reason"]
        signing.sign_artifact(root / "mlp", [key])
        w = root / "mlp" / "weights.bin"
        w.write_bytes(w.read_bytes()[:-1] + b"\x7f")  # signed, then tampered
        r = c.post("/v2/repository/models/mlp/load")
        assert r.status_code == 422 and "weights.bin" in r.json()["error"] and str(root) not in r.json()["error"]
        put(versions[2][0], root / "mlp")
        signing.sign_artifact(root / "mlp", [key])  # signed version 2: loads
        assert c.post("/v2/repository/models/mlp/load").status_code == 200
        v2 = torch_answer(versions[2][1])
        np.testing.assert_allclose(answer(c.post("/v2/models/mlp/infer", json=body())), v2, rtol=1e-4, atol=1e-5)
        put(versions[1][0], root / "new")  # a new folder, unsigned: refused and listed with the reason
        r = c.post("/v2/repository/models/new/load")
        assert r.status_code == 422 and "not signed" in r.json()["error"]
        row = next(r for r in c.post("/v2/repository/index").json() if r["name"] == "new")
        assert row["state"] == "UNAVAILABLE" and "not signed" in row["reason"]
        assert c.post("/v2/models/new/infer", json=body()).status_code == 503


@pytest.mark.toolchain
def test_poll_mode_follows_changed_new_and_removed_folders(versions, tmp_path):
    root = tmp_path / "models"
    put(versions[1][0], root / "mlp")
    s = SETTINGS.with_(model_control="poll", repository_poll_s=0.1)
    with TestClient(create_app(root, s, seed=0)) as c:
        v1, v2 = torch_answer(versions[1][1]), torch_answer(versions[2][1])

        def serves(name: str, want: np.ndarray) -> bool:
            r = c.post(f"/v2/models/{name}/infer", json=body())
            return r.status_code == 200 and np.allclose(answer(r), want, rtol=1e-4, atol=1e-5)

        assert serves("mlp", v1)
        put(versions[2][0], root / "mlp")
        wait(lambda: serves("mlp", v2), "the changed folder to be reloaded")
        put(versions[1][0], root / "other")
        wait(lambda: serves("other", v1), "the new folder to be loaded")
        shutil.rmtree(root / "other")  # we made this folder; the server never deletes anything
        wait(lambda: c.post("/v2/models/other/infer", json=body()).status_code == 404, "the removed folder unloaded")
        row = next(r for r in c.post("/v2/repository/index").json() if r["name"] == "other")
        assert "removed" in row["reason"]
        assert (root / "mlp" / "manifest.json").is_file()  # the repository is only read


def wait(predicate, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.toolchain
def test_hot_reload_under_load_drops_nothing_on_a_real_server(versions, tmp_path):
    """4 clients keep sending requests while the folder flips between versions and tritonclient.grpc
    asks for a reload 4 times: every request gets 200 and one of the two versions' answers."""
    root = tmp_path / "models"
    put(versions[1][0], root / "mlp")
    s = start_server(root, tmp_path / "server.log", "--replicas", "2", "--model-control", "explicit")
    answers = {v: torch_answer(versions[v][1]) for v in (1, 2)}
    seen: list[tuple[int, int | None]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v2/models/mlp/infer", json=body())
                which = None
                if r.status_code == 200:
                    got = answer(r)
                    which = next((v for v, a in answers.items() if np.allclose(got, a, rtol=1e-4, atol=1e-5)), None)
                seen.append((r.status_code, which))

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        g = tg.InferenceServerClient(s.grpc_url)
        for v in (2, 1, 2, 1):
            time.sleep(0.5)
            put(versions[v][0], root / "mlp")
            g.load_model("mlp")
            assert g.is_model_ready("mlp")
        index = g.get_model_repository_index(as_json=True)
        assert index["models"] == [{"name": "mlp", "version": "1", "state": "READY"}]
        with pytest.raises(InferenceServerException) as e:
            g.load_model("mlp", config='{"max_batch_size": 4}')
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        stop_server(s.proc)
    assert len(seen) > 50
    assert {code for code, _ in seen} == {200}, sorted({code for code, _ in seen})
    assert {which for _, which in seen} == {1, 2}  # both versions answered, nothing else
