"""The infer path of the app, and what every route shares: admission (auth, rate limit), reading a
bounded body, JSON responses and errors.

    admit -> lease the model (a reload or unload waits for it) -> read body (declared and streamed
          size, client gone, read timeout, gzip/deflate bounded) -> decode + validate + anomaly score
          (a worker thread when the body is big) -> pool.ainfer (worker threads of the pool)
          -> response size bound -> encode (a worker thread when the answer is big)
          -> the anomaly baseline learns the request (only now: it was accepted)

`Server.predict` is that path without the protocol: the REST route here and the gRPC service
(`grpc/service.py`) both call it with their own decoder, then encode the answer their way, and
`Server.failed` / `Server.finish` count and audit every request the same way whichever protocol
carried it.

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
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import numpy as np
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from wasm_torch.serve.audit import AuditLog
from wasm_torch.serve.binary import HEADER as BINARY_HEADER
from wasm_torch.serve.cache import input_digest
from wasm_torch.serve.clock import Clock
from wasm_torch.serve.errors import (
    AnomalousInput,
    ClientGone,
    ModelControlOff,
    PayloadTooLarge,
    RateLimited,
    ReadTimeout,
    RequestError,
    Unavailable,
    UnsupportedEncoding,
    classify,
    public_message,
)
from wasm_torch.serve.guard import AnomalyScorer, Observation, RateLimiter, check_bearer
from wasm_torch.serve.healing import Orchestrator
from wasm_torch.serve.metrics import Metrics
from wasm_torch.serve.protocol import (
    InferRequest,
    check_response_size,
    decode_request,
    encode_binary_response,
    encode_response,
)
from wasm_torch.serve.registry import NAME_RE
from wasm_torch.serve.seams import ModelRegistry, ServedPool
from wasm_torch.serve.settings import ServeSettings

log = logging.getLogger("wasm_torch.serve")
MODEL_VERSION = "1"
SERVER_NAME = "wasm-torch"
# What `GET /v2` (and gRPC ServerMetadata) lists: the binary tensor data extension, the model
# repository (index, load, unload), Prometheus metrics and per-model statistics.
EXTENSIONS = ("binary_tensor_data", "model_repository", "metrics", "statistics")
READ_TIMEOUT_FLAG = "wasm_torch.read_timeout"  # set in the ASGI scope by serve/http.py
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also accepts "²"
T = TypeVar("T")
Decoder = Callable[[ServedPool], InferRequest]  # the protocol's request -> validated numpy inputs
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
    if status in (408, 413, 415, 499):  # the body was not (fully) read: do not reuse the connection
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
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding[:40]!r} is not supported; send identity, gzip or deflate"
        )
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
    body = b"".join(chunks)
    return body if encoding == "identity" else inflate(body, encoding, limit)


CONTENT_ENCODINGS = ("identity", "gzip", "deflate")


def server_version() -> str:
    try:
        from importlib.metadata import version

        return version("wasm-torch")
    except Exception:  # running from a source tree
        return "0.1.0"


def check_repository_parameters(action: str, params: Any) -> None:
    """Load takes no parameters (Triton's `config` override and `file:` uploads are refused: the
    artifact folder in the repository is the only source); unload takes `unload_dependents`
    (a boolean; a wasm-torch model has no dependents). REST and gRPC alike."""
    if params is None:
        return
    if not isinstance(params, dict):
        raise RequestError("parameters must be an object")
    allowed = {"unload_dependents"} if action == "unload" else set()
    extra = sorted(str(k)[:40] for k in set(params) - allowed)
    if extra:
        raise RequestError(
            f"{action} does not take parameter(s) {extra[:5]}: config overrides and uploaded model files are "
            "not supported; put the artifact folder in the repository"
        )
    if not isinstance(params.get("unload_dependents", False), bool):
        raise RequestError("parameters.unload_dependents must be a boolean")


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate (zlib) body, decompressed to at most `limit` bytes (a zip bomb is a 413
    after `limit` bytes of output, not an out-of-memory)."""
    z = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = z.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(f"the body is not valid {encoding} data: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the {encoding} body decompresses to more than the {limit}-byte limit")
    if not z.eof or z.unused_data:
        raise RequestError(f"the {encoding} body is truncated or has bytes after its end")
    return out


@dataclass
class Exchange:
    """One request's bookkeeping, whichever protocol carried it (metrics and the audit record)."""

    protocol: str  # "http" or "grpc"
    t0: float = field(default_factory=time.perf_counter)
    client: str = "?"
    model: str = "_unknown"
    record: dict[str, Any] = field(default_factory=dict)


