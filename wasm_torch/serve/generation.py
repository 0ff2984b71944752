"""Text generation over HTTP for generator artifacts (wasm_torch/generate): JSON and server-sent events.

    POST /v2/models/{name}/generate          -> {"model_name", "model_version", "output_ids": [...],
                                                 "text_output"?: "...", "finish_reason": "stop"|"length"|"time_limit"}
    POST /v2/models/{name}/generate_stream   -> text/event-stream: one `data: {"index", "token", "text_output"?}`
                                                 event per token as it is chosen, then `event: done` with
                                                 {"finish_reason", "output_ids", "text_output"?}; a failure after
                                                 the stream started is `event: error` with {"error"}

    body: {"input_ids": [464, 2068]} or {"text_input": "Once upon a time"} (needs the artifact's tokenizer),
          "parameters": {"max_tokens": 64, "do_sample": false, "temperature", "top_k", "top_p",
                         "repetition_penalty", "seed", "stop": [ids], "stop_at_eos": true}   (all optional)

The routes follow the Triton / KServe "generate" extension. Every request is admitted like /infer
(bearer token, rate limit), its body read within the model's byte limit and parsed strictly (no
NaN, bounded depth, unknown keys refused by name); token ids outside the vocabulary, an empty
prompt, `max_tokens` above `GenerationSettings.max_new_tokens`, and a prompt plus max_tokens that
exceeds the compiled max context are 400s before any compute. A request runs on one of the model's
`sessions` generator instances (each one wasm instance holding one KV cache, loaded through the
registry's verifying factory with the model's sandbox limits); when all are busy it waits up to
`queue_timeout_s`, then 503 + Retry-After. `deadline_s` bounds the whole generation: when it passes,
the tokens so far are answered with finish_reason "time_limit" (every call is also under the
model's per-call deadline). Each step runs in a worker thread, so the event loop keeps serving;
a client that disconnects mid-stream stops its generation after the current step.

The KServe /infer route (HTTP and gRPC) still serves a generator as a plain model: its pool loads it
without `stateful=True`, so the runtime zeroes the KV cache before every call (runtime/module.py)
and a call returns the next-token logits of its own tokens only — never anything another request
left in the cache. The generate routes load their own instances with `stateful=True`.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from wasm_torch.artifact import read_manifest
from wasm_torch.errors import ArtifactError, ExecutionError
from wasm_torch.generate.generator import Generator, token_ids
from wasm_torch.generate.sampling import Sampling
from wasm_torch.generate.tokenizer import TextStream
from wasm_torch.serve.errors import RequestError, Unavailable, client_fault, public_message
from wasm_torch.serve.handler import MODEL_VERSION, Exchange, error_response, json_response, read_body
from wasm_torch.serve.protocol import loads_strict
from wasm_torch.serve.registry import Registry, integrity_options
from wasm_torch.serve.settings import ServeSettings

BODY_KEYS = {"input_ids", "text_input", "parameters", "id"}
PARAMS = {"max_tokens", "stop", "stop_at_eos"} | set(Sampling.__dataclass_fields__)
MAX_STOP_IDS = 64


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256  # the most tokens one request may ask for
    default_new_tokens: int = 64  # when the request does not say
    deadline_s: float = 60.0  # wall-clock budget of one whole generation
    sessions: int = 2  # concurrent generations per model: one wasm instance (and KV cache) each
    queue_timeout_s: float = 5.0  # how long a request waits for a free session before a 503

    def __post_init__(self) -> None:
        for f in ("max_new_tokens", "default_new_tokens", "sessions"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GenerationSettings.{f}={v!r}: expected an integer >= 1")
        for f in ("deadline_s", "queue_timeout_s"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"GenerationSettings.{f}={v!r}: expected a number > 0")


@dataclass(frozen=True)
class GenerateRequest:
    prompt: list[int]
    max_tokens: int
    sampling: Sampling
    stop: tuple[int, ...]
    stop_at_eos: bool
    id: str | None


def parse_request(doc: Any, gen: Generator, settings: GenerationSettings) -> GenerateRequest:
    """A validated request, or RequestError / InputError naming what is wrong (module docstring)."""
    if not isinstance(doc, dict):
        raise RequestError("the generate request body must be a JSON object")
    unknown = sorted(set(doc) - BODY_KEYS)
    if unknown:
        raise RequestError(f"unknown keys {[k[:40] for k in unknown[:8]]}; expected {sorted(BODY_KEYS)}")
    if ("input_ids" in doc) == ("text_input" in doc):
        raise RequestError("give exactly one of input_ids (token ids) and text_input (text)")
    rid = doc.get("id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > 256):
        raise RequestError("id must be a string of at most 256 characters")
    if "text_input" in doc:
        if not isinstance(doc["text_input"], str):
            raise RequestError("text_input must be a string")
        if gen.tokenizer is None:
            raise RequestError(f"model {gen.name!r} has no tokenizer: send input_ids instead of text_input")
        prompt = gen.tokenizer.encode(doc["text_input"])
    else:
        if not isinstance(doc["input_ids"], list) or not all(
            type(x) is int for x in doc["input_ids"]
        ):  # JSON integers only: no floats, bools or strings
            raise RequestError("input_ids must be a list of integers")
        prompt = doc["input_ids"]
    prompt = token_ids(prompt, gen.vocab_size, "input_ids")
    if not prompt:
        raise RequestError("the prompt is empty: give at least one token")
    params = doc.get("parameters", {})
    if not isinstance(params, dict):
        raise RequestError("parameters must be an object")
    bad = sorted(set(params) - PARAMS)
    if bad:
        raise RequestError(f"unknown parameters {[k[:40] for k in bad[:8]]}; known: {sorted(PARAMS)}")
    max_tokens = params.get("max_tokens", settings.default_new_tokens)
    if type(max_tokens) is not int or not 0 <= max_tokens <= settings.max_new_tokens:
        raise RequestError(f"max_tokens must be an integer in [0, {settings.max_new_tokens}] (this server's cap)")
    stop = params.get("stop", [])
    if not isinstance(stop, list) or len(stop) > MAX_STOP_IDS or not all(type(x) is int for x in stop):
        raise RequestError(f"stop must be a list of at most {MAX_STOP_IDS} token ids")
    stop_at_eos = params.get("stop_at_eos", True)
    if not isinstance(stop_at_eos, bool):
        raise RequestError("stop_at_eos must be true or false")
    sampling = Sampling.from_json({k: v for k, v in params.items() if k in Sampling.__dataclass_fields__})
    return GenerateRequest(prompt, max_tokens, sampling, tuple(token_ids(stop, gen.vocab_size, "stop")),
                           stop_at_eos, rid)  # fmt: skip


class GeneratorPool:
    """Up to `sessions` generator instances of one model, made on demand from the registry's
    verifying factory and lent to one request at a time."""

    def __init__(self, name: str, folder: Path, factory: Any, settings: GenerationSettings):
        self.name, self.folder, self.factory, self.settings = name, folder, factory, settings
        self.free: list[Generator] = []
        self.made = 0
        self.slots = asyncio.Semaphore(settings.sessions)
        self.lock = threading.Lock()

    def _make(self) -> Generator:
        return Generator(self.folder, module=self.factory())

    async def acquire(self) -> Generator:
        try:
            await asyncio.wait_for(self.slots.acquire(), self.settings.queue_timeout_s)
        except TimeoutError:
            raise Unavailable(
                f"model {self.name!r}: all {self.settings.sessions} generation sessions are busy; retry later"
            ) from None
        with self.lock:
            gen = self.free.pop() if self.free else None
        if gen is None:
            try:
                gen = await anyio.to_thread.run_sync(self._make)
            except BaseException:
                self.slots.release()
                raise
        return gen

    def release(self, gen: Generator, healthy: bool) -> None:
        gen.reset()
        with self.lock:
            if healthy:
                self.free.append(gen)
            else:
                gen.close()
        self.slots.release()

    def close(self) -> None:
        with self.lock:
            for g in self.free:
                g.close()
            self.free.clear()


class Generation:
    """The generation routes of one app (install_generation) and the generator models it knows."""

    def __init__(self, server: Any, settings: GenerationSettings):
        self.server, self.settings = server, settings
        self._pools: dict[str, tuple[Any, GeneratorPool | None]] = {}  # name -> (registry pool, ours)
        self._lock = threading.Lock()

    def pool(self, name: str) -> GeneratorPool | None:
        """Our pool for model `name` if it is a generator artifact (None if it is a plain model);
        rebuilt when the registry swapped the model (a reload)."""
        reg = self.server.registry
        served = reg.get(name)  # 404 / 503 for unknown or refused models
        with self._lock:
            known = self._pools.get(name)
            if known is not None and known[0] is served:
                return known[1]
        source = reg.sources.get(name) if isinstance(reg, Registry) else None
        ours = None
        if isinstance(source, str | os.PathLike):  # an artifact folder (not a Python model or factory)
            folder = Path(source)
            try:
                is_gen = "generator" in read_manifest(folder).raw
            except ArtifactError:
                is_gen = False
            if is_gen:
                ours = GeneratorPool(name, folder, _factory(folder, reg.settings.for_model(name)), self.settings)
        with self._lock:
            old = self._pools.get(name)
            self._pools[name] = (served, ours)
        if old is not None and old[1] is not None and old[1] is not ours:
            old[1].close()
        return ours

    async def _start(self, request: Request, name: str, ex: Exchange) -> tuple[GeneratorPool, Generator, GenerateRequest]:
        server = self.server
        ex.client = server.admit(request)
        ours = self.pool(name)
        ex.model = name
        if ours is None:
            raise RequestError(f"model {name!r} is not a text generator: use POST /v2/models/{name}/infer")
        limits = server.limits(name)
        body = await read_body(request, limits.max_body_bytes)
        doc = loads_strict(body, limits.max_json_depth)
        gen = await ours.acquire()
        try:
            req = parse_request(doc, gen, self.settings)
            ex.record.update(route="generate", prompt_tokens=len(req.prompt), max_tokens=req.max_tokens)
            gen.stream(req.prompt, req.max_tokens, req.sampling, stop=req.stop, stop_at_eos=req.stop_at_eos)  # checks
        except BaseException:
            ours.release(gen, True)
            raise
        return ours, gen, req

    async def tokens(self, gen: Generator, req: GenerateRequest, state: dict[str, Any]) -> AsyncIterator[tuple[int, str]]:
        """(token, text piece) as each is chosen, one step per worker-thread call; sets state["finish"]."""
        it = gen.stream(req.prompt, req.max_tokens, req.sampling, stop=req.stop, stop_at_eos=req.stop_at_eos)
        text = TextStream(gen.tokenizer) if gen.tokenizer is not None else None
        end = self.server.clock() + self.settings.deadline_s
        stops = set(req.stop) | (set(gen.spec.eos_token_ids) if req.stop_at_eos else set())
        n = 0
        state["finish"] = "length"
        while True:
            if self.server.clock() > end:
                state["finish"] = "time_limit"
                break
            token = await anyio.to_thread.run_sync(next, it, None)
            if token is None:
                break
            n += 1
            if token in stops:
                state["finish"] = "stop"
            yield token, text.push(token) if text is not None else ""
        if text is not None:
            state["tail"] = text.finish()

    async def generate(self, request: Request, name: str) -> Response:
        server, ex = self.server, Exchange("http")
        healthy = True
        try:
            ours, gen, req = await self._start(request, name, ex)
            try:
                state: dict[str, Any] = {}
                ids, pieces = [], []
                async for token, piece in self.tokens(gen, req, state):
                    ids.append(token)
                    pieces.append(piece)
            except BaseException as exc:
                healthy = client_fault(exc) or not isinstance(exc, ExecutionError)
                raise
            finally:
                ours.release(gen, healthy)
            body: dict[str, Any] = {"model_name": name, "model_version": MODEL_VERSION, "output_ids": ids,
                                    "finish_reason": state.get("finish", "length")}  # fmt: skip
            if req.id is not None:
                body["id"] = req.id
            if gen.tokenizer is not None:
                body["text_output"] = "".join(pieces) + state.get("tail", "")
            ex.record["new_tokens"] = len(ids)
            response = json_response(body)
        except Exception as exc:
            server.failed(ex, exc)
            response = error_response(exc)
        server.finish(ex, response.status_code)
        return response

    async def generate_stream(self, request: Request, name: str) -> Response:
        server, ex = self.server, Exchange("http")
        try:
            ours, gen, req = await self._start(request, name, ex)
        except Exception as exc:  # before the stream starts: an ordinary JSON error
            server.failed(ex, exc)
            response = error_response(exc)
            server.finish(ex, response.status_code)
            return response

        async def events() -> AsyncIterator[bytes]:
            healthy, status, ids = True, 200, []
            state: dict[str, Any] = {}
            try:
                async for token, piece in self.tokens(gen, req, state):
                    ids.append(token)
                    event: dict[str, Any] = {"index": len(ids) - 1, "token": token}
                    if gen.tokenizer is not None:
                        event["text_output"] = piece
                    yield _sse(event)
                done: dict[str, Any] = {"finish_reason": state.get("finish", "length"), "output_ids": ids}
                if gen.tokenizer is not None:
                    done["text_output"] = gen.tokenizer.decode(ids)
                    if state.get("tail"):
                        done["tail"] = state["tail"]
                if req.id is not None:
                    done["id"] = req.id
                ex.record["new_tokens"] = len(ids)
                yield _sse(done, "done")
            except Exception as exc:
                healthy = client_fault(exc) or not isinstance(exc, ExecutionError)
                status, _ = server.failed(ex, exc)
                yield _sse({"error": public_message(exc)}, "error")
            finally:
                ours.release(gen, healthy)
                server.finish(ex, status)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip

    def close(self) -> None:
        with self._lock:
            for _, ours in self._pools.values():
                if ours is not None:
                    ours.close()
            self._pools.clear()


def _factory(folder: Path, settings: ServeSettings) -> Any:
    """Like the registry's path_factory (signatures, hashes, keyring, the model's sandbox limits),
    but stateful: the KV cache survives between the calls of one generation."""
    import wasm_torch

    integrity = integrity_options(settings)
    return lambda: wasm_torch.load(str(folder), threads=settings.threads, memory_limit=settings.memory_limit,
                                   deadline=settings.deadline_s, fuel=settings.fuel, stateful=True,
                                   **integrity)  # fmt: skip


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n\n").encode()


def install_generation(app: FastAPI, server: Any, settings: GenerationSettings | None = None) -> Generation:
    """Add the generate routes to `app` (build_app calls this); returns the Generation object."""
    gen = Generation(server, settings or GenerationSettings())
    app.state.generation = gen
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/" + MODEL_VERSION):
        app.add_api_route(prefix + "/generate", gen.generate, methods=["POST"], tags=["generate"])
        app.add_api_route(prefix + "/generate_stream", gen.generate_stream, methods=["POST"], tags=["generate"])
    return gen


__all__ = ["GenerationSettings", "install_generation", "parse_request"]
