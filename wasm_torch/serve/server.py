"""Run the app with uvicorn: what `wasm-torch serve out/ --port 8000` calls.

The HTTP limits of the settings (header size, read timeout, keep-alive, connections) are applied
here through `http.uvicorn_options`; the app applies the rest (body and answer size, JSON depth).
With `settings.grpc_port`, the app's lifespan starts the gRPC service in uvicorn's event loop.
"""

from __future__ import annotations

import os

from wasm_torch.serve.settings import ServeSettings


def serve(
    models: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    log_level: str = "info",
) -> None:
    """Serve every artifact folder under `models` (loopback by default: expose it on purpose)."""
    import uvicorn

    from wasm_torch.serve.app import create_app
    from wasm_torch.serve.http import uvicorn_options

    settings = settings or ServeSettings()
    if settings.grpc_port is not None:  # a clear error now rather than a failed start-up later
        from wasm_torch.serve.grpc.service import check_port_free

        check_port_free(settings.grpc_host, settings.grpc_port)
    app = create_app(models, settings)
    rejections = app.state.server.metrics.http_rejections

    def count(reason: str) -> None:
        rejections.labels(reason).inc()

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        **uvicorn_options(settings, count),
    )
