"""The infer path of the app, and what every route shares: admission (auth, rate limit), reading a
bounded body, JSON responses and errors.

    admit -> model lookup -> read body (declared and streamed size, client gone, read timeout)
          -> decode + validate + anomaly score      (a worker thread when the body is big)
          -> pool.ainfer                            (worker threads of the pool)
          -> response size bound -> encode           (a worker thread when the answer is big)
          -> the anomaly baseline learns the request (only now: it was accepted)

Heavy per-request work (decoding or encoding more than `offload_bytes`) runs in a small thread
pool (`offload_workers` at once), so the event loop keeps answering health checks and small
requests meanwhile, and at most that many big bodies are being decoded at any moment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import numpy as np
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from wasm_torch.serve.audit import AuditLog
from wasm_torch.serve.cache import input_digest
from wasm_torch.serve.clock import Clock
from wasm_torch.serve.errors import (
    AnomalousInput,
    ClientGone,
    PayloadTooLarge,
    RateLimited,
    ReadTimeout,
    RequestError,
    Unavailable,
    classify,
    public_message,
)
from wasm_torch.serve.guard import AnomalyScorer, Observation, RateLimiter, check_bearer
from wasm_torch.serve.healing import Orchestrator
from wasm_torch.serve.metrics import Metrics
from wasm_torch.serve.protocol import InferRequest, check_response_size, decode_request, encode_response
from wasm_torch.serve.seams import ModelRegistry, ServedPool
from wasm_torch.serve.settings import ServeSettings

log = logging.getLogger("wasm_torch.serve")
MODEL_VERSION = "1"
READ_TIMEOUT_FLAG = "wasm_torch.read_timeout"  # set in the ASGI scope by serve/http.py
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also accepts "²"
T = TypeVar("T")
# Client-fault kinds that are the request's own sandbox budget, not a guard rejection.
_BUDGET_KINDS = frozenset({"deadline_exceeded", "fuel_exhausted", "memory_limit", "limit"})


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    return Response(text, status_code=status, media_type="application/json", headers=headers)


def error_response(exc: BaseException) -> Response:
    status, _ = classify(exc)
    headers = {}
    if isinstance(exc, RateLimited | Unavailable):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status in (408, 413, 499):  # the body was not (fully) read: do not reuse the connection
        headers["Connection"] = "close"
    return json_response({"error": public_message(exc)}, status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge (declared or streamed over `limit`), ClientGone (the
    client hung up mid-body) or ReadTimeout (serve/http.py closed a body that arrived too slowly)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared.strip()):
            raise RequestError("invalid Content-Length header")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body of {int(declared)} bytes is over the {limit}-byte limit")
    if "inference-header-content-length" in request.headers:
        raise RequestError("the binary tensor extension is not supported; send JSON data")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        if request.scope.get(READ_TIMEOUT_FLAG):
            raise ReadTimeout("the request body did not arrive within the read timeout") from None
        raise ClientGone(f"the client closed the connection after {size} bytes of the body") from None
    return b"".join(chunks)


class Server:
    """State shared by the routes of one app."""

    def __init__(
        self,
        registry: ModelRegistry,
        settings: ServeSettings,
        metrics: Metrics,
        clock: Clock,
        healer: Orchestrator | None = None,
    ) -> None:
        self.registry, self.settings, self.metrics, self.clock = registry, settings, metrics, clock
        self.healer = healer  # in-process pools heal here; Ray's model replicas heal themselves
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, clock)
        self.scorers = {
            name: AnomalyScorer(settings.anomaly_warmup, client_share=settings.anomaly_client_share)
            for name in registry.pools
        }
        self.audit = AuditLog(settings.audit_log) if settings.audit_log else None
        self._offload: tuple[object, anyio.CapacityLimiter] | None = None  # (event loop, limiter)

    # --- admission ---------------------------------------------------------------------------
    def client_id(self, request: Request) -> str:
        if self.settings.auth_tokens:
            return check_bearer(request.headers.get("authorization"), self.settings.auth_tokens)
        return "ip:" + (request.client.host if request.client else "unknown")

    def admit(self, request: Request) -> str:
        """Auth, then the client's rate limit. Returns the client id."""
        client = self.client_id(request)
        self.limiter.check(client)
        return client

    def admit_unless(self, request: Request, open_: bool) -> None:
        """For /metrics and the docs: open to anyone when `open_` (or auth is off), else `admit`."""
        if not open_ and self.settings.auth_tokens:
            self.admit(request)

    async def offload(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` here when the payload is small, else in a worker thread (at most
        `offload_workers` at a time), so the event loop is never blocked by one big request."""
        if size <= self.settings.offload_bytes:
            return fn(*args)
        loop = asyncio.get_running_loop()
        if self._offload is None or self._offload[0] is not loop:  # a limiter belongs to one loop
            self._offload = (loop, anyio.CapacityLimiter(self.settings.offload_workers))
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._offload[1])

    # --- infer --------------------------------------------------------------------------------
    def _decode(self, body: bytes, pool: ServedPool, name: str) -> tuple[InferRequest, Observation]:
        s = self.settings
        req = decode_request(body, pool.inputs, pool.outputs, s.max_elements, s.max_json_depth)
        return req, self.scorers[name].observe(req.inputs)

    def _encode(self, name: str, req: InferRequest, results: Mapping[str, np.ndarray]) -> bytes:
        return encode_response(name, MODEL_VERSION, req.id, results, req.outputs)

    async def infer(self, request: Request, name: str) -> Response:
        t0 = time.perf_counter()
        client, model = "?", "_unknown"
        record: dict[str, Any] = {}
        try:
            client = self.admit(request)
            pool = self.registry.get(name)
            model = name
            body = await read_body(request, self.settings.max_body_bytes)
            req, obs = await self.offload(len(body), self._decode, body, pool, name)
            record["id"] = req.id
            record["anomaly"] = round(obs.score, 3)
            self.metrics.anomaly.labels(model).observe(obs.score)
            threshold = self.settings.anomaly_reject_score
            if threshold is not None and obs.score > threshold:
                raise AnomalousInput(f"input anomaly score {obs.score:.1f} is above the limit {threshold:g}")
            if self.audit:
                record["input_sha256"] = input_digest(req.inputs).hex()[:32]
            results = await pool.ainfer(req.inputs)
            bound = check_response_size(results, req.outputs, self.settings.max_response_bytes)
            payload = await self.offload(bound, self._encode, name, req, results)
            response = Response(payload, media_type="application/json")
            self.scorers[name].learn(obs, client)  # accepted: only now may it shape the baseline
        except Exception as exc:  # every exception becomes a clear JSON error
            status, kind = classify(exc)
            if kind == "internal":
                log.exception("internal error serving %r", model)
            self.metrics.errors.labels(model, kind).inc()
            if status < 500 and kind not in _BUDGET_KINDS:
                self.metrics.rejections.labels(kind).inc()
            response = error_response(exc)
            record["error"] = kind
        elapsed = time.perf_counter() - t0
        self.metrics.requests.labels(model, str(response.status_code)).inc()
        self.metrics.latency.labels(model).observe(elapsed)
        if self.audit:
            self.audit.append(
                "infer",
                client=client,
                model=model,
                status=response.status_code,
                ms=round(elapsed * 1e3, 3),
                **record,
            )
        return response
