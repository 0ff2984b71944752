"""One bad artifact folder never stops the server: it is listed as refused, with the reason, and the
others are served (in process and from `wasm-torch serve`). Also the typed seams: what a served
model is, and that the in-process and Ray registries are both what the routes need."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import wasm_torch
from wasm_torch.serve.app import create_app
from wasm_torch.serve.seams import ServedModel
from wasm_torch.serve.settings import ServeSettings

from .conftest import start_server, stop_server
from .fakes import FakeModel

pytestmark = pytest.mark.toolchain
SETTINGS = ServeSettings(replicas=1, healing=False)


def _json_edit(edit):
    def apply(folder: Path) -> None:
        path = folder / "manifest.json"
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))

    return apply


def _bytes(name: str, data: bytes):
    return lambda folder: (folder / name).write_bytes(data)


# Each makes one broken copy of a good artifact; the reasons differ in kind, not only in value.
BREAKERS = {
    "manifest_not_json": _bytes("manifest.json", b"{not json"),
    "manifest_a_list": _bytes("manifest.json", b"[1, 2, 3]"),
    "manifest_empty": _bytes("manifest.json", b""),
    "manifest_deep": _bytes("manifest.json", b"[" * 100_000 + b"]" * 100_000),
    "inputs_missing": _json_edit(lambda d: d.pop("inputs")),
    "inputs_wrong_type": _json_edit(lambda d: d.__setitem__("inputs", {"x": 1})),
    "shape_is_a_string": _json_edit(lambda d: d["inputs"][0].__setitem__("shape", "batch,4")),
    "files_missing": _json_edit(lambda d: d.pop("files")),
    "dtype_unknown": _json_edit(lambda d: d["inputs"][0].__setitem__("dtype", "complex256")),
    "huge_number": _bytes("manifest.json", b'{"format": 1' + b"0" * 5000 + b"}"),
    "wasm_tampered": lambda f: (f / "model.wasm").write_bytes((f / "model.wasm").read_bytes()[:-1] + b"\x00"),
    "wasm_missing": lambda f: (f / "model.wasm").unlink(),
    "weights_truncated": lambda f: (f / "weights.bin").write_bytes((f / "weights.bin").read_bytes()[:10]),
}


@pytest.fixture(scope="module")
def zoo(compiled, tmp_path_factory) -> Path:
    """good/ (the MLP) beside one broken copy per entry of BREAKERS."""
    root = tmp_path_factory.mktemp("zoo")
    path, _ = compiled["mlp"]
    shutil.copytree(path, root / "good")
    for name, breaker in BREAKERS.items():
        shutil.copytree(path, root / name)
        breaker(root / name)
    return root


def body(x: np.ndarray) -> dict:
    return {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }


def test_a_folder_with_broken_artifacts_serves_the_good_one(zoo, compiled):
    _, model = compiled["mlp"]
    app = create_app(zoo, SETTINGS)  # must not raise, whatever the broken folders hold
    with TestClient(app) as c:
        x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
        r = c.post("/v2/models/good/infer", json=body(x))
        assert r.status_code == 200, r.text
        got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(3, 3)
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
        index = {row["name"]: row for row in c.post("/v2/repository/index").json()}
        assert index["good"]["state"] == "READY"
        for name in BREAKERS:
            row = index[name]
            assert row["state"] == "UNAVAILABLE" and row["reason"], (name, row)
            assert str(zoo) not in row["reason"], row  # the server's folder layout is not disclosed
            r = c.get(f"/v2/models/{name}")
            assert r.status_code == 503 and "refused at load" in r.json()["error"], (name, r.text)
        ready = c.get("/v2/health/ready").json()
        assert ready == {"ready": True, "refused": sorted(BREAKERS)}
        assert 'code="500"' not in c.get("/metrics").text


def test_wasm_torch_serve_starts_with_a_broken_artifact_beside_a_good_one(zoo, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    for name in ("good", "manifest_not_json", "inputs_missing", "wasm_tampered"):
        shutil.copytree(zoo / name, root / name)
    s = start_server(root, tmp_path / "server.log", "--replicas", "1")
    try:
        index = {row["name"]: row["state"] for row in httpx.post(s.url + "/v2/repository/index").json()}
        assert index == {"good": "READY", "manifest_not_json": "UNAVAILABLE", "inputs_missing": "UNAVAILABLE",
                         "wasm_tampered": "UNAVAILABLE"}  # fmt: skip
        r = httpx.post(s.url + "/v2/models/good/infer", json=body(np.ones((1, 4), np.float32)))
        assert r.status_code == 200
    finally:
        stop_server(s.proc)
    assert "refusing model 'manifest_not_json'" in (tmp_path / "server.log").read_text()


def test_a_python_factory_that_fails_with_a_bug_is_not_hidden():
    def broken() -> FakeModel:
        raise ZeroDivisionError("a bug in the caller's factory")

    with pytest.raises(ZeroDivisionError):
        create_app({"m": broken}, SETTINGS)


def test_served_model_protocol_covers_what_pools_run(compiled):
    m = wasm_torch.load(compiled["mlp"][0])
    assert isinstance(m, ServedModel) and isinstance(FakeModel(), ServedModel)
    assert not isinstance(object(), ServedModel)


def test_threads_setting_gives_each_replica_an_intra_op_pool(compiled):
    """`--threads N` / ServeSettings(threads=N): each replica's instance runs one call on N threads,
    bit-identical to one thread; threads with fuel, or outside 1..64, is a settings error."""
    from wasm_torch.serve.registry import path_factory
    from wasm_torch.serve.settings import SettingsError

    path, _ = compiled["mlp"]
    one, two = path_factory(path, ServeSettings(threads=1))(), path_factory(path, ServeSettings(threads=2))()
    assert getattr(one, "threads", 1) == 1 and two.threads == 2  # threads=1: the plain single-threaded module
    x = np.random.default_rng(3).standard_normal((8, 4)).astype(np.float32)
    assert [a.tobytes() for a in one(x)] == [b.tobytes() for b in two(x)]
    for bad in ({"threads": 0}, {"threads": 65}, {"threads": 2, "fuel": 10_000}):
        with pytest.raises(SettingsError, match=r"threads|fuel"):
            ServeSettings(**bad)
