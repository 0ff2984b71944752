"""Run the app with uvicorn: what `wasm-torch serve out/ --port 8000` calls."""

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

    uvicorn.run(
        create_app(models, settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5
    )
