"""`wasm-torch serve`: artifact folders over HTTP (KServe v2), locally or on Ray Serve.

Needs the 'serve' extra (fastapi, uvicorn, prometheus_client); `--ray` also the 'ray' extra. The
defaults shown by --help are `ServeSettings`' own (serve/settings.py), not re-typed here, and the
balancing policy names are `serve.balancing.POLICIES`. Limits are documented in docs/serving.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..serve.balancing import POLICIES
from ..serve.settings import ServeSettings
from .common import (
    existing_dir,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    require_extra,
)

MB, KB = 1024 * 1024, 1024


def cmd_serve(a: argparse.Namespace) -> int:
    require_extra("serve", "serve")
    from ..serve import serve

    settings = ServeSettings(
        replicas=1 if a.ray else a.replicas,  # --ray: --replicas Ray replicas, one wasm worker each
        max_batch_size=a.max_batch,
        max_queue_delay_s=a.batch_delay_ms / 1e3,
        cache_size=a.cache,
        deadline_s=a.deadline,
        fuel=a.fuel,
        auth_tokens=frozenset(a.token),
        open_metrics=a.open_metrics,
        open_docs=a.open_docs,
        rate_limit_per_s=a.rate_limit,
        balancer=a.balancer,
        max_body_bytes=round(a.max_body_mb * MB),
        max_response_bytes=round(a.max_response_mb * MB),
        max_header_bytes=round(a.max_header_kb * KB),
        read_timeout_s=a.read_timeout,
        keep_alive_s=a.keep_alive,
        max_connections=a.max_connections,
        audit_log=Path(a.audit_log) if a.audit_log else None,
        require_signature=a.require_signed,
        trusted_keys=tuple(Path(k) for k in a.trust),
        keyring=Path(a.keyring) if a.keyring else None,
    )
    if a.ray:  # raises MissingDependency (a clear "pip install 'wasm-torch[ray]'") without Ray
        from ..serve.ray.app import run as run_on_ray

        run_on_ray(a.models, settings, host=a.host, port=a.port, num_replicas=a.replicas, policy=a.balancer)
        return 0
    serve(a.models, host=a.host, port=a.port, settings=settings)
    return 0


def add_parsers(sub: Any) -> None:
    d = ServeSettings()
    s = sub.add_parser("serve", help="serve artifact folders over HTTP (KServe v2; needs the 'serve' extra)")
    s.add_argument("models", type=existing_dir, help="artifact folder, or a folder of artifact folders")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    s.add_argument("--replicas", type=positive_int, default=d.replicas, help="workers per model (with --ray: Ray replicas)")
    s.add_argument("--max-batch", type=positive_int, default=d.max_batch_size, help="rows per dynamic batch")
    s.add_argument(
        "--batch-delay-ms",
        type=non_negative_float,
        default=d.max_queue_delay_s * 1e3,
        help="how long a worker waits to fill a batch, in ms",
    )
    s.add_argument("--cache", type=non_negative_int, default=d.cache_size, help="LRU result cache entries per model (0 = off)")
    s.add_argument("--deadline", type=positive_float, default=d.deadline_s, help="wall-clock seconds per call")
    s.add_argument("--fuel", type=positive_int, default=d.fuel, help="fuel budget per call (default: unlimited)")
    s.add_argument("--token", action="append", default=[], help="bearer token clients must send (repeat; none = auth off)")
    s.add_argument(
        "--open-metrics", action="store_true", help="with --token: serve /metrics without a token (default: token needed)"
    )
    s.add_argument(
        "--open-docs",
        action="store_true",
        help="with --token: serve /docs and /openapi.json without a token (default: token needed)",
    )
    s.add_argument(
        "--rate-limit", type=non_negative_float, default=d.rate_limit_per_s, help="requests/s per client (0 = off)"
    )
    limits = s.add_argument_group("HTTP limits (over a limit: 413, 431, 408, 422 or 503, and the server keeps serving)")
    limits.add_argument(
        "--max-body-mb", type=positive_float, default=d.max_body_bytes / MB, help="largest request body, in MiB"
    )
    limits.add_argument(
        "--max-response-mb",
        type=positive_float,
        default=d.max_response_bytes / MB,
        help="largest JSON answer, in MiB (bounded before encoding)",
    )
    limits.add_argument(
        "--max-header-kb",
        type=positive_float,
        default=d.max_header_bytes / KB,
        help="largest request line + headers, in KiB",
    )
    limits.add_argument(
        "--read-timeout",
        type=positive_float,
        default=d.read_timeout_s,
        help="seconds for a request's head and body to arrive (slow clients get 408)",
    )
    limits.add_argument(
        "--keep-alive", type=positive_float, default=d.keep_alive_s, help="seconds an idle connection stays open"
    )
    limits.add_argument(
        "--max-connections", type=positive_int, default=d.max_connections, help="open connections (503 above)"
    )
    s.add_argument("--audit-log", metavar="FILE", help="append-only, hash-chained JSON-lines audit log (default: off)")
    s.add_argument(
        "--balancer",
        "--policy",
        dest="balancer",
        default=d.balancer,
        choices=sorted(POLICIES),
        help="balancing policy (with --ray: the Ray Serve request router's policy)",
    )
    s.add_argument("--ray", action="store_true", help="scale out on Ray Serve (local, or RAY_ADDRESS); needs the 'ray' extra")
    s.add_argument("--require-signed", action="store_true", help="refuse artifacts not signed by --trust keys")
    s.add_argument("--trust", action="append", default=[], metavar="KEY.pub", help="trusted public key file (repeat)")
    s.add_argument("--keyring", help="keyring file for encrypted weights (default: WASM_TORCH_KEYRING)")
    s.set_defaults(fn=cmd_serve, parser=s)
