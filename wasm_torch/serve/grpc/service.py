"""The KServe v2 gRPC service (`inference.GRPCInferenceService`) over the app's `Server`.

It runs in the app's event loop (started by the app's lifespan: `wasm-torch serve` listens on
`--port` for REST and `--grpc-port` for gRPC) and shares everything with REST: the pools, the
guard (bearer tokens from the `authorization` metadata, the per-client rate limit, the anomaly
score), the per-model limits, the metrics and the audit log — `Server.predict` is the one infer
path, `Server.failed` / `finish` count both protocols alike.

Status codes follow the REST table (`errors.STATUS_TABLE`) through `grpc_code`: a client fault is
INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, RESOURCE_EXHAUSTED (sizes,
budgets, rate limit; `retry-after` in the trailing metadata) or CANCELLED, never INTERNAL or
UNKNOWN: requests arrive as bytes and are parsed inside the handler (grpcio answers INTERNAL when
its own deserializer fails), and `codec.decode_infer` turns any exception raised while validating
a message into INVALID_ARGUMENT.

Limits: messages over `max_body_bytes` (the largest of any model's) are refused by gRPC itself
with RESOURCE_EXHAUSTED, then each model's own limit applies; answers are bounded before
encoding; `max_connections` bounds concurrent calls (RESOURCE_EXHAUSTED above it), `max_header_bytes`
the metadata, `read_timeout_s` the HTTP/2 handshake, `keep_alive_s` idle connections.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from wasm_torch.serve.errors import (
    ClientGone,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    ServeError,
    Unavailable,
    classify,
    public_message,
)
from wasm_torch.serve.grpc import proto
from wasm_torch.serve.grpc.codec import decode_infer, encode_infer, parse, tensor_metadata
from wasm_torch.serve.guard import check_bearer
from wasm_torch.serve.handler import (
    EXTENSIONS,
    MODEL_VERSION,
    SERVER_NAME,
    Exchange,
    Server,
    check_repository_parameters,
    server_version,
)
from wasm_torch.serve.protocol import InferRequest, check_response_size
from wasm_torch.serve.seams import ServedPool

log = logging.getLogger("wasm_torch.serve")
Code = grpc.StatusCode
CODE_BY_STATUS = {
    400: Code.INVALID_ARGUMENT, 401: Code.UNAUTHENTICATED, 403: Code.PERMISSION_DENIED, 404: Code.NOT_FOUND,
    408: Code.DEADLINE_EXCEEDED, 413: Code.RESOURCE_EXHAUSTED, 415: Code.INVALID_ARGUMENT,
    422: Code.INVALID_ARGUMENT, 429: Code.RESOURCE_EXHAUSTED, 499: Code.CANCELLED, 503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}  # fmt: skip
CODE_BY_KIND = {  # 422s that are about size or budget, and a refused load
    "fuel_exhausted": Code.RESOURCE_EXHAUSTED, "memory_limit": Code.RESOURCE_EXHAUSTED,
    "limit": Code.RESOURCE_EXHAUSTED, "response_too_large": Code.RESOURCE_EXHAUSTED,
    "load_refused": Code.FAILED_PRECONDITION,
}  # fmt: skip
OPEN = frozenset({"ServerLive", "ServerReady", "ServerMetadata"})  # no token needed (probes), as in REST


def grpc_code(status: int, kind: str) -> grpc.StatusCode:
    return CODE_BY_KIND.get(kind) or CODE_BY_STATUS.get(status, Code.INTERNAL)


class Failed(Exception):
    """An answered error: the status/kind already counted, the code and message to send."""

    def __init__(self, code: grpc.StatusCode, message: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.metadata = code, message, metadata


def peer_host(peer: str) -> str:
    """"ipv4:127.0.0.1:5000" -> "127.0.0.1", "ipv6:[::1]:5000" -> "::1" (the REST client id's form)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")]
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return kind or "unknown"


class InferenceService:
    """One handler per RPC; each takes the request's bytes and returns the answer's bytes."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.settings = server.settings

    # --- plumbing -----------------------------------------------------------------------------
    def client(self, context: grpc.aio.ServicerContext) -> str:
        if self.settings.auth_tokens:
            token = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), None)
            return self.server.admit_client(check_bearer(token, self.settings.auth_tokens))
        return self.server.admit_client("ip:" + peer_host(context.peer()))

    def error(self, exc: BaseException, status: int, kind: str) -> Failed:
        metadata: tuple[tuple[str, str], ...] = ()
        if isinstance(exc, RateLimited | Unavailable):
            metadata = (("retry-after", str(max(1, round(exc.retry_after_s)))),)
        return Failed(grpc_code(status, kind), public_message(exc), metadata)

    def handler(self, method: str, fn: Callable[[bytes, Any], Awaitable[Any]]) -> grpc.RpcMethodHandler:
        metrics = self.server.metrics

        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                answer = await fn(raw, context)
            except Failed as f:
                metrics.grpc.labels(method, f.code.name).inc()
                if f.metadata:
                    context.set_trailing_metadata(f.metadata)
                await context.abort(f.code, f.message)
            except asyncio.CancelledError:  # the client cancelled or its deadline passed
                metrics.grpc.labels(method, Code.CANCELLED.name).inc()
                raise
            except Exception as exc:  # not an infer: classify here (infer classifies itself)
                status, kind = classify(exc)
                if kind == "internal":
                    log.exception("internal error in gRPC %s", method, exc_info=exc)
                f = self.error(exc, status, kind)
                metrics.grpc.labels(method, f.code.name).inc()
                if f.metadata:
                    context.set_trailing_metadata(f.metadata)
                await context.abort(f.code, f.message)
            metrics.grpc.labels(method, Code.OK.name).inc()
            return answer.SerializeToString()

        return grpc.unary_unary_rpc_method_handler(call)  # bytes in, bytes out: we parse (see doc)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        methods = {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
            "RepositoryIndex": self.repository_index,
            "RepositoryModelLoad": self.repository_load,
            "RepositoryModelUnload": self.repository_unload,
        }
        assert set(methods) == set(proto.RPCS)
        return grpc.method_handlers_generic_handler(
            proto.FULL_SERVICE, {name: self.handler(name, fn) for name, fn in methods.items()}
        )

    @staticmethod
    def _version(version: str, name: str) -> None:
        if version not in ("", MODEL_VERSION):
            raise ModelNotFound(f"model {name!r} has no version {version[:20]!r}; its only version is {MODEL_VERSION!r}")

    # --- health and metadata --------------------------------------------------------------
    async def server_live(self, raw: bytes, context: Any) -> Any:
        return proto.ServerLiveResponse(live=True)

    async def server_ready(self, raw: bytes, context: Any) -> Any:
        return proto.ServerReadyResponse(ready=self.server.registry.ready)

    async def server_metadata(self, raw: bytes, context: Any) -> Any:
        return proto.ServerMetadataResponse(name=SERVER_NAME, version=server_version(), extensions=list(EXTENSIONS))

    async def model_ready(self, raw: bytes, context: Any) -> Any:
        req = parse(proto.ModelReadyRequest, raw, "ModelReadyRequest")
        self.client(context)
        self._version(req.version, req.name)
        return proto.ModelReadyResponse(ready=self.server.registry.get(req.name).ready)

    async def model_metadata(self, raw: bytes, context: Any) -> Any:
        req = parse(proto.ModelMetadataRequest, raw, "ModelMetadataRequest")
        self.client(context)
        self._version(req.version, req.name)
        pool = self.server.registry.get(req.name)
        out = proto.ModelMetadataResponse(name=req.name, versions=[MODEL_VERSION], platform="wasm-torch_wasm32")
        for spec in pool.inputs:
            tensor_metadata(spec, out.inputs)
        for spec in pool.outputs:
            tensor_metadata(spec, out.outputs)
        return out

    # --- inference --------------------------------------------------------------------------
    async def model_infer(self, raw: bytes, context: Any) -> Any:
        server, ex = self.server, Exchange("grpc")
        try:
            try:
                msg = parse(proto.ModelInferRequest, raw, "ModelInferRequest")
                ex.client = self.client(context)
                name = msg.model_name
                self._version(msg.model_version, name)
                with server.registry.lease(name) as pool:  # a reload or unload waits for this call
                    ex.model = name
                    limits = server.limits(name)
                    if len(raw) > limits.max_body_bytes:
                        raise PayloadTooLarge(
                            f"request message of {len(raw)} bytes is over model {name!r}'s {limits.max_body_bytes}-byte limit"
                        )

                    def decode(p: ServedPool) -> InferRequest:
                        return decode_infer(msg, p.inputs, p.outputs, limits.max_elements)

                    req, obs, results = await server.predict(ex, pool, decode, len(raw))
                    bound = check_response_size(results, req.outputs, limits.max_response_bytes, req.binary_outputs)
                    answer = await server.offload(bound, encode_infer, name, MODEL_VERSION, req, results)
                    server.accepted(ex, obs)
            except asyncio.CancelledError:  # the client cancelled, or its deadline passed
                server.failed(ex, ClientGone("the client cancelled the call"))
                server.finish(ex, 499)
                raise
        except Exception as exc:  # every exception becomes a status with a clear message
            status, kind = server.failed(ex, exc)
            server.finish(ex, status)
            raise self.error(exc, status, kind) from None
        server.finish(ex, 200)
        return answer

    # --- model repository -------------------------------------------------------------------
    async def repository_index(self, raw: bytes, context: Any) -> Any:
        req = parse(proto.RepositoryIndexRequest, raw, "RepositoryIndexRequest")
        self.client(context)
        out = proto.RepositoryIndexResponse()
        for row in self.server.registry.index():
            if row["state"] == "READY" or not req.ready:
                out.models.add(**row)
        return out

    async def repository_load(self, raw: bytes, context: Any) -> Any:
        req = parse(proto.RepositoryModelLoadRequest, raw, "RepositoryModelLoadRequest")
        await self._repository(context, "load", req)
        return proto.RepositoryModelLoadResponse()

    async def repository_unload(self, raw: bytes, context: Any) -> Any:
        req = parse(proto.RepositoryModelUnloadRequest, raw, "RepositoryModelUnloadRequest")
        await self._repository(context, "unload", req)
        return proto.RepositoryModelUnloadResponse()

    async def _repository(self, context: Any, action: str, req: Any) -> None:
        client = "?"
        try:
            client = self.client(context)
            params = {k: _parameter_value(v) for k, v in req.parameters.items()}
            check_repository_parameters(action, params)
            await self.server.repository_action(client, req.model_name, action)
        except Exception as exc:
            status, kind = classify(exc)
            self.server.audit_repository(client, action, req.model_name, status, kind)
            raise
        self.server.audit_repository(client, action, req.model_name, 200, "ok")


def _parameter_value(p: Any) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port_free(host: str, port: int) -> None:
    """Fail before start-up, with a clear message, when the gRPC port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServeError(
                f"cannot listen for gRPC on {listen_address(host, port)} ({e.strerror}): "
                "pass another --grpc-port, or --no-grpc"
            ) from None


async def start_grpc(server: Server, host: str, port: int) -> grpc.aio.Server:
    """Start the gRPC service on host:port in the running event loop (stop it with `.stop()`)."""
    s = server.settings
    body = max([s.max_body_bytes, *(server.limits(n).max_body_bytes for n in s.model_settings)])
    answer = max([s.max_response_bytes, *(server.limits(n).max_response_bytes for n in s.model_settings)])
    options = [
        ("grpc.max_receive_message_length", body),
        ("grpc.max_send_message_length", answer),
        ("grpc.max_metadata_size", s.max_header_bytes),
        ("grpc.max_concurrent_streams", min(100, s.max_connections)),
        ("grpc.server_handshake_timeout_ms", int(s.read_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", int(s.keep_alive_s * 1000)),
        ("grpc.so_reuseport", 0),
    ]
    g = grpc.aio.server(options=options, maximum_concurrent_rpcs=s.max_connections)
    g.add_generic_rpc_handlers((InferenceService(server).generic_handler(),))
    try:
        g.add_insecure_port(listen_address(host, port))
    except RuntimeError as e:
        raise ServeError(
            f"cannot listen for gRPC on {listen_address(host, port)}: {e}; pass another --grpc-port, or --no-grpc"
        ) from None
    await g.start()
    log.info("KServe v2 gRPC on %s", listen_address(host, port))
    return g
