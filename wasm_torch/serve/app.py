"""The FastAPI app: KServe v2 REST, Prometheus metrics, and the guard in front of every model.

    app = create_app("out/")                       # every artifact folder under out/
    app = create_app({"mlp": "out/mlp"}, ServeSettings(replicas=2, cache_size=1024))

Order of checks on /infer (cheapest first, all before compute): bearer auth, rate limit, model
lookup, declared and streamed body size, strict JSON (no NaN/Infinity), v2 schema + model spec
(names, datatypes, ranks, fixed dims, consistent symbolic dims, element counts, finiteness,
integer ranges), input anomaly score. Every error is `{"error": "..."}` with the status from
`errors.STATUS_TABLE`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wasm_torch.serve import schemas
from wasm_torch.serve.audit import AuditLog
from wasm_torch.serve.cache import input_digest
from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.errors import (
    AnomalousInput,
    PayloadTooLarge,
    RateLimited,
    RequestError,
    Unavailable,
    classify,
    public_message,
)
from wasm_torch.serve.guard import AnomalyScorer, RateLimiter, check_bearer
from wasm_torch.serve.healing import Orchestrator
from wasm_torch.serve.metrics import Metrics
from wasm_torch.serve.protocol import encode_outputs, loads_strict, parse_infer_request, tensor_metadata
from wasm_torch.serve.registry import ModelSource, Registry
from wasm_torch.serve.settings import ServeSettings

log = logging.getLogger("wasm_torch.serve")
SERVER_NAME = "wasm-torch"
MODEL_VERSION = "1"


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
    return json_response({"error": public_message(exc)}, status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError("invalid Content-Length header")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes is over the {limit}-byte limit")
    if "inference-header-content-length" in request.headers:
        raise RequestError("the binary tensor extension is not supported; send JSON data")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


class Server:
    """State shared by the routes of one app."""

    def __init__(self, registry: Registry, settings: ServeSettings, metrics: Metrics, clock: Clock):
        self.registry, self.settings, self.metrics, self.clock = registry, settings, metrics, clock
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, clock)
        self.scorers = {name: AnomalyScorer(settings.anomaly_warmup) for name in registry.pools}
        self.audit = AuditLog(settings.audit_log) if settings.audit_log else None
        self.healer = Orchestrator(list(registry.pools.values()), metrics) if settings.healing else None

    def client_id(self, request: Request) -> str:
        if self.settings.auth_tokens:
            return check_bearer(request.headers.get("authorization"), self.settings.auth_tokens)
        return "ip:" + (request.client.host if request.client else "unknown")

    def admit(self, request: Request) -> str:
        client = self.client_id(request)
        self.limiter.check(client)
        return client

    async def infer(self, request: Request, name: str) -> Response:
        t0 = time.perf_counter()
        client, model, record = "?", "_unknown", {}
        try:
            client = self.admit(request)
            pool = self.registry.get(name)
            model = name
            body = await read_body(request, self.settings.max_body_bytes)
            req = parse_infer_request(
                loads_strict(body), pool.inputs, pool.outputs, self.settings.max_elements
            )
            record["id"] = req.id
            threshold = self.settings.anomaly_reject_score
            score = self.scorers[name].score(req.inputs, learn_below=threshold)
            record["anomaly"] = round(score, 3)
            self.metrics.anomaly.labels(model).observe(score)
            if threshold is not None and score > threshold:
                raise AnomalousInput(f"input anomaly score {score:.1f} is above the limit {threshold:g}")
            if self.audit:
                record["input_sha256"] = input_digest(req.inputs).hex()[:32]
            results = await pool.ainfer(req.inputs)
            body_out: dict[str, Any] = {
                "model_name": name,
                "model_version": MODEL_VERSION,
                "outputs": encode_outputs(results, req.outputs),
            }
            if req.id is not None:
                body_out["id"] = req.id
            response = json_response(body_out)
        except Exception as exc:  # every exception becomes a clear JSON error
            status, kind = classify(exc)
            if kind == "internal":
                log.exception("internal error serving %r", model)
            self.metrics.errors.labels(model, kind).inc()
            if status < 500 and kind not in ("deadline_exceeded", "fuel_exhausted", "memory_limit"):
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


def create_app(
    models: str | os.PathLike[str] | Mapping[str, ModelSource],
    settings: ServeSettings | None = None,
    *,
    clock: Clock = monotonic,
    seed: int | None = None,
) -> FastAPI:
    settings = settings or ServeSettings()
    metrics = Metrics()
    return build_app(Registry(models, settings, metrics, clock, seed), settings, metrics, clock=clock)


def build_app(
    registry: Registry, settings: ServeSettings, metrics: Metrics, *, clock: Clock = monotonic
) -> FastAPI:
    """The routes over a registry: `create_app` passes its in-process `Registry`; the Ray Serve
    ingress (`ray/ingress.py`) passes one whose pools forward to Ray deployments."""
    server = Server(registry, settings, metrics, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if server.healer is not None:
            server.healer.start(settings.healing_interval_s)
        try:
            yield
        finally:
            if server.healer is not None:
                server.healer.stop()
            server.registry.close()

    app = FastAPI(
        title="wasm-torch inference server",
        version=MODEL_VERSION,
        lifespan=lifespan,
        description="KServe v2 (Open Inference Protocol) REST over sandboxed WebAssembly models.",
    )
    app.state.server = server

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return json_response({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return json_response({"error": "invalid request parameters"}, 400)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    @app.get("/v2", response_model=schemas.ServerMetadata, tags=["v2"])
    async def server_metadata() -> Response:
        return json_response({"name": SERVER_NAME, "version": _version(), "extensions": []})

    @app.get("/v2/health/live", response_model=schemas.Live, tags=["v2"])
    async def live() -> Response:
        return json_response({"live": True})

    @app.get(
        "/v2/health/ready",
        response_model=schemas.Ready,
        tags=["v2"],
        responses={503: {"model": schemas.Ready}},
    )
    async def ready() -> Response:
        ok = server.registry.ready
        refused = sorted(getattr(server.registry, "refused", {}))  # D9: artifacts that failed integrity
        return json_response({"ready": ok, **({"refused": refused} if refused else {})}, 200 if ok else 503)

    async def model_metadata(request: Request, name: str) -> Response:
        try:
            server.admit(request)
            pool = server.registry.get(name)
        except Exception as exc:
            return error_response(exc)
        return json_response(
            {
                "name": name,
                "versions": [MODEL_VERSION],
                "platform": "wasm-torch_wasm32",
                "inputs": [tensor_metadata(s) for s in pool.inputs],
                "outputs": [tensor_metadata(s) for s in pool.outputs],
            }
        )

    async def model_ready(request: Request, name: str) -> Response:
        try:
            server.admit(request)
            ok = server.registry.get(name).ready
        except Exception as exc:
            return error_response(exc)
        return json_response({"name": name, "ready": ok}, 200 if ok else 503)

    async def infer(request: Request, name: str) -> Response:
        return await server.infer(request, name)

    async def model_stats(request: Request, name: str) -> Response:
        try:
            server.admit(request)
            return json_response({"name": name, **server.registry.get(name).describe()})
        except Exception as exc:
            return error_response(exc)

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/" + MODEL_VERSION):
        app.add_api_route(
            prefix,
            model_metadata,
            methods=["GET"],
            tags=["v2"],
            response_model=schemas.ModelMetadata,
            responses=schemas.ERROR_RESPONSES,
        )
        app.add_api_route(
            prefix + "/ready",
            model_ready,
            methods=["GET"],
            tags=["v2"],
            response_model=schemas.ModelReady,
            responses=schemas.ERROR_RESPONSES,
        )
        app.add_api_route(
            prefix + "/infer",
            infer,
            methods=["POST"],
            tags=["v2"],
            response_model=schemas.InferenceResponse,
            responses=schemas.ERROR_RESPONSES,
        )
    app.add_api_route("/v2/models/{name}/stats", model_stats, methods=["GET"], tags=["extensions"])

    @app.post("/v2/repository/index", tags=["extensions"])
    async def repository_index(request: Request) -> Response:
        """KServe model-repository index: every model with its state; refused ones with the reason."""
        try:
            server.admit(request)
            raw = await read_body(request, 4096)
            doc = loads_strict(raw) if raw.strip() else {}
            only_ready = doc.get("ready", False) if isinstance(doc, dict) else None
            if not isinstance(only_ready, bool) or set(doc) - {"ready"}:
                raise RequestError('the index request body is {} or {"ready": true|false}')
        except Exception as exc:
            return error_response(exc)
        states = {n: ("READY" if p.ready else "UNAVAILABLE", "") for n, p in server.registry.pools.items()}
        states.update({n: ("UNAVAILABLE", why) for n, why in getattr(server.registry, "refused", {}).items()})
        rows = [
            {"name": n, "version": MODEL_VERSION, "state": state, "reason": why}
            for n, (state, why) in sorted(states.items())
            if state == "READY" or not only_ready
        ]
        return json_response(rows)

    @app.get("/metrics", tags=["metrics"], response_class=Response)
    async def prometheus() -> Response:
        for pool in server.registry.pools.values():
            pool.refresh_gauges()
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = schemas.inject_infer_schema(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("wasm-torch")
    except Exception:  # running from a source tree
        return "0.1.0"
