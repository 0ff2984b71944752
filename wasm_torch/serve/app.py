"""The FastAPI app: KServe v2 REST, Prometheus metrics, and the guard in front of every model.

    app = create_app("out/")                       # every artifact folder under out/
    app = create_app({"mlp": "out/mlp"}, ServeSettings(replicas=2, cache_size=1024))

Order of checks on /infer (cheapest first, all before compute): bearer auth, rate limit, model
lookup, declared and streamed body size, strict JSON (no NaN/Infinity, bounded depth), v2 schema +
model spec (names, datatypes, ranks, fixed dims, consistent symbolic dims, element counts,
finiteness, integer ranges, requested outputs), input anomaly score; after compute, the answer's
size bound. Every error is `{"error": "..."}` with the status from `errors.STATUS_TABLE`; the infer
path itself is `handler.py`.

With bearer tokens set, every route needs one except the health probes and `/v2`; `/metrics`
and the API docs (`/docs`, `/openapi.json`) too, unless `open_metrics` / `open_docs` open them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wasm_torch.serve import schemas
from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.errors import RequestError, classify
from wasm_torch.serve.generation import GenerationSettings, install_generation
from wasm_torch.serve.handler import (
    EXTENSIONS,
    MODEL_VERSION,
    SERVER_NAME,
    Server,
    check_repository_parameters,
    error_response,
    json_response,
    read_body,
    server_version,
)
from wasm_torch.serve.healing import Orchestrator
from wasm_torch.serve.learning import start_learning
from wasm_torch.serve.metrics import Metrics, merge_expositions
from wasm_torch.serve.protocol import loads_strict, tensor_metadata
from wasm_torch.serve.registry import ModelSource, Registry
from wasm_torch.serve.repository import RepositoryWatcher
from wasm_torch.serve.seams import ModelRegistry
from wasm_torch.serve.settings import ServeSettings, SettingsError

__all__ = ["EXTENSIONS", "MODEL_VERSION", "SERVER_NAME", "Server", "build_app", "create_app"]


def create_app(
    models: str | os.PathLike[str] | Mapping[str, ModelSource],
    settings: ServeSettings | None = None,
    *,
    clock: Clock = monotonic,
    seed: int | None = None,
    generation: GenerationSettings | None = None,
) -> FastAPI:
    settings = settings or ServeSettings()
    metrics = Metrics()
    registry = Registry(models, settings, metrics, clock, seed)
    healer = Orchestrator(list(registry.pools.values()), metrics) if settings.healing else None
    if healer is not None:
        registry.on_swap = healer.follow  # a reloaded model's new pool is healed, the old one forgotten
    watcher = None
    if settings.model_control == "poll":
        if registry.root is None:
            registry.close()
            raise SettingsError("model_control='poll' needs a repository folder, not a dict of models")
        watcher = RepositoryWatcher(registry, settings.repository_poll_s)
    return build_app(registry, settings, metrics, clock=clock, healer=healer, watcher=watcher, generation=generation)


def build_app(
    registry: ModelRegistry,
    settings: ServeSettings,
    metrics: Metrics,
    *,
    clock: Clock = monotonic,
    healer: Orchestrator | None = None,
    watcher: RepositoryWatcher | None = None,
    generation: GenerationSettings | None = None,
) -> FastAPI:
    """The routes over a registry: `create_app` passes its in-process `Registry` (and the healer
    of its pools, and the repository watcher in poll mode); the Ray Serve ingress
    (`ray/ingress.py`) passes one whose pools forward to Ray deployments, which heal themselves.
    With `settings.grpc_port`, the KServe v2 gRPC service (`grpc/service.py`) runs on that port
    in the same event loop, over the same `Server`: pools, guard, auth, limits, metrics, audit."""
    server = Server(registry, settings, metrics, clock, healer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        grpc_server = None
        if settings.grpc_port is not None:
            from wasm_torch.serve.grpc.service import start_grpc  # grpcio only when gRPC is on

            grpc_server = await start_grpc(server, settings.grpc_host, settings.grpc_port)
        if server.healer is not None:
            server.healer.start(settings.healing_interval_s)
        if watcher is not None:
            watcher.start()
        learning = start_learning(server, settings)  # serve/learning.py: None unless settings.learn_memory
        try:
            yield
        finally:
            if learning is not None:
                learning.stop()
            if watcher is not None:
                watcher.stop()
            if grpc_server is not None:
                await grpc_server.stop(grace=2.0)
            if server.healer is not None:
                server.healer.stop()
            server.registry.close()
            generate.close()

    app = FastAPI(
        title="wasm-torch inference server",
        version=MODEL_VERSION,
        lifespan=lifespan,
        description="KServe v2 (Open Inference Protocol) REST over sandboxed WebAssembly models.",
        docs_url=None,  # served below, behind the token unless open_docs
        redoc_url=None,
        openapi_url=None,
    )
    app.state.server = server
    generate = install_generation(app, server, generation)  # text generators: serve/generation.py

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
        return json_response({"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)})

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
        refused = sorted(server.registry.refused)  # artifacts that failed to load (listed, not fatal)
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
            pool = server.registry.get(name)
            return json_response({"name": name, **pool.describe(), "anomaly": server.scorer(name).describe()})
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
            doc = await small_json(request)
            if set(doc) - {"ready", "repository_name"} or not isinstance(doc.get("ready", False), bool):
                raise RequestError('the index request body is {} or {"ready": true|false}')
            only_ready = doc.get("ready", False)
        except Exception as exc:
            return error_response(exc)
        return json_response([row for row in server.registry.index() if row["state"] == "READY" or not only_ready])

    async def repository_action(request: Request, name: str, action: str) -> Response:
        client = "?"
        try:
            client = server.admit(request)
            doc = await small_json(request)
            if set(doc) - {"parameters", "repository_name"}:
                raise RequestError(f"the {action} request body is {{}} or {{\"parameters\": {{}}}}")
            check_repository_parameters(action, doc.get("parameters"))
            outcome = await server.repository_action(client, name, action)
            response = json_response({})
        except Exception as exc:
            outcome = classify(exc)[1]
            response = error_response(exc)
        server.audit_repository(client, action, name, response.status_code, outcome)
        return response

    async def load_model(request: Request, name: str) -> Response:
        """Load or reload a model from its folder in the repository, under the signing policy."""
        return await repository_action(request, name, "load")

    async def unload_model(request: Request, name: str) -> Response:
        """Stop serving a model; requests in flight finish first."""
        return await repository_action(request, name, "unload")

    app.add_api_route("/v2/repository/models/{name}/load", load_model, methods=["POST"], tags=["extensions"])
    app.add_api_route("/v2/repository/models/{name}/unload", unload_model, methods=["POST"], tags=["extensions"])

    async def small_json(request: Request) -> dict[str, Any]:
        raw = await read_body(request, 4096)
        doc = loads_strict(raw, settings.max_json_depth) if raw.strip() else {}
        if not isinstance(doc, dict):
            raise RequestError("the request body must be a JSON object")
        return doc

    @app.get("/metrics", tags=["metrics"], response_class=Response)
    async def prometheus(request: Request) -> Response:
        try:
            server.admit_unless(request, settings.open_metrics)
        except Exception as exc:
            return error_response(exc)
        others = []
        for pool in server.registry.pools.values():
            pool.refresh_gauges()
            others += [({"ray_replica": tag}, text) for tag, text in pool.replica_metrics().items()]
        body = merge_expositions(metrics.render(), others) if others else metrics.render()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # built once, with the infer request schema injected
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = schemas.inject_infer_schema(doc)
        return app.openapi_schema

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> Response:
        try:
            server.admit_unless(request, settings.open_docs)
        except Exception as exc:
            return error_response(exc)
        return json_response(openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> Response:
        try:
            server.admit_unless(request, settings.open_docs)
        except Exception as exc:
            return error_response(exc)
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title + " - docs")

    return app
