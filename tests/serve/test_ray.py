"""Scale-out on Ray Serve, on a real local Ray instance (2 CPUs, no dashboard).

One compiled MLP, 2 replicas behind our `PolicyRouter` (peak-EWMA), the KServe v2 routes over
loopback HTTP: health and metadata, values equal to torch and to the local wasm module under
concurrency, bad input answered exactly as the plain server answers it, both replicas used (the
router's record and each replica's own count agree), and a replica that turns unhealthy is
avoided by the router and replaced by Ray. The router's ranking is also unit-tested on fakes.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import ray
import torch
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from ray import serve
from ray.exceptions import ActorDiedError, RayTaskError
from ray.serve.request_router import RequestRouter

import wasm_torch
from wasm_torch.errors import IndexOutOfRange, InputError
from wasm_torch.serve.app import create_app
from wasm_torch.serve.errors import ReplicaFailure, RequestTimeout, classify
from wasm_torch.serve.ray.app import APP_NAME, Autoscaling, build_ray_app, deployment_name
from wasm_torch.serve.ray.env import init_ray
from wasm_torch.serve.ray.ingress import RemotePool
from wasm_torch.serve.ray.router import PolicyRanking, PolicyRouter
from wasm_torch.serve.settings import ServeSettings

pytestmark = pytest.mark.toolchain
REPO = Path(__file__).resolve().parents[2]
SETTINGS = ServeSettings(replicas=1, healing=False, max_queue_delay_s=0.001)
AUTOSCALING = Autoscaling(
    min_replicas=1, max_replicas=2, target_ongoing_requests=1, upscale_delay_s=1, downscale_delay_s=4,
    look_back_period_s=2,
)
WAIT_S = 180.0  # generous: 2 shared cores, Ray starts worker processes on demand


@dataclass
class Cluster:
    url: str
    path: Path
    model: torch.nn.Module
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def stats(self) -> dict[str, Any]:
        r = self.client.get("/v2/models/mlp/stats")
        assert r.status_code == 200, r.text
        return r.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def infer_body(x: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT_S, every: float = 0.25) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_models")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    wasm_torch.compile(model, (torch.randn(2, 4),), root / "mlp", dynamic_shapes=({0: batch},))
    # an embedding traps (IndexOutOfRange) on an out-of-range id: wasmtime's signal handlers must survive Ray
    wasm_torch.compile(torch.nn.Embedding(10, 4), (torch.tensor([1, 2]),), root / "emb")
    # a tampered copy: listed as refused by the ingress instead of failing the whole deployment
    shutil.copytree(root / "mlp", root / "tampered")
    weights = root / "tampered" / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x7f")
    # a slower model (~10-50 ms a call) that autoscales between 1 and 2 replicas
    torch.manual_seed(1)
    big = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256)).eval()
    wasm_torch.compile(big, (torch.randn(2, 256),), root / "auto", dynamic_shapes=({0: batch},))
    init_ray(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024 * 1024,  # Ray's minimum is 75 MiB
        log_to_driver=False,
    )
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_ray_app(
            {"mlp": root / "mlp", "emb": root / "emb", "tampered": root / "tampered", "auto": root / "auto"},
            SETTINGS,
            num_replicas={"mlp": 2, "emb": 1, "tampered": 1, "auto": 1},
            autoscaling={"auto": AUTOSCALING},
            policy="peak_ewma",
            replica_cpus=0.25,  # 2 CPUs: mlp 2 + emb 1 + auto up to 2 replicas, and the ingress
            ingress_cpus=0.25,
            health_check_period_s=1.0,
            routing_stats_period_s=0.5,
            probe_interval_s=0.5,
            seed=0,
        )
        serve.run(app, name=APP_NAME, route_prefix="/")
        c = Cluster(f"http://127.0.0.1:{port}", root / "mlp", model)
        yield c
        c.client.close()
    finally:
        serve.shutdown()
        ray.shutdown()


def test_health_and_metadata_match_the_plain_server(cluster):
    c = cluster.client
    assert c.get("/v2/health/live").json() == {"live": True}
    wait_for(lambda: c.get("/v2/health/ready").status_code == 200, "ready")
    assert c.get("/v2/health/ready").json() == {"ready": True, "refused": ["tampered"]}
    assert c.get("/v2").json()["name"] == "wasm-torch"
    assert c.get("/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}
    with TestClient(create_app({"mlp": cluster.path}, SETTINGS)) as plain:
        assert c.get("/v2/models/mlp").json() == plain.get("/v2/models/mlp").json()
        assert c.get("/v2/models/mlp/versions/1").json()["inputs"] == [
            {"name": "input", "datatype": "FP32", "shape": [-1, 4]}
        ]


def test_a_tampered_artifact_is_listed_as_refused_and_the_others_served(cluster):
    """On Ray too, one bad folder refuses that model only (checked in the driver before deploying)."""
    c = cluster.client
    index = {row["name"]: row for row in c.post("/v2/repository/index").json()}
    assert index["mlp"]["state"] == "READY" and index["emb"]["state"] == "READY"
    assert index["tampered"]["state"] == "UNAVAILABLE"
    assert "IntegrityError" in index["tampered"]["reason"] and "weights.bin" in index["tampered"]["reason"]
    assert str(cluster.path.parent) not in index["tampered"]["reason"]
    r = c.post("/v2/models/tampered/infer", json=infer_body(np.ones((1, 4), np.float32)))
    assert r.status_code == 503 and "refused at load" in r.json()["error"]
    assert deployment_name("tampered") not in serve.status().applications[APP_NAME].deployments
    ok = c.post("/v2/models/mlp/infer", json=infer_body(np.ones((1, 4), np.float32)))
    assert ok.status_code == 200


async def _fire(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        return await asyncio.gather(*(c.post("/v2/models/mlp/infer", json=b) for b in bodies))


def test_concurrent_infer_equals_torch_and_wasm_and_uses_both_replicas(cluster):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1 + i % 4, 4)).astype(np.float32) for i in range(48)]
    responses = asyncio.run(_fire(cluster.url, [infer_body(x) for x in xs]))
    assert [r.status_code for r in responses] == [200] * len(xs), [r.text for r in responses[:3]]
    local = wasm_torch.load(cluster.path)
    for x, r in zip(xs, responses, strict=True):
        out = r.json()["outputs"][0]
        got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
        want = cluster.model(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got, local(x), rtol=1e-6, atol=1e-6)
    router = cluster.stats()["router"]
    assert router["router"] == "PolicyRouter" and router["policy"] == "peak_ewma"
    live = [r for r in router["replicas"] if r["live"]]
    assert len(live) == 2 and all(r["routed"] > 0 for r in live), router
    assert sum(r["routed"] for r in router["replicas"]) >= len(xs)

    def replicas_agree() -> list[dict[str, Any]] | None:  # each replica's own count, via the probes
        seen = cluster.stats()["replicas"]
        routed = {r["id"]: r["routed"] for r in cluster.stats()["router"]["replicas"]}
        ok = len(seen) == 2 and all(s["served"] == routed[s["replica"]] > 0 for s in seen)
        return seen if ok else None

    wait_for(replicas_agree, "both replicas to report the requests the router sent them")


BAD_BODIES: list[tuple[str, Any]] = [
    ("/v2/models/mlp/infer", infer_body(np.zeros((2, 5), np.float32))),  # wrong dim
    (
        "/v2/models/mlp/infer",
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[NaN,0,0,0]}]}',
    ),
    (
        "/v2/models/mlp/infer",
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT64", "data": [1] * 4}]},
    ),
    (
        "/v2/models/mlp/infer",
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1.0]}]},
    ),
    (
        "/v2/models/mlp/infer",
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}]},
    ),
    ("/v2/models/mlp/infer", b'{"inputs": ['),
    ("/v2/models/nope/infer", infer_body(np.zeros((1, 4), np.float32))),
    ("/v2/models/mlp/infer", infer_body(np.zeros((65, 4), np.float32))),  # over the compiled max
]


def test_bad_input_gets_the_plain_servers_status_and_error_body(cluster):
    models = {name: cluster.path.parent / name for name in ("mlp", "emb", "auto")}
    with TestClient(create_app(models, SETTINGS)) as plain:
        for path, body in BAD_BODIES:
            kw = (
                {"content": body, "headers": {"content-type": "application/json"}}
                if isinstance(body, bytes)
                else {"json": body}
            )
            want = plain.post(path, **kw)
            got = cluster.client.post(path, **kw)
            assert 400 <= want.status_code < 500, want.text
            assert (got.status_code, got.json()) == (want.status_code, want.json()), path
            assert set(got.json()) == {"error"} and got.json()["error"]
    ok = cluster.client.post("/v2/models/mlp/infer", json=infer_body(np.ones((1, 4), np.float32)))
    assert ok.status_code == 200  # still serving


def test_wasm_traps_stay_exceptions_in_the_driver_and_in_replicas(cluster, tmp_path):
    """Ray's failure signal handler and faulthandler sit above wasmtime's unless serve/ray/env.py stops
    them; then a trap crashed the whole process with SIGILL instead of raising."""
    local = wasm_torch.load(cluster.path.parent / "emb")
    with pytest.raises(IndexOutOfRange):
        local(np.array([3, 10]))
    c = cluster.client
    wait_for(lambda: c.get("/v2/models/emb/ready").status_code == 200, "emb ready")
    bad = {"inputs": [{"name": "input", "shape": [2], "datatype": "INT64", "data": [3, 10]}]}
    r = c.post("/v2/models/emb/infer", json=bad)
    assert r.status_code == 400 and re.search("out of range|valid indices", r.json()["error"]), r.text
    good = {"inputs": [{"name": "input", "shape": [2], "datatype": "INT64", "data": [3, 9]}]}
    r = c.post("/v2/models/emb/infer", json=good)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.ravel(r.json()["outputs"][0]["data"]), local(np.array([3, 9])).ravel())


def test_unhealthy_replica_is_avoided_then_replaced(cluster):
    before = {r["id"] for r in cluster.stats()["router"]["replicas"] if r["live"]}
    handle = serve.get_deployment_handle(deployment_name("mlp"), app_name=APP_NAME)
    victim = handle.enter_safe_mode.remote().result(timeout_s=60)
    assert victim in before
    x = np.ones((2, 4), np.float32)
    codes: list[int] = []
    routed_when_flagged: int | None = None
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        codes.append(cluster.client.post("/v2/models/mlp/infer", json=infer_body(x)).status_code)
        rows = {r["id"]: r for r in cluster.stats()["router"]["replicas"]}
        v = rows[victim]
        if routed_when_flagged is None and v["live"] and v["reported_healthy"] is False:
            routed_when_flagged = v["routed"]
        live = {i for i, r in rows.items() if r["live"]}
        if victim not in live and len(live) == 2 and all(rows[i]["reported_healthy"] for i in live):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"replica {victim} was not replaced within {WAIT_S:g} s")
    assert set(codes) == {200}, codes  # every request answered while the replica was swapped
    new = live - before
    assert len(new) == 1 and victim not in live
    router = cluster.stats()["router"]
    # The flag is visible for >= 2 health-check periods (Ray replaces a replica after 3 failed
    # checks, 1 s apart; routing stats every 0.5 s), and the loop polls every ~0.1 s: it is seen.
    assert routed_when_flagged is not None, "the replica was never seen flagged before Ray replaced it"
    assert {r["id"]: r for r in router["replicas"]}[victim]["routed"] == routed_when_flagged  # no more work
    assert router["avoided_unhealthy"] > 0
    ok = cluster.client.post("/v2/models/mlp/infer", json=infer_body(x))
    assert ok.status_code == 200


def _running(model: str) -> int:
    """RUNNING replicas of a model's deployment, from Ray Serve's public status API."""
    app = serve.status().applications.get(APP_NAME)
    d = app.deployments.get(deployment_name(model)) if app is not None else None
    return 0 if d is None else int(d.replica_states.get("RUNNING", 0))


def test_autoscaling_follows_load_within_its_bounds(cluster):
    """6 closed-loop clients on a model with target 1 ongoing request per replica: Ray adds a
    replica (never more than max 2); when the load stops it removes one (never fewer than min 1).
    Every request is answered 200 throughout."""
    wait_for(lambda: _running("auto") == 1, "auto at its minimum of 1 replica")
    x = np.random.default_rng(0).standard_normal((16, 256)).astype(np.float32)
    codes: list[int] = []
    seen: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=cluster.url, timeout=120) as c:
            while not stop.is_set():
                codes.append(c.post("/v2/models/auto/infer", json=infer_body(x)).status_code)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: (seen.append(_running("auto")) or seen[-1]) >= 2, "a second replica under load")
        time.sleep(3)  # load continues: it must stay within the bound
        seen.append(_running("auto"))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    wait_for(lambda: (seen.append(_running("auto")) or seen[-1]) == 1, "back to 1 replica without load")
    assert max(seen) == 2 and min(seen) >= 1, seen
    assert codes and set(codes) == {200}, sorted(set(codes))


def test_ingress_metrics_merge_every_model_replicas_own_metrics(cluster):
    """/metrics of the ingress: its own series (requests by protocol) and each mlp replica's pool
    series, labelled ray_replica, as one valid exposition (one HELP/TYPE per family)."""
    c = cluster.client
    for _ in range(12):
        assert c.post("/v2/models/mlp/infer", json=infer_body(np.ones((1, 4), np.float32))).status_code == 200

    def per_replica() -> dict[str, float] | None:
        samples = [s for fam in text_string_to_metric_families(c.get("/metrics").text) for s in fam.samples]
        healthy = {
            s.labels["ray_replica"] for s in samples if s.name == "wasm_torch_replica_healthy" and s.labels["model"] == "mlp"
        }
        computed = {
            s.labels["ray_replica"]: s.value
            for s in samples
            if s.name == "wasm_torch_inference_compute_duration_seconds_count" and s.labels.get("model") == "mlp"
        }
        live = {r["id"] for r in cluster.stats()["router"]["replicas"] if r["live"]}
        ok = len(live) == 2 and healthy == live and sum(computed.values()) >= 12
        return computed if ok else None

    wait_for(per_replica, "both mlp replicas' own metrics in the ingress's /metrics")
    text = c.get("/metrics").text
    assert text.count("# TYPE wasm_torch_inference_compute_duration_seconds histogram") == 1
    own = [line for line in text.splitlines() if line.startswith("wasm_torch_inference_requests_total{")]
    assert any('model="mlp"' in line and 'protocol="http"' in line and "ray_replica" not in line for line in own)


# --- the router's ranking on fakes (no cluster needed, no Ray internals) ------------------------
@dataclass(frozen=True)
class FakeId:
    unique_id: str


@dataclass
class FakeReplica:
    replica_id: FakeId
    routing_stats: dict[str, Any] = field(default_factory=dict)


_ids = itertools.count()


def _ranking(ranking: PolicyRanking, replicas: list[FakeReplica], method: str = "infer") -> list[str]:
    return [r.replica_id.unique_id for r in ranking.rank(replicas, method)]


def _route(ranking: PolicyRanking, replica: FakeReplica, method: str = "infer") -> str:
    request_id = str(next(_ids))
    ranking.routed_to(replica.replica_id, method, request_id)
    return request_id


def test_router_policies_are_selectable_and_rank_as_balancing_does():
    a, b = FakeReplica(FakeId("a")), FakeReplica(FakeId("b"))
    lo = PolicyRanking("m", "least_outstanding", seed=0)
    for _ in range(3):
        _route(lo, a)
    assert _ranking(lo, [a, b]) == ["b", "a"]
    assert lo.snapshot({})["policy"] == "least_outstanding"

    ew = PolicyRanking("m", "peak_ewma", seed=0)
    slow, fast = _route(ew, a), _route(ew, b)
    ew.completed(fast)
    time.sleep(0.05)
    ew.completed(slow)
    assert _ranking(ew, [a, b]) == ["b", "a"]  # a's peak-EWMA latency is the higher one
    snap = {r["id"]: r for r in ew.snapshot({"a": a, "b": b})["replicas"]}
    assert snap["a"]["ewma_ms"] >= 40 > snap["b"]["ewma_ms"] and snap["a"]["outstanding"] == 0
    assert snap["a"]["live"] and snap["a"]["reported_healthy"] is True


def test_router_ranks_self_reported_unhealthy_replicas_last_and_spreads_control_calls():
    sick = FakeReplica(FakeId("sick"), {"healthy": False})
    well = FakeReplica(FakeId("well"), {"healthy": True})
    ranking = PolicyRanking("m", "least_outstanding", seed=0)
    for _ in range(5):  # even with more outstanding work, the healthy replica comes first
        _route(ranking, well)
    assert _ranking(ranking, [sick, well]) == ["well", "sick"]
    assert ranking.avoided == 1
    firsts = {_ranking(ranking, [sick, well], method="describe")[0] for _ in range(4)}
    assert firsts == {"sick", "well"}  # probes reach every replica


def test_the_router_class_is_rays_public_request_router():
    assert issubclass(PolicyRouter, RequestRouter)  # public: ray.serve.request_router


def test_cli_without_ray_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from wasm_torch.cli import main\n"
        f"raise SystemExit(main(['serve', {str(tmp_path)!r}, '--ray']))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "pip install 'wasm-torch[ray]'" in p.stderr and "Traceback" not in p.stderr


# --- the ingress's forwarding pool on a fake handle (no cluster needed) ---------------------------
class FakeResponse:
    def __init__(self, outcome: Any, delay_s: float = 0.0) -> None:
        self.outcome, self.delay_s, self.cancelled = outcome, delay_s, False

    async def _result(self) -> Any:
        await asyncio.sleep(self.delay_s)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def __await__(self):
        return self._result().__await__()

    def cancel(self) -> None:
        self.cancelled = True


class FakeHandle:
    """`handle.infer.remote(inputs)` answers with the next scripted outcome."""

    def __init__(self, *responses: FakeResponse) -> None:
        self.responses, self.sent = list(responses), 0
        self.infer = SimpleNamespace(remote=self._remote)

    def _remote(self, inputs: dict[str, Any]) -> FakeResponse:
        self.sent += 1
        return self.responses.pop(0)


def _remote_pool(*responses: FakeResponse, **settings: Any) -> tuple[RemotePool, FakeHandle]:
    handle = FakeHandle(*responses)
    handle.deployment_name = "model-mlp"  # type: ignore[attr-defined]
    spec = {"inputs": [], "outputs": []}
    return RemotePool("mlp", handle, spec, ServeSettings(**settings), app_name="unit"), handle  # type: ignore[arg-type]


def _run_infer(pool: RemotePool) -> Any:
    return asyncio.run(pool.ainfer({"input": np.zeros((1, 4), np.float32)}))


def test_remote_pool_hands_on_replica_errors_retries_dead_replicas_and_times_out():
    bad = InputError("input 'input': dim 1 is 5 but the model expects 4")
    pool, _ = _remote_pool(FakeResponse(RayTaskError("infer", "Traceback ...", bad)))
    with pytest.raises(InputError) as e:
        _run_infer(pool)
    assert str(e.value) == str(bad) and classify(e.value) == (400, "bad_input")  # no Ray traceback

    pool, _ = _remote_pool(FakeResponse(RayTaskError("infer", "Traceback ...", KeyError("x"))))
    with pytest.raises(RuntimeError) as e:
        _run_infer(pool)
    assert classify(e.value) == (500, "internal")  # a foreign error stays an internal one

    y = {"output_0": np.ones((1, 3), np.float32)}
    pool, handle = _remote_pool(FakeResponse(ActorDiedError()), FakeResponse(y), max_retries=2)
    assert _run_infer(pool) is y and handle.sent == 2  # the replica died: retried on another

    pool, handle = _remote_pool(*(FakeResponse(ActorDiedError()) for _ in range(3)), max_retries=2)
    with pytest.raises(ReplicaFailure):
        _run_infer(pool)
    assert handle.sent == 3

    slow = FakeResponse(y, delay_s=5.0)
    pool, _ = _remote_pool(slow, request_timeout_s=0.05)
    with pytest.raises(RequestTimeout):
        _run_infer(pool)
    assert slow.cancelled
