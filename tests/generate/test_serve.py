"""Generation over HTTP: `wasm-torch serve` answers /generate (JSON) and /generate_stream (server-sent
events) with Python's tokens; every malformed, oversized or out-of-range request is a 4xx and the
server keeps serving; per-request token cap, deadline and session limits hold."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

import wasm_torch
from wasm_torch.generate import load_generator

from .conftest import MAX_CONTEXT

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]
ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def models(gpt2_gen, llama_gen, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served_gen")
    shutil.copytree(gpt2_gen.path, root / "gpt2")
    shutil.copytree(llama_gen.path, root / "llama")
    wasm_torch.compile(torch.nn.Linear(4, 2).eval(), (torch.randn(1, 4),), root / "linear",
                       options=wasm_torch.CompileOptions(threads=False, relaxed=False))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    """A real `wasm-torch serve` process."""
    port = _port()
    log = tmp_path_factory.mktemp("log") / "serve.log"
    exe = Path(sys.executable).with_name("wasm-torch")
    proc = subprocess.Popen([str(exe), "serve", str(models), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 120
    while time.monotonic() < end:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(log.read_text()[-3000:])
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def sse(url: str, body: dict) -> tuple[list[tuple[str, dict]], httpx.Headers]:
    events = []
    with httpx.stream("POST", url, json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        event = "message"
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
                event = "message"
        return events, r.headers


def test_generate_returns_pythons_tokens_and_text(server, gpt2_gen, tokenizer):
    with load_generator(gpt2_gen.path, threads=1) as gen:
        want = gen.generate([5, 17, 42], 30)
        want_text = gen.generate_text("Once upon a time", 20)
    r = httpx.post(server + "/v2/models/gpt2/generate", json={"input_ids": [5, 17, 42], "parameters": {"max_tokens": 30}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output_ids"] == want and body["finish_reason"] == "length" and body["model_name"] == "gpt2"
    assert body["text_output"] == tokenizer.decode(want)
    r = httpx.post(server + "/v2/models/gpt2/generate", json={"text_input": "Once upon a time", "id": "r1",
                                                              "parameters": {"max_tokens": 20}})  # fmt: skip
    assert r.json()["text_output"] == want_text and r.json()["id"] == "r1"
    r = httpx.post(server + "/v2/models/gpt2/versions/1/generate", json={"input_ids": [5, 17, 42], "parameters": {
        "max_tokens": 30, "stop": [want[9]]}})  # fmt: skip
    assert r.json()["output_ids"] == want[: want.index(want[9]) + 1] and r.json()["finish_reason"] == "stop"


def test_generate_stream_sends_one_event_per_token(server, llama_gen):
    with load_generator(llama_gen.path, threads=1) as gen:
        want = gen.generate([9, 8, 7], 25)
    events, headers = sse(server + "/v2/models/llama/generate_stream", {"input_ids": [9, 8, 7], "parameters": {"max_tokens": 25}})
    assert headers["content-type"].startswith("text/event-stream")
    tokens = [e for kind, e in events if kind == "message"]
    assert [e["token"] for e in tokens] == want and [e["index"] for e in tokens] == list(range(25))
    assert events[-1] == ("done", {"finish_reason": "length", "output_ids": want})


def test_sampling_parameters_are_seeded(server):
    body = {"input_ids": [1, 2, 3], "parameters": {"max_tokens": 16, "do_sample": True, "temperature": 0.9,
                                                    "top_k": 40, "top_p": 0.9, "repetition_penalty": 1.1, "seed": 5}}  # fmt: skip
    a = httpx.post(server + "/v2/models/gpt2/generate", json=body).json()["output_ids"]
    b = httpx.post(server + "/v2/models/gpt2/generate", json=body).json()["output_ids"]
    assert a == b and len(a) == 16


BAD = [
    ({"input_ids": [1, 10**6]}, 400, "outside the vocabulary"),
    ({"input_ids": [-3]}, 400, "token id -3"),
    ({"input_ids": [1.0, 2.0]}, 400, "list of integers"),
    ({"input_ids": [True]}, 400, "list of integers"),
    ({"input_ids": "1 2 3"}, 400, "list of integers"),
    ({"input_ids": []}, 400, "empty"),
    ({"input_ids": list(range(MAX_CONTEXT))}, 400, "exceeds the compiled max context"),
    ({"input_ids": [1], "parameters": {"max_tokens": MAX_CONTEXT}}, 400, "exceeds the compiled max context"),
    ({"input_ids": [1], "parameters": {"max_tokens": 10**6}}, 400, "max_tokens must be an integer in [0, 256]"),
    ({"input_ids": [1], "parameters": {"max_tokens": -1}}, 400, "max_tokens"),
    ({"input_ids": [1], "parameters": {"max_tokens": "5"}}, 400, "max_tokens"),
    ({"input_ids": [1], "parameters": {"beam_width": 4}}, 400, "unknown parameters"),
    ({"input_ids": [1], "parameters": {"temperature": 0}}, 400, "temperature"),
    ({"input_ids": [1], "parameters": {"top_p": 7}}, 400, "top_p"),
    ({"input_ids": [1], "parameters": {"seed": "x"}}, 400, "seed"),
    ({"input_ids": [1], "parameters": {"stop": 5}}, 400, "stop"),
    ({"input_ids": [1], "parameters": {"stop": [10**9]}}, 400, "stop"),
    ({"input_ids": [1], "parameters": {"stop_at_eos": "yes"}}, 400, "stop_at_eos"),
    ({"input_ids": [1], "parameters": []}, 400, "parameters must be an object"),
    ({"input_ids": [1], "text_input": "a"}, 400, "exactly one"),
    ({}, 400, "exactly one"),
    ({"text_input": 5}, 400, "text_input must be a string"),
    ({"input_ids": [1], "extra": 1}, 400, "unknown keys"),
    ({"input_ids": [1], "id": 5}, 400, "id must be a string"),
    ([1, 2, 3], 400, "JSON object"),
]


@pytest.mark.parametrize("route", ["generate", "generate_stream"])
def test_bad_requests_are_4xx_and_the_server_keeps_serving(server, route):
    url = f"{server}/v2/models/gpt2/{route}"
    for body, status, match in BAD:
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == status and match in r.json()["error"], (body, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")  # refused before any stream starts
    raw = [(b"{not json", "not valid JSON"), (b'{"input_ids": [1], "parameters": {"temperature": NaN}}', "NaN"),
           (b"\xff\xfe", "UTF-8"), (b"[" * 5000 + b"]" * 5000, "nested")]  # fmt: skip
    for data, match in raw:
        r = httpx.post(url, content=data, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 400 and match in r.json()["error"], (data[:20], r.text)
    r = httpx.post(url, content=b'{"input_ids": [' + b"1," * 5_000_000 + b"1]}", timeout=60)
    assert r.status_code == 413
    assert httpx.post(f"{server}/v2/models/llama/{route}", json={"text_input": "hi"}).status_code == 400  # no tokenizer
    r = httpx.post(f"{server}/v2/models/linear/{route}", json={"input_ids": [1]})
    assert r.status_code == 400 and "not a text generator" in r.json()["error"]
    r = httpx.post(f"{server}/v2/models/nope/{route}", json={"input_ids": [1]})
    assert r.status_code == 404
    r = httpx.post(f"{server}/v2/models/gpt2/generate", json={"input_ids": [5, 17, 42], "parameters": {"max_tokens": 3}})
    assert r.status_code == 200 and len(r.json()["output_ids"]) == 3


def test_stateless_infer_on_a_generator_is_a_prefill(server, gpt2_gen):
    """/infer serves a generator as a pure function: next-token logits of its own tokens, nothing else."""
    with load_generator(gpt2_gen.path, threads=1) as gen:
        want = gen.prefill([3, 4, 5])
    body = {"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [3, 4, 5]},
                       {"name": "past", "shape": [1], "datatype": "INT64", "data": [0]}]}  # fmt: skip
    r = httpx.post(server + "/v2/models/gpt2/infer", json=body)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"][0]["data"], want, rtol=1e-6, atol=1e-6)


def test_a_client_that_leaves_mid_stream_frees_its_session(server):
    with httpx.stream("POST", server + "/v2/models/llama/generate_stream",
                      json={"input_ids": [1], "parameters": {"max_tokens": 80}}, timeout=60) as r:  # fmt: skip
        for n, _ in enumerate(r.iter_lines()):
            if n > 2:
                break
    for _ in range(3):  # the default 2 sessions are free again (each request waits <= 5 s for one)
        r = httpx.post(server + "/v2/models/llama/generate", json={"input_ids": [1], "parameters": {"max_tokens": 4}}, timeout=30)
        assert r.status_code == 200


def test_the_deadline_answers_the_tokens_so_far(models):
    """An in-process app whose clock moves 50 ms per reading: the 0.3 s budget ends the generation early."""
    import uvicorn

    from wasm_torch.serve.app import create_app
    from wasm_torch.serve.generation import GenerationSettings
    from wasm_torch.serve.settings import ServeSettings

    ticks = iter(range(10**9))
    clock = lambda: next(ticks) * 0.05  # noqa: E731
    gs = GenerationSettings(deadline_s=0.3, max_new_tokens=90)
    app = create_app({"llama": models / "llama"}, ServeSettings(replicas=1, healing=False), clock=clock, generation=gs)
    port = _port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{port}/v2/models/llama"
    try:
        for _ in range(400):
            if srv.started:
                break
            time.sleep(0.05)
        for route in ("generate", "generate_stream"):
            r = httpx.post(f"{url}/{route}", json={"input_ids": [1], "parameters": {"max_tokens": 90}}, timeout=30)
            assert r.status_code == 200
            last = r.json() if route == "generate" else json.loads(r.text.strip().split("data: ")[-1])
            assert last["finish_reason"] == "time_limit" and 0 < len(last["output_ids"]) < 90, last
    finally:
        srv.should_exit = True
        t.join(timeout=20)


def test_busy_sessions_are_a_503_with_retry_after(llama_gen):
    import asyncio

    from wasm_torch.serve.errors import Unavailable
    from wasm_torch.serve.generation import GenerationSettings, GeneratorPool, _factory
    from wasm_torch.serve.handler import error_response
    from wasm_torch.serve.settings import ServeSettings

    pool = GeneratorPool("llama", llama_gen.path, _factory(llama_gen.path, ServeSettings()),
                         GenerationSettings(sessions=1, queue_timeout_s=0.05))  # fmt: skip

    async def scenario() -> None:
        held = await pool.acquire()
        with pytest.raises(Unavailable, match="sessions are busy") as e:
            await pool.acquire()
        r = error_response(e.value)
        assert r.status_code == 503 and "retry-after" in r.headers
        pool.release(held, healthy=True)
        again = await pool.acquire()
        assert again is held and again.length == 0  # reused, reset
        pool.release(again, healthy=False)  # a broken instance is dropped, a new one made next time
        fresh = await pool.acquire()
        assert fresh is not held
        pool.release(fresh, healthy=True)

    asyncio.run(scenario())
    pool.close()
