"""Request and answer limits in the app: requested outputs, the answer's size bound, JSON depth,
rate-limit buckets per whole token, what a token closes, and the settings' own checks."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from wasm_torch.cli import main
from wasm_torch.serve.app import create_app
from wasm_torch.serve.balancing import POLICIES
from wasm_torch.serve.clock import FakeClock
from wasm_torch.serve.errors import RequestError
from wasm_torch.serve.guard import check_bearer, token_id
from wasm_torch.serve.protocol import (
    encode_outputs,
    encode_response,
    json_depth,
    loads_strict,
    response_bytes_bound,
)
from wasm_torch.serve.settings import ServeSettings, SettingsError
from wasm_torch.serve.sim.balancing import POLICY_NAMES

from .fakes import FakeModel, Spec

SETTINGS = ServeSettings(replicas=1, healing=False, max_queue_delay_s=0.001)


class TwoOutputs(FakeModel):
    def __init__(self) -> None:
        super().__init__(outputs=[Spec("y", "float32", ("batch", 3)), Spec("z", "float32", ("batch", 3))])

    def run(self, inputs):
        y = super().run(inputs)["y"]
        return {"y": y, "z": -y}


def req(rows: int = 1, **extra) -> dict:
    data = np.arange(rows * 4, dtype=np.float32).tolist()
    return {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": data}], **extra}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app({"m": TwoOutputs}, SETTINGS)) as c:
        yield c


# --- requested outputs and the answer's size -------------------------------------------------------
@pytest.mark.parametrize(
    ("outputs", "word"),
    [
        ([{"name": "y"}] * 2, "more than once"),
        ([{"name": "y"}] * 100_000, "lists 100000 outputs"),
        ([{"name": "y"}, {"name": "nope"}], "must be one of"),
        ([{"name": ["y"]}], "must be one of"),
        ([{"name": {"a": 1}}], "must be one of"),
    ],
)
def test_unknown_or_duplicate_outputs_are_400(client, outputs, word):
    r = client.post("/v2/models/m/infer", json=req(outputs=outputs))
    assert r.status_code == 400 and word in r.json()["error"], r.text


def test_requested_outputs_in_order(client):
    r = client.post("/v2/models/m/infer", json=req(2, outputs=[{"name": "z"}, {"name": "y"}]))
    assert r.status_code == 200
    assert [o["name"] for o in r.json()["outputs"]] == ["z", "y"]


def test_answer_over_the_size_bound_is_422_before_encoding():
    rows = 64  # 64 rows x 3 floats x 2 outputs: a bound of ~10 KB
    results = TwoOutputs().run({"x": np.zeros((rows, 4), np.float32)})
    bound = response_bytes_bound(results, None)
    limit = bound - 1
    with TestClient(create_app({"m": TwoOutputs}, SETTINGS.with_(max_response_bytes=limit))) as c:
        r = c.post("/v2/models/m/infer", json=req(rows))
        assert r.status_code == 422 and "response limit" in r.json()["error"], r.text
        assert c.post("/v2/models/m/infer", json=req(rows, outputs=[{"name": "y"}])).status_code == 200
        assert c.post("/v2/models/m/infer", json=req(1)).status_code == 200  # and it keeps serving


def test_size_bound_is_an_upper_bound_of_the_real_answer():
    rng = np.random.default_rng(0)
    worst = {
        "f": -rng.random(1000).astype(np.float32) * 1e-30,  # long reprs: -1.2345678e-31 ...
        "d": np.full(1000, -1.7976931348623157e308),
        "i": np.full(1000, np.iinfo(np.int64).min),
        "u": np.full(1000, np.iinfo(np.uint64).max),
        "b": np.zeros(1000, bool),
    }
    real = len(encode_response("model", "1", "\u0001" * 256, worst, None))  # an id of 256 escapes
    assert real <= response_bytes_bound(worst, None)


def test_chunked_encoding_equals_the_reference(client):
    results = {"a": np.random.default_rng(1).random((3, 40_000)).astype(np.float32), "b": np.arange(5)}
    ref = {"model_name": "m", "model_version": "1", "id": "q", "outputs": encode_outputs(results, None)}
    assert encode_response("m", "1", "q", results, None) == json.dumps(ref, separators=(",", ":")).encode()


@pytest.mark.parametrize(("offload_bytes", "off_loop"), [(16, True), (1 << 30, False)])
def test_big_payloads_are_decoded_and_encoded_off_the_event_loop(monkeypatch, offload_bytes, off_loop):
    """Over `offload_bytes`, decoding and encoding run in a worker thread, not the event loop's."""
    import wasm_torch.serve.handler as handler

    seen: list[bool] = []
    for name in ("decode_request", "encode_response"):
        real = getattr(handler, name)

        def spy(*a, _real=real, **k):
            seen.append(threading.current_thread() is not loop_thread[0])
            return _real(*a, **k)

        monkeypatch.setattr(handler, name, spy)
    loop_thread: list[threading.Thread] = []
    app = create_app({"m": TwoOutputs}, SETTINGS.with_(offload_bytes=offload_bytes))

    async def go() -> httpx.Response:
        loop_thread.append(threading.current_thread())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post("/v2/models/m/infer", json=req(8))

    try:
        assert asyncio.run(go()).status_code == 200
    finally:
        app.state.server.registry.close()
    assert seen == [off_loop, off_loop]


