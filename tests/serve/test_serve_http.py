"""The HTTP limits of a real `wasm-torch serve` process (serve/http.py): header cap, read timeout
(slowloris, slow bodies, silent connections), body limit, clients that hang up mid-body. Raw
sockets, because well-behaved clients cannot send what an attacker sends."""

from __future__ import annotations

import re
import socket
import threading
import time

import httpx
import pytest

from .conftest import Served, start_server, stop_server

pytestmark = pytest.mark.toolchain
READ_TIMEOUT = 1.5
HEADER_KB = 8


@pytest.fixture(scope="module")
def served(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("http") / "server.log"
    flags = ["--replicas", "1", "--read-timeout", str(READ_TIMEOUT), "--max-header-kb", str(HEADER_KB),
             "--keep-alive", "1", "--max-body-mb", "1"]  # fmt: skip
    s = start_server(model_dir, log, *flags)
    yield s
    stop_server(s.proc)


def connect(s: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the server closes (or the timeout); a reset counts as the end."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def status(raw: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_header_over_the_cap_is_431_and_memory_stays_flat(served):
    before = served.rss_bytes()
    results: list[tuple[int | None, int]] = []

    def flood() -> None:  # try to send a 64 MB header, as in the issue; the server stops us early
        sock = connect(served)
        sent = 0
        try:
            sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * 65536
            while sent < 64 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        results.append((status(read_all(sock, 5)), sent))
        sock.close()

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 8
    assert all(code in (431, None) for code, _ in results), results  # None: reset before we read it
    assert any(code == 431 for code, _ in results)
    assert all(sent < 64 << 20 for _, sent in results)  # cut off long before 64 MB
    assert served.rss_bytes() - before < 40 << 20
    assert httpx.get(served.url + "/v2/health/live").status_code == 200
    assert counter(served.metrics(), "wasm_torch_http_rejections_total", reason="header_too_large") >= 1


def test_slowloris_connections_are_closed_with_408(served):
    def slowloris(out: list[tuple[int | None, float]]) -> None:
        sock = connect(served)
        t0 = time.monotonic()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        try:
            for i in range(40):  # one header line every 0.25 s: never finishes within the timeout
                time.sleep(0.25)
                sock.sendall(b"X-%d: y\r\n" % i)
        except OSError:
            pass
        raw = read_all(sock, 5)
        out.append((status(raw), time.monotonic() - t0))
        sock.close()

    out: list[tuple[int | None, float]] = []
    threads = [threading.Thread(target=slowloris, args=(out,)) for _ in range(10)]
    for t in threads:
        t.start()
    assert httpx.get(served.url + "/v2/health/live").status_code == 200  # others are served meanwhile
    for t in threads:
        t.join(30)
    assert len(out) == 10
    assert all(code == 408 for code, _ in out), out
    assert all(READ_TIMEOUT - 0.1 < took < READ_TIMEOUT + 3 for _, took in out), out


def test_a_silent_connection_is_closed(served):
    sock = connect(served)
    t0 = time.monotonic()
    assert read_all(sock, READ_TIMEOUT + 5) == b""  # closed without a word
    assert time.monotonic() - t0 < READ_TIMEOUT + 3
    sock.close()


def test_a_slow_body_is_408_and_counted_as_408(served):
    before = counter(served.metrics(), "wasm_torch_inference_requests_total", code="408")
    sock = connect(served)
    sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b'{"inputs": [')  # fmt: skip
    raw = read_all(sock, READ_TIMEOUT + 5)
    sock.close()
    assert status(raw) == 408 and b"did not arrive" in raw
    after = served.metrics()
    assert counter(after, "wasm_torch_inference_requests_total", code="408") == before + 1
    assert 'code="500"' not in after


def test_a_client_that_hangs_up_mid_body_is_499_not_500(served):
    before = counter(served.metrics(), "wasm_torch_inference_requests_total", code="499")
    sock = connect(served)
    sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n" + b"[" * 1000)  # fmt: skip
    time.sleep(0.3)
    sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = served.metrics()
        if counter(text, "wasm_torch_inference_requests_total", code="499") == before + 1:
            break
        time.sleep(0.1)
    assert counter(text, "wasm_torch_inference_requests_total", code="499") == before + 1
    assert 'code="500"' not in text and "client_disconnected" in text


def test_a_declared_oversized_body_is_413_and_the_connection_closes(served):
    sock = connect(served)
    sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{")
    raw = read_all(sock, 10)
    sock.close()
    assert status(raw) == 413 and b"connection: close" in raw.lower()


@pytest.mark.parametrize("value", ["\u00b2", "-1", "1e3", " 12 x", "99999999999999999999999"])
def test_content_length_that_is_not_ascii_digits_is_400(served, value):
    sock = connect(served)
    sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 + value.encode("latin-1") + b"\r\n\r\n{}")  # fmt: skip
    raw = read_all(sock, 10)
    sock.close()
    assert status(raw) in (400, 413), raw[:200]  # h11 or the app refuses it; never a 5xx


def test_idle_keep_alive_connections_are_closed(served):
    sock = connect(served)
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    t0 = time.monotonic()
    raw = read_all(sock, 10)
    sock.close()
    assert status(raw) == 200 and b'{"live":true}' in raw
    assert time.monotonic() - t0 < 1 + 3  # --keep-alive 1
