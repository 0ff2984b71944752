"""Serving layer: KServe v2 over FastAPI (REST, with the binary tensor extension) and gRPC, with
a model repository (load, unload, hot reload), a worker pool, dynamic batching, balancing,
circuit breakers, self-healing and an input guard. Needs the `serve` extra (fastapi, uvicorn,
prometheus_client; grpcio for gRPC)."""

from __future__ import annotations

from typing import Any

from wasm_torch.serve.settings import ServeSettings

__all__ = ["ModelPool", "ServeSettings", "create_app", "serve"]


def __getattr__(name: str) -> Any:  # lazy: importing the package does not import fastapi
    if name == "create_app":
        from wasm_torch.serve.app import create_app

        return create_app
    if name == "serve":
        from wasm_torch.serve.server import serve

        return serve
    if name == "ModelPool":
        from wasm_torch.serve.pool import ModelPool

        return ModelPool
    raise AttributeError(name)
