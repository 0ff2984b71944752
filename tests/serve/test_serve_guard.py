"""The guard: red-team corpus, benign corpus, fuzzing, rate limits, auth, anomaly score, audit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasm_torch.errors import IndexOutOfRange
from wasm_torch.serve.app import create_app
from wasm_torch.serve.audit import AuditLog, verify_chain
from wasm_torch.serve.clock import FakeClock
from wasm_torch.serve.errors import RateLimited
from wasm_torch.serve.guard import AnomalyScorer, RateLimiter
from wasm_torch.serve.settings import ServeSettings

from .fakes import FakeModel, TokenModel
from .redteam import benign, corpus

LIMIT = 1 << 20
SETTINGS = ServeSettings(replicas=2, healing=False, max_queue_delay_s=0.001, max_body_bytes=LIMIT)


@pytest.fixture(scope="module")
def client():
    app = create_app({"mlp": FakeModel, "tok": TokenModel}, SETTINGS, seed=0)
    with TestClient(app) as c:
        yield c


def test_red_team_corpus_gets_4xx_and_the_server_keeps_serving(client):
    cases = list(corpus(body_limit=LIMIT))
    assert len(cases) >= 200
    failures = []
    for label, method, path, content, headers in cases:
        r = client.request(method, path, content=content, headers=headers)
        try:
            message = r.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = None
        if not (400 <= r.status_code < 500) or not isinstance(message, str) or not message:
            failures.append((label, r.status_code, r.text[:200]))
    assert failures == []
    ok = client.post("/v2/models/mlp/infer", json=next(benign(1)))
    assert ok.status_code == 200
    metrics = client.get("/metrics").text
    assert 'code="500"' not in metrics


@pytest.mark.parametrize(
    "raw,word",
    [
        (b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[NaN,1,2,3]}]}', "NaN"),
        (b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1e39,1,2,3]}]}', "finite"),
    ],
)
def test_non_finite_numbers_are_named_in_the_error(client, raw, word):
    r = client.post("/v2/models/mlp/infer", content=raw)
    assert r.status_code == 400 and word in r.json()["error"]


def test_oversized_body_is_413(client):
    r = client.post("/v2/models/mlp/infer", content=b" " * (LIMIT + 1))
    assert r.status_code == 413


TOKENS = tuple(f"tenant-{i}-secret" for i in range(6))


def test_benign_corpus_has_no_false_positives():
    """300 ordinary requests from six tenants: none rejected; then an outlier is (422)."""
    s = SETTINGS.with_(anomaly_reject_score=12.0, anomaly_warmup=32, auth_tokens=frozenset(TOKENS))
    app = create_app({"mlp": FakeModel}, s, seed=0)
    with TestClient(app) as c:
        statuses = [
            c.post("/v2/models/mlp/infer", json=req, headers=bearer(TOKENS[i % 6])).status_code
            for i, req in enumerate(benign(300))
        ]
        assert statuses == [200] * 300
        assert c.get("/v2/models/mlp/stats", headers=bearer(TOKENS[0])).json()["anomaly"]["warm"] is True
        data = [900.0, -800, 700, 5]
        weird = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": data}]}
        r = c.post("/v2/models/mlp/infer", json=weird, headers=bearer(TOKENS[0]))
        assert r.status_code == 422 and "anomaly" in r.json()["error"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class PickyModel(FakeModel):
    """Refuses (IndexOutOfRange, a 400) any row whose first value is over 1000: a request that
    passes the guard and is rejected later, by the model."""

    def run(self, inputs):
        if (inputs["x"][:, 0] > 1000).any():
            raise IndexOutOfRange("m: index out of range")
        return super().run(inputs)


def test_rejected_requests_never_shape_the_anomaly_baseline():
    """The reported attack: 32 requests that were rejected later poisoned the baseline during warm-up, and then
    every ordinary request got 422 forever. The baseline now learns only from 200s."""
    s = SETTINGS.with_(anomaly_reject_score=12.0, anomaly_warmup=32, auth_tokens=frozenset(TOKENS))
    app = create_app({"mlp": PickyModel}, s, seed=0)
    poison = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5000.0, 5000, 5000, 5000]}]
    }
    with TestClient(app) as c:
        for i in range(64):  # rejected by the model (400), from every tenant, during warm-up
            assert (
                c.post("/v2/models/mlp/infer", json=poison, headers=bearer(TOKENS[i % 6])).status_code == 400
            )
        assert c.get("/v2/models/mlp/stats", headers=bearer(TOKENS[0])).json()["anomaly"]["learned_rows"] == 0
        codes = [
            c.post("/v2/models/mlp/infer", json=req, headers=bearer(TOKENS[i % 6])).status_code
            for i, req in enumerate(benign(120))
        ]
        assert codes == [200] * 120


def test_one_client_cannot_define_normal_for_everyone():
    """Accepted but unusual requests from ONE client hold at most `anomaly_client_share` of the
    baseline, so ordinary traffic from the others is not flagged; with the share at 1.0 (no bound)
    the same client alone defines "normal" and ordinary requests get 422."""
    odd = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [300.0, 300, 300, 300]}]}

    def run(share: float) -> tuple[list[int], dict]:
        s = SETTINGS.with_(
            anomaly_reject_score=12.0,
            anomaly_warmup=32,
            anomaly_client_share=share,
            auth_tokens=frozenset(TOKENS),
        )
        with TestClient(create_app({"mlp": FakeModel}, s, seed=0)) as c:
            for _ in range(100):  # the first client to arrive, while the baseline is empty
                assert c.post("/v2/models/mlp/infer", json=odd, headers=bearer(TOKENS[0])).status_code == 200
            codes = [
                c.post("/v2/models/mlp/infer", json=req, headers=bearer(TOKENS[1 + i % 5])).status_code
                for i, req in enumerate(benign(100))
            ]
            return codes, c.get("/v2/models/mlp/stats", headers=bearer(TOKENS[0])).json()["anomaly"]

    codes, stats = run(0.25)
    assert codes == [200] * 100
    assert stats["warm"] and stats["rows_over_share"] >= 92  # 100 odd rows sent, at most 8 learned
    unbounded, _ = run(1.0)
    assert unbounded.count(422) > 90  # what the bound prevents


def test_anomaly_scorer_bounds_each_clients_share():
    rng = np.random.default_rng(0)
    sc = AnomalyScorer(warmup=20, client_share=0.25)
    for _ in range(50):  # a lone client: at most ceil(0.25 * 20) = 5 rows, then nothing
        sc.score({"x": rng.standard_normal((1, 4))}, client="solo")
    d = sc.describe()
    assert d["learned_rows"] == 5 and d["rows_over_share"] == 45 and not d["warm"]
    for i in range(200):
        sc.score({"x": rng.standard_normal((1, 4))}, client=f"c{i % 8}")
    d = sc.describe()
    assert d["warm"] and d["learned_rows"] == 205 and d["clients"] == 9


def test_bearer_auth():
    app = create_app({"mlp": FakeModel}, SETTINGS.with_(auth_tokens=frozenset({"s3cret-token"})))
    with TestClient(app) as c:
        req = next(benign(1))
        assert c.post("/v2/models/mlp/infer", json=req).status_code == 401
        bad = c.post("/v2/models/mlp/infer", json=req, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == "Bearer"
        assert c.get("/v2/models/mlp").status_code == 401
        good = c.post("/v2/models/mlp/infer", json=req, headers={"Authorization": "Bearer s3cret-token"})
        assert good.status_code == 200
        assert c.get("/v2/health/live").status_code == 200  # probes stay open


def test_flood_is_rate_limited_per_client_and_others_still_served():
    clock = FakeClock()
    s = SETTINGS.with_(rate_limit_per_s=5, rate_limit_burst=10, auth_tokens=frozenset({"aaaa1", "bbbb2"}))
    app = create_app({"mlp": FakeModel}, s, clock=clock)
    with TestClient(app) as c:
        a, b = {"Authorization": "Bearer aaaa1"}, {"Authorization": "Bearer bbbb2"}
        req = next(benign(1))
        codes = [c.post("/v2/models/mlp/infer", json=req, headers=a).status_code for _ in range(30)]
        assert codes[:10] == [200] * 10 and set(codes[10:]) == {429}
        limited = c.post("/v2/models/mlp/infer", json=req, headers=a)
        assert "Retry-After" in limited.headers
        assert c.post("/v2/models/mlp/infer", json=req, headers=b).status_code == 200
        clock.advance(1.0)  # 5 tokens back
        assert [c.post("/v2/models/mlp/infer", json=req, headers=a).status_code for _ in range(6)] == [
            200
        ] * 5 + [429]


def test_rate_limiter_forgets_old_clients():
    clock = FakeClock()
    rl = RateLimiter(1.0, 1, clock, max_clients=3)
    for i in range(10):
        rl.check(f"c{i}")
    assert len(rl._buckets) == 3
    with pytest.raises(RateLimited):
        rl.check("c9")


def test_anomaly_score_is_zero_in_warmup_then_flags_outliers():
    rng = np.random.default_rng(0)
    sc = AnomalyScorer(warmup=20)
    scores = [
        sc.score({"x": rng.standard_normal((1, 4)).astype(np.float32)}, f"c{i % 8}") for i in range(200)
    ]
    assert scores[:20] == [0.0] * 20
    assert max(scores[20:]) < 6
    assert sc.score({"x": np.full((1, 4), 50, np.float32)}) > 20


def test_audit_log_is_hash_chained_and_detects_tampering(tmp_path):
    path = tmp_path / "audit.jsonl"
    app = create_app({"mlp": FakeModel}, SETTINGS.with_(audit_log=path))
    with TestClient(app) as c:
        c.post("/v2/models/mlp/infer", json=next(benign(1)))
        c.post("/v2/models/mlp/infer", content=b"garbage")
        c.post("/v2/models/nope/infer", json={})
    ok, n, _ = verify_chain(path)
    assert ok and n == 3
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["status"] for r in records] == [200, 400, 404]
    assert "input_sha256" in records[0] and records[1]["error"] == "bad_request"
    AuditLog(path).append("restart", replica=0)  # reopening extends the chain
    assert verify_chain(path)[:2] == (True, 4)
    tampered = lines[1].replace('"status":400', '"status":200')
    path.write_text("\n".join([lines[0], tampered, *lines[2:]]) + "\n")
    assert verify_chain(path)[:2] == (False, 1)
    with pytest.raises(ValueError):
        AuditLog(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5),
    max_leaves=30,
)
shapes = st.lists(st.integers(-3, 10**12), max_size=4)
tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "y", ""]),
        "shape": shapes,
        "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "X"]),
        "data": json_values,
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"inputs": st.lists(tensors, max_size=3)}, optional={"id": json_values, "outputs": json_values}
        ),
    )
)
def test_fuzzed_bodies_never_cause_a_server_error(client, payload):
    r = client.post("/v2/models/mlp/infer", content=json.dumps(payload).encode())
    assert r.status_code in (200, 400, 413, 422), r.text
    assert ("outputs" in r.json()) if r.status_code == 200 else isinstance(r.json()["error"], str)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 6), st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=48))
def test_fuzzed_valid_shapes_round_trip(client, rows, values):
    data = (values * (rows * 4))[: rows * 4]
    req = {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": data}]}
    r = client.post("/v2/models/mlp/infer", json=req)
    assert r.status_code == 200
    assert r.json()["outputs"][0]["shape"] == [rows, 3]