# --- JSON depth ------------------------------------------------------------------------------
def test_json_depth_counts_structure_not_strings():
    assert json_depth(b'{"a":"[[[[[[[[[[","b":[[1]]}') == 3
    assert json_depth(b'"[[[["') == 0 and json_depth(b"[]") == 1 and json_depth(b"7") == 0
    assert json_depth(b'[{"k":"\\"[[["},[[[]]]]') == 4


def test_max_json_depth_is_enforced(client):
    nested = req()
    data = nested["inputs"][0]["data"]
    deep = data
    for _ in range(40):
        deep = [deep]
    nested["inputs"][0]["data"] = deep
    r = client.post("/v2/models/m/infer", json=nested)
    assert r.status_code == 400 and "nested 44 levels deep; the limit is 32" in r.json()["error"]
    with pytest.raises(RequestError, match="nested 4 levels deep; the limit is 3"):
        loads_strict(b"[[[[1]]]]", max_depth=3)
    assert loads_strict(b'[[["[[[[[["]]]', max_depth=3) == [[["[[[[[["]]]


# --- tokens: whole-token buckets, what a token closes -------------------------------------------
def test_rate_limit_buckets_are_per_whole_token():
    a, b = "team-shared-prefix-A", "team-shared-prefix-B"  # same first 4 (and 18) characters
    assert token_id(a) != token_id(b)
    assert check_bearer(f"Bearer {a}", [b, a]) == token_id(a)
    s = SETTINGS.with_(rate_limit_per_s=1, rate_limit_burst=3, auth_tokens=frozenset({a, b}))
    with TestClient(create_app({"m": TwoOutputs}, s, clock=FakeClock())) as c:
        codes = [
            c.post("/v2/models/m/infer", json=req(), headers={"Authorization": f"Bearer {a}"}).status_code
            for _ in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        other = c.post("/v2/models/m/infer", json=req(), headers={"Authorization": f"Bearer {b}"})
        assert other.status_code == 200  # tenant B is not throttled by A


@pytest.mark.parametrize("open_metrics,open_docs", [(False, False), (True, False), (False, True)])
def test_a_token_closes_metrics_and_docs_unless_opened(open_metrics, open_docs):
    s = SETTINGS.with_(auth_tokens=frozenset({"tok-1"}), open_metrics=open_metrics, open_docs=open_docs)
    with TestClient(create_app({"m": TwoOutputs}, s)) as c:
        auth = {"Authorization": "Bearer tok-1"}
        for path, is_open in [("/metrics", open_metrics), ("/openapi.json", open_docs), ("/docs", open_docs)]:
            r = c.get(path)
            assert r.status_code == (200 if is_open else 401), (path, r.text)
            assert c.get(path, headers=auth).status_code == 200
        assert c.get("/redoc").status_code == 404  # no second, unguarded docs page
        assert c.get("/v2/health/live").status_code == 200 and c.get("/v2/health/ready").status_code == 200
        assert c.get("/v2/models/m").status_code == 401


def test_without_tokens_everything_is_open():
    with TestClient(create_app({"m": TwoOutputs}, SETTINGS)) as c:
        assert c.get("/metrics").status_code == 200 and c.get("/openapi.json").status_code == 200
        assert "swagger" in c.get("/docs").text.lower()


# --- settings: one source of defaults, checked values -----------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        {"replicas": 0},
        {"max_body_bytes": -1},
        {"read_timeout_s": float("nan")},
        {"balancer": "fastest"},
        {"anomaly_client_share": 0.0},
        {"breaker_failure_rate": 2},
        {"deadline_s": 0},
        {"auth_tokens": frozenset({" padded "})},
        {"max_json_depth": True},
    ],
)
def test_bad_settings_are_refused_with_the_name(change):
    (name,) = change
    with pytest.raises(SettingsError, match=name):
        ServeSettings(**change)


def test_with_refuses_unknown_settings():
    with pytest.raises(SettingsError, match="unknown serve setting"):
        SETTINGS.with_(max_bdy_bytes=1)


def test_policy_names_and_cli_defaults_have_one_source(monkeypatch, tmp_path):
    import wasm_torch.serve

    assert tuple(POLICIES) == POLICY_NAMES
    seen = {}
    monkeypatch.setattr(wasm_torch.serve, "serve", lambda models, **kw: seen.update(kw))
    assert main(["serve", str(tmp_path)]) == 0
    # every default comes from ServeSettings, except gRPC: on at 8001 from the command line (Triton's
    # port), off in Python (create_app in a test or another ASGI server opens no second port)
    assert seen["settings"] == ServeSettings(grpc_port=8001)
    argv = ["serve", str(tmp_path), "--max-body-mb", "2", "--max-header-kb", "4", "--read-timeout", "3",
            "--keep-alive", "2", "--max-connections", "9", "--max-response-mb", "1", "--open-metrics",
            "--token", "t", "--policy", "least_outstanding"]  # fmt: skip
    assert main(argv) == 0
    s = seen["settings"]
    assert (s.max_body_bytes, s.max_header_bytes, s.read_timeout_s, s.keep_alive_s) == (
        2 << 20,
        4096,
        3.0,
        2.0,
    )
    assert (s.max_connections, s.max_response_bytes, s.open_metrics, s.open_docs) == (9, 1 << 20, True, False)
    assert s.balancer == "least_outstanding" and s.auth_tokens == frozenset({"t"})
    with pytest.raises(SystemExit):
        main(["serve", str(tmp_path), "--policy", "fastest"])