class Server:
    """State shared by the routes of one app (and by its gRPC service)."""

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
        self.scorers: dict[str, AnomalyScorer] = {}
        for name in registry.pools:
            self.scorer(name)
        self.audit = AuditLog(settings.audit_log) if settings.audit_log else None
        self._offload: tuple[object, anyio.CapacityLimiter] | None = None  # (event loop, limiter)

    def scorer(self, name: str) -> AnomalyScorer:
        """The anomaly baseline of a model (made when the model is first served or loaded)."""
        scorer = self.scorers.get(name)
        if scorer is None:
            s = self.settings
            scorer = self.scorers[name] = AnomalyScorer(s.anomaly_warmup, client_share=s.anomaly_client_share)
        return scorer

    def limits(self, name: str) -> ServeSettings:
        """The settings that apply to model `name` (its per-model overrides, if any)."""
        return self.settings.for_model(name)

    # --- admission ---------------------------------------------------------------------------
    def client_id(self, request: Request) -> str:
        if self.settings.auth_tokens:
            return check_bearer(request.headers.get("authorization"), self.settings.auth_tokens)
        return "ip:" + (request.client.host if request.client else "unknown")

    def admit(self, request: Request) -> str:
        """Auth, then the client's rate limit. Returns the client id."""
        return self.admit_client(self.client_id(request))

    def admit_client(self, client: str) -> str:
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

    # --- the protocol-free infer path ---------------------------------------------------------
    def _observe(self, decode: Decoder, pool: ServedPool, name: str) -> tuple[InferRequest, Observation]:
        req = decode(pool)
        return req, self.scorer(name).observe(req.inputs)

    async def predict(
        self, ex: Exchange, pool: ServedPool, decode: Decoder, size: int
    ) -> tuple[InferRequest, Observation, Mapping[str, np.ndarray]]:
        """Decode (in a worker thread when `size` is big), score, run. The caller encodes the
        answer, then calls `accepted`; on any exception, `failed`."""
        name = ex.model
        req, obs = await self.offload(size, self._observe, decode, pool, name)
        ex.record["id"] = req.id
        ex.record["anomaly"] = round(obs.score, 3)
        self.metrics.anomaly.labels(name).observe(obs.score)
        threshold = self.settings.anomaly_reject_score
        if threshold is not None and obs.score > threshold:
            raise AnomalousInput(f"input anomaly score {obs.score:.1f} is above the limit {threshold:g}")
        if self.audit:
            ex.record["input_sha256"] = input_digest(req.inputs).hex()[:32]
        results = await pool.ainfer(req.inputs)
        return req, obs, results

    def accepted(self, ex: Exchange, obs: Observation) -> None:
        self.scorer(ex.model).learn(obs, ex.client)  # accepted: only now may it shape the baseline

    def failed(self, ex: Exchange, exc: BaseException) -> tuple[int, str]:
        """Count a failed request (every exception becomes a clear error): (status, kind)."""
        status, kind = classify(exc)
        if kind == "internal":
            log.exception("internal error serving %r", ex.model, exc_info=exc)
        self.metrics.errors.labels(ex.model, kind).inc()
        if status < 500 and kind not in _BUDGET_KINDS:
            self.metrics.rejections.labels(kind).inc()
        ex.record["error"] = kind
        return status, kind

    def finish(self, ex: Exchange, status: int) -> None:
        elapsed = time.perf_counter() - ex.t0
        self.metrics.requests.labels(ex.model, str(status), ex.protocol).inc()
        self.metrics.latency.labels(ex.model).observe(elapsed)
        if self.audit:
            self.audit.append(
                "infer",
                client=ex.client,
                model=ex.model,
                protocol=ex.protocol,
                status=status,
                ms=round(elapsed * 1e3, 3),
                **ex.record,
            )

    # --- the model repository (REST and gRPC) ---------------------------------------------------
    async def repository_action(self, client: str, name: str, action: str) -> str:
        """Load/reload or unload `name` (in a worker thread: loading compiles the module)."""
        if self.settings.model_control == "none":
            raise ModelControlOff(
                f"model control is off: start the server with --model-control explicit (or poll) to {action}"
            )
        if action == "load":
            outcome = await anyio.to_thread.run_sync(self.registry.load, name)
            self.scorer(name)
            return outcome
        await anyio.to_thread.run_sync(self.registry.unload, name)
        return "unloaded"

    def audit_repository(self, client: str, action: str, name: str, status: int, outcome: str) -> None:
        if self.audit:
            shown = name if NAME_RE.match(name) else "_invalid"
            self.audit.append(action, client=client, model=shown, status=status, outcome=outcome)

    # --- REST ----------------------------------------------------------------------------------
    def _encode(self, name: str, req: InferRequest, results: Mapping[str, np.ndarray]) -> Response:
        if req.binary_outputs:
            body, header_length = encode_binary_response(
                name, MODEL_VERSION, req.id, results, req.outputs, req.binary_outputs
            )
            headers = {"Inference-Header-Content-Length": str(header_length)}
            return Response(body, media_type="application/octet-stream", headers=headers)
        body = encode_response(name, MODEL_VERSION, req.id, results, req.outputs)
        return Response(body, media_type="application/json")

    async def infer(self, request: Request, name: str) -> Response:
        ex = Exchange("http")
        try:
            ex.client = self.admit(request)
            with self.registry.lease(name) as pool:  # a reload or unload waits for this request
                ex.model = name
                limits = self.limits(name)
                body = await read_body(request, limits.max_body_bytes)
                header_length = request.headers.get(BINARY_HEADER)

                def decode(p: ServedPool) -> InferRequest:
                    return decode_request(
                        body, p.inputs, p.outputs, limits.max_elements, limits.max_json_depth, header_length
                    )

                req, obs, results = await self.predict(ex, pool, decode, len(body))
                bound = check_response_size(results, req.outputs, limits.max_response_bytes, req.binary_outputs)
                response = await self.offload(bound, self._encode, name, req, results)
                self.accepted(ex, obs)
        except Exception as exc:  # every exception becomes a clear JSON error
            self.failed(ex, exc)
            response = error_response(exc)
        self.finish(ex, response.status_code)
        return response
