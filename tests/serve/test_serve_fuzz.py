"""No input produces a 5xx: the seeded HTTP fuzzer (serve/sim/fuzz.py; the full 20,000+ request run is
`bench/fuzz_http.py`) against the in-process app and a real `wasm-torch serve` process, both over
real compiled models (an FP32 MLP and an INT64 token model whose bad ids trap)."""

from __future__ import annotations

import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from wasm_torch.serve.app import create_app
from wasm_torch.serve.settings import ServeSettings
from wasm_torch.serve.sim.fuzz import Case, HttpFuzzer, RawCase

from .conftest import start_server, stop_server

pytestmark = pytest.mark.toolchain
SETTINGS = ServeSettings(replicas=1, healing=False, max_queue_delay_s=0.001, max_body_bytes=1 << 20)


def test_the_fuzzer_is_deterministic():
    meta = {
        "m": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": [{"name": "y"}]}
    }
    a, b = HttpFuzzer(meta, seed=7), HttpFuzzer(meta, seed=7)
    assert list(a.cases(300)) == list(b.cases(300))
    assert list(a.raw_cases(50)) == list(b.raw_cases(50))
    assert list(HttpFuzzer(meta, seed=8).cases(50)) != list(HttpFuzzer(meta, seed=7).cases(50))
    labels = Counter(c.label.split(":")[0] for c in HttpFuzzer(meta, seed=0).cases(2000))
    assert set(labels) == {"valid", "tree", "bytes", "header", "route", "outputs", "random"}


def test_fuzzed_requests_in_process_never_get_a_5xx(compiled):
    app = create_app({name: path for name, (path, _) in compiled.items()}, SETTINGS)
    with TestClient(app, raise_server_exceptions=False) as c:
        meta = {name: c.get(f"/v2/models/{name}").json() for name in compiled}
        statuses: Counter[int] = Counter()
        fivexx = []
        for case in HttpFuzzer(meta, seed=0).cases(3000):
            r = c.request(case.method, case.path, content=case.body, headers=case.header_bytes())
            statuses[r.status_code] += 1
            if r.status_code >= 500:
                fivexx.append((case.label, r.status_code, r.text[:200], case.body[:200]))
        assert fivexx == []
        assert statuses[200] > 200 and statuses[400] > 1000  # the valid ones still work
        assert c.get("/v2/health/ready").status_code == 200
        assert 'code="5' not in c.get("/metrics").text


def test_fuzzed_binary_requests_in_process_never_get_a_5xx(compiled):
    """Binary-extension requests, valid and lying (sizes, header length, cut, extra or flipped
    bytes, NaN, swapped tensors, data beside a size, no header): no 5xx, the valid ones 200."""
    app = create_app({name: path for name, (path, _) in compiled.items()}, SETTINGS)
    with TestClient(app, raise_server_exceptions=False) as c:
        meta = {name: c.get(f"/v2/models/{name}").json() for name in compiled}
        fz = HttpFuzzer(meta, seed=0)
        assert list(fz.binary_cases(50)) == list(HttpFuzzer(meta, seed=0).binary_cases(50))
        by_op: dict[str, Counter[int]] = {}
        for case in fz.binary_cases(1000):
            r = c.request(case.method, case.path, content=case.body, headers=case.header_bytes())
            by_op.setdefault(case.label, Counter())[r.status_code] += 1
        assert all(code < 500 for counts in by_op.values() for code in counts), by_op
        assert set(by_op["binary:valid"]) == {200}
        for op in ("binary:size", "binary:cut", "binary:extend", "binary:data_too", "binary:no_header"):
            assert set(by_op[op]) <= {400, 413} and by_op[op][400] > 0, (op, by_op[op])
        assert 'code="5' not in c.get("/metrics").text


def _send(base: str, case: Case, client: httpx.Client) -> int | None:
    """The status, or None when the client library itself refuses to send the case."""
    try:
        return client.request(
            case.method, base + case.path, content=case.body, headers=case.header_bytes()
        ).status_code
    except httpx.LocalProtocolError:
        return None


def _send_raw(port: int, case: RawCase) -> int | None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(case.data)
        except OSError:
            return None
        sock.settimeout(10)
        try:
            head = sock.recv(64)
        except (ConnectionResetError, TimeoutError):
            return None
    return int(head[9:12]) if head.startswith(b"HTTP/1.") else None


@pytest.mark.slow  # ~30 s: a server process and 950 requests (still part of make test)
def test_fuzzed_requests_against_a_real_server_never_get_a_5xx(model_dir, tmp_path):
    s = start_server(model_dir, tmp_path / "server.log", "--replicas", "1", "--read-timeout", "3")
    try:
        with httpx.Client(timeout=30) as c:
            meta = {name: c.get(f"{s.url}/v2/models/{name}").json() for name in ("mlp", "tok")}
            fz = HttpFuzzer(meta, seed=1)
            with ThreadPoolExecutor(4) as pool:
                codes = list(pool.map(lambda case: _send(s.url, case, c), fz.cases(800)))
                raw = list(pool.map(lambda case: _send_raw(s.port, case), fz.raw_cases(150)))
            assert [code for code in codes if code is not None and code >= 500] == []
            assert [code for code in raw if code is not None and code >= 500] == []
            assert Counter(codes)[200] > 50 and codes.count(None) < 20  # nearly all were sent
            assert c.get(f"{s.url}/v2/health/ready").status_code == 200
            assert 'code="5' not in c.get(f"{s.url}/metrics").text
    finally:
        stop_server(s.proc)
