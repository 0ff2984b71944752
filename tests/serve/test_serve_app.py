"""KServe v2 endpoints through the ASGI app, metrics, OpenAPI, and the status table."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from wasm_torch.errors import DeadlineExceeded, FuelExhausted, InputError, TrapError
from wasm_torch.serve.app import create_app
from wasm_torch.serve.errors import STATUS_TABLE, RateLimited, classify
from wasm_torch.serve.settings import ServeSettings
from wasm_torch.serve.sim.faults import FaultPlan, FaultyModel

from .fakes import FakeModel, TokenModel, expected

SETTINGS = ServeSettings(replicas=2, healing=False, max_queue_delay_s=0.001)


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan()


@pytest.fixture
def client(plan):
    app = create_app({"mlp": lambda: FaultyModel(FakeModel(), plan), "tok": TokenModel}, SETTINGS, seed=0)
    with TestClient(app) as c:
        yield c


def body(rows: int = 2, seed: int = 0, **extra):
    x = np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)
    return x, {
        "inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": x.ravel().tolist()}],
        **extra,
    }


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    r = client.get("/v2/health/ready")
    assert r.status_code == 200 and r.json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "wasm-torch" and isinstance(meta["extensions"], list)


def test_model_metadata_and_ready(client):
    meta = client.get("/v2/models/mlp").json()
    assert meta["name"] == "mlp"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
    assert client.get("/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}
    assert client.get("/v2/models/mlp/versions/1").json()["name"] == "mlp"


def test_infer_round_trip_with_id_and_nested_data(client):
    x, req = body(3, id="req-7")
    req["inputs"][0]["data"] = x.tolist()  # nested form is allowed too
    r = client.post("/v2/models/mlp/infer", json=req)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "mlp" and out["id"] == "req-7"
    (y,) = out["outputs"]
    assert y["name"] == "y" and y["datatype"] == "FP32" and y["shape"] == [3, 3]
    np.testing.assert_allclose(np.array(y["data"]).reshape(3, 3), expected(x), rtol=1e-5, atol=1e-6)
    assert client.post("/v2/models/mlp/versions/1/infer", json=req).status_code == 200


def test_two_input_model_and_requested_outputs(client):
    req = {
        "inputs": [
            {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]},
            {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 0]},
        ],
        "outputs": [{"name": "emb"}],
    }
    r = client.post("/v2/models/tok/infer", json=req)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [3.0, 6.0, 9.0]
    req["inputs"][1]["shape"] = [1, 4]
    req["inputs"][1]["data"] = [1, 1, 1, 1]
    r = client.post("/v2/models/tok/infer", json=req)
    assert r.status_code == 400 and "seq" in r.json()["error"]


@pytest.mark.parametrize(
    "path,status",
    [
        ("/v2/models/nope", 404),
        ("/v2/models/nope/ready", 404),
        ("/v2/models/..%2F..%2Fetc%2Fpasswd/infer", 404),
        ("/v2/nothing", 404),
    ],
)
def test_unknown_things_are_404_json(client, path, status):
    r = client.post(path, json={}) if path.endswith("infer") else client.get(path)
    assert r.status_code == status
    assert "error" in r.json()


@pytest.mark.parametrize(
    "action,status,word", [("trap", 500, "trap"), ("deadline", 504, "deadline"), ("oom", 422, "memory")]
)
def test_sandbox_faults_map_to_statuses_and_server_keeps_serving(client, plan, action, status, word):
    plan.add(action, seconds=0.0)
    r = client.post("/v2/models/mlp/infer", json=body()[1])
    assert r.status_code == status and word in r.json()["error"].lower()
    assert client.post("/v2/models/mlp/infer", json=body()[1]).status_code == 200


def test_metrics_count_requests_errors_batches(client):
    client.post("/v2/models/mlp/infer", json=body()[1])
    client.post("/v2/models/mlp/infer", content=b"{nope")
    text = client.get("/metrics").text
    assert 'wasm_torch_inference_requests_total{code="200",model="mlp",protocol="http"} 1.0' in text
    assert 'wasm_torch_inference_errors_total{kind="bad_request",model="mlp"} 1.0' in text
    assert "wasm_torch_inference_batch_size_bucket" in text
    assert "wasm_torch_inference_queue_duration_seconds_count" in text
    assert 'wasm_torch_circuit_state{model="mlp",replica="0"} 0.0' in text


def test_unknown_model_names_do_not_become_metric_labels(client):
    client.post("/v2/models/attacker-chosen-label/infer", json={})
    assert "attacker-chosen-label" not in client.get("/metrics").text


def test_openapi_documents_v2_routes_and_infer_body(client):
    doc = client.get("/openapi.json").json()
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
    ]:
        assert path in doc["paths"]
    body_schema = doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]
    assert body_schema["content"]["application/json"]["schema"]["$ref"].endswith("InferenceRequest")
    assert "RequestInput" in doc["components"]["schemas"]


def test_status_table_covers_the_runtime_errors():
    assert classify(InputError("x")) == (400, "bad_input")
    assert classify(DeadlineExceeded("x"))[0] == 504
    assert classify(FuelExhausted("x"))[0] == 422
    assert classify(TrapError("x"))[0] == 500
    assert classify(RateLimited("x"))[0] == 429
    assert classify(RuntimeError("x")) == (500, "internal")
    classes = [c for c, _, _ in STATUS_TABLE]
    for i, c in enumerate(classes):  # a subclass listed after its base would be unreachable
        assert not any(issubclass(c, base) for base in classes[:i]), c


def test_not_ready_when_every_replica_is_isolated_or_dead(plan):
    app = create_app({"mlp": lambda: FaultyModel(FakeModel(), plan)}, SETTINGS.with_(replicas=1))
    with TestClient(app) as c:
        pool = app.state.server.registry.get("mlp")
        pool.replicas[0].isolated = True
        assert c.get("/v2/models/mlp/ready").status_code == 503
        assert c.get("/v2/health/ready").json() == {"ready": False}
        r = c.post("/v2/models/mlp/infer", json=body()[1])
        assert r.status_code == 503 and "Retry-After" in r.headers
