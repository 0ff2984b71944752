"""`wasm-torch serve`: artifact folders over KServe v2 (REST and gRPC), locally or on Ray Serve.

Needs the 'serve' extra (fastapi, uvicorn, prometheus_client; grpcio for gRPC); `--ray` also the
'ray' extra. The defaults shown by --help are `ServeSettings`' own (serve/settings.py), not
re-typed here, and the balancing policy names are `serve.balancing.POLICIES`. `--config FILE` reads
any setting (and per-model ones) from a TOML or JSON file (serve/config.py); a flag given on the
command line wins over the file. Limits are documented in docs/serving.md.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from ..errors import DependencyError
from ..serve.balancing import POLICIES
from ..serve.settings import MODEL_CONTROL, ServeSettings
from .common import (
    existing_dir,
    fail,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    require_extra,
)

MB, KB = 1024 * 1024, 1024
GRPC_PORT = 8001  # Triton's and KServe's convention: HTTP on 8000, gRPC on 8001
EXPLICIT = "explicit_flags"  # namespace attribute: the dests given on the command line


def _mark(namespace: argparse.Namespace, dest: str) -> None:
    getattr(namespace, EXPLICIT, None) or setattr(namespace, EXPLICIT, set())
    getattr(namespace, EXPLICIT).add(dest)


class Store(argparse.Action):
    """`store`, remembering that the flag was given (so it wins over --config)."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values)
        _mark(namespace, self.dest)


class Flag(argparse.Action):
    """`store_true`, remembering that the flag was given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, nargs=0, default=False, **kwargs)

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, True)
        _mark(namespace, self.dest)


class Append(argparse.Action):
    """`append`, remembering that the flag was given."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), values])
        _mark(namespace, self.dest)


def settings_from_flags(a: argparse.Namespace) -> ServeSettings:
    """ServeSettings from the flags, over the --config file when one is given."""
    flags: dict[str, Any] = {
        "replicas": 1 if a.ray else a.replicas,  # --ray: --replicas Ray replicas, one wasm worker each
        "threads": a.threads,
        "max_batch_size": a.max_batch,
        "max_queue_delay_s": a.batch_delay_ms / 1e3,
        "max_queue": a.max_queue,
        "request_timeout_s": a.request_timeout,
        "cache_size": a.cache,
        "deadline_s": a.deadline,
        "fuel": a.fuel,
        "auth_tokens": frozenset(a.token),
        "open_metrics": a.open_metrics,
        "open_docs": a.open_docs,
        "rate_limit_per_s": a.rate_limit,
        "balancer": a.balancer,
        "max_body_bytes": round(a.max_body_mb * MB),
        "max_response_bytes": round(a.max_response_mb * MB),
        "max_header_bytes": round(a.max_header_kb * KB),
        "max_elements": a.max_elements,
        "read_timeout_s": a.read_timeout,
        "keep_alive_s": a.keep_alive,
        "max_connections": a.max_connections,
        "audit_log": Path(a.audit_log) if a.audit_log else None,
        "require_signature": a.require_signed,
        "trusted_keys": tuple(Path(k) for k in a.trust),
        "keyring": Path(a.keyring) if a.keyring else None,
        "grpc_port": None if a.no_grpc or a.ray else a.grpc_port,
        "grpc_host": a.host,
        "model_control": a.model_control,
        "repository_poll_s": a.repository_poll,
    }
    if a.config is None:
        return ServeSettings(**flags)
    from ..serve.config import load_settings

    given = getattr(a, EXPLICIT, set())
    dest_of = {  # the flags each setting comes from
        "replicas": {"replicas", "ray"}, "threads": {"threads"}, "max_batch_size": {"max_batch"}, "max_queue_delay_s": {"batch_delay_ms"},
        "max_queue": {"max_queue"}, "request_timeout_s": {"request_timeout"}, "cache_size": {"cache"},
        "deadline_s": {"deadline"}, "fuel": {"fuel"}, "auth_tokens": {"token"}, "open_metrics": {"open_metrics"},
        "open_docs": {"open_docs"}, "rate_limit_per_s": {"rate_limit"}, "balancer": {"balancer"},
        "max_body_bytes": {"max_body_mb"}, "max_response_bytes": {"max_response_mb"},
        "max_header_bytes": {"max_header_kb"}, "max_elements": {"max_elements"}, "read_timeout_s": {"read_timeout"},
        "keep_alive_s": {"keep_alive"}, "max_connections": {"max_connections"}, "audit_log": {"audit_log"},
        "require_signature": {"require_signed"}, "trusted_keys": {"trust"}, "keyring": {"keyring"},
        "grpc_port": {"grpc_port", "no_grpc", "ray"}, "grpc_host": {"host"}, "model_control": {"model_control"},
        "repository_poll_s": {"repository_poll"},
    }  # fmt: skip
    cli_defaults = {"grpc_port": flags["grpc_port"], "grpc_host": flags["grpc_host"]}  # not ServeSettings'
    return load_settings(Path(a.config), cli_defaults, **{k: v for k, v in flags.items() if dest_of[k] & given})


def cmd_serve(a: argparse.Namespace) -> int:
    require_extra("serve", "serve")
    if a.max_replicas is not None and a.min_replicas > a.max_replicas:
        fail(a, f"--min-replicas {a.min_replicas} is above --max-replicas {a.max_replicas}")
    if a.max_replicas is not None and not a.ray:
        fail(a, "--min-replicas/--max-replicas autoscale Ray replicas: add --ray")
    if a.ray and "grpc_port" in getattr(a, EXPLICIT, set()):
        fail(a, "gRPC is not served under --ray (Ray Serve's proxy serves HTTP); drop --grpc-port")
    settings = settings_from_flags(a)
    if settings.grpc_port is not None and importlib.util.find_spec("grpc") is None:
        raise DependencyError("gRPC needs grpcio, which is not installed: pip install grpcio (or pass --no-grpc)")
    if a.ray:  # raises MissingDependency (a clear "pip install 'wasm-torch[ray]'") without Ray
        from ..serve.ray.app import run as run_on_ray

        autoscale = None
        if a.max_replicas is not None:
            autoscale = {"min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
                         "target_ongoing_requests": a.target_ongoing}  # fmt: skip
        run_on_ray(
            a.models, settings, host=a.host, port=a.port, num_replicas=a.replicas, policy=settings.balancer,
            autoscaling=autoscale,
        )  # fmt: skip
        return 0
    from ..serve import serve

    serve(a.models, host=a.host, port=a.port, settings=settings)
    return 0


def add_parsers(sub: Any) -> None:
    d = ServeSettings()
    s = sub.add_parser(
        "serve", help="serve artifact folders over KServe v2: REST and gRPC (needs the 'serve' extra)"
    )
    s.add_argument("models", type=existing_dir, help="artifact folder, or a folder of artifact folders (the repository)")
    s.add_argument("--host", action=Store, default="127.0.0.1", help="address to listen on (REST and gRPC)")
    s.add_argument("--port", type=int, default=8000, help="TCP port for REST")
    s.add_argument("--grpc-port", action=Store, type=positive_int, default=GRPC_PORT, help="TCP port for gRPC")
    s.add_argument("--no-grpc", action=Flag, help="serve REST only")
    s.add_argument("--config", metavar="FILE", help="settings from a TOML or JSON file, with per-model tables; flags win")
    s.add_argument(
        "--replicas", action=Store, type=positive_int, default=d.replicas,
        help="workers per model (with --ray: Ray replicas, or the start when autoscaling)",
    )  # fmt: skip
    s.add_argument(
        "--threads", action=Store, type=positive_int, default=d.threads,
        help="intra-op threads of each worker's instance (one call on N cores, weights once); "
        "replicas x threads should not exceed the cores",
    )  # fmt: skip
    s.add_argument("--max-batch", action=Store, type=positive_int, default=d.max_batch_size, help="rows per dynamic batch")
    s.add_argument(
        "--batch-delay-ms", action=Store, type=non_negative_float, default=d.max_queue_delay_s * 1e3,
        help="how long a worker waits to fill a batch, in ms",
    )  # fmt: skip
    s.add_argument("--max-queue", action=Store, type=positive_int, default=d.max_queue, help="queued requests per worker (503 above)")
    s.add_argument("--cache", action=Store, type=non_negative_int, default=d.cache_size, help="LRU result cache entries per model (0 = off)")
    s.add_argument("--deadline", action=Store, type=positive_float, default=d.deadline_s, help="wall-clock seconds per call")
    s.add_argument("--fuel", action=Store, type=positive_int, default=d.fuel, help="fuel budget per call (default: unlimited)")
    s.add_argument("--token", action=Append, default=[], help="bearer token clients must send (repeat; none = auth off)")
    s.add_argument("--open-metrics", action=Flag, help="with --token: serve /metrics without a token (default: token needed)")
    s.add_argument("--open-docs", action=Flag, help="with --token: serve /docs and /openapi.json without a token (default: token needed)")
    s.add_argument(
        "--rate-limit", action=Store, type=non_negative_float, default=d.rate_limit_per_s, help="requests/s per client (0 = off)"
    )
    limits = s.add_argument_group("limits (over a limit: 413, 431, 408, 422 or 503 — gRPC: RESOURCE_EXHAUSTED, ... — and the server keeps serving)")
    limits.add_argument("--max-body-mb", action=Store, type=positive_float, default=d.max_body_bytes / MB, help="largest request body or gRPC message, in MiB")
    limits.add_argument(
        "--max-response-mb", action=Store, type=positive_float, default=d.max_response_bytes / MB,
        help="largest answer, in MiB (bounded before encoding)",
    )  # fmt: skip
    limits.add_argument("--max-elements", action=Store, type=positive_int, default=d.max_elements, help="tensor elements per request, over all inputs")
    limits.add_argument("--max-header-kb", action=Store, type=positive_float, default=d.max_header_bytes / KB, help="largest request line + headers (gRPC: metadata), in KiB")
    limits.add_argument(
        "--read-timeout", action=Store, type=positive_float, default=d.read_timeout_s,
        help="seconds for a request's head and body to arrive (slow clients get 408)",
    )  # fmt: skip
    limits.add_argument("--request-timeout", action=Store, type=positive_float, default=d.request_timeout_s, help="seconds a request may wait for its answer (504)")
    limits.add_argument("--keep-alive", action=Store, type=positive_float, default=d.keep_alive_s, help="seconds an idle connection stays open")
    limits.add_argument("--max-connections", action=Store, type=positive_int, default=d.max_connections, help="open connections (503 above; gRPC: concurrent calls)")
    repo = s.add_argument_group("model repository")
    repo.add_argument(
        "--model-control", action=Store, choices=MODEL_CONTROL, default=d.model_control,
        help="none: load/unload are refused (403); explicit: POST /v2/repository/models/NAME/load|unload work; "
        "poll: and changed, new or removed folders are reloaded, loaded or unloaded",
    )  # fmt: skip
    repo.add_argument("--repository-poll", action=Store, type=positive_float, default=d.repository_poll_s, help="seconds between polls (--model-control poll)")
    s.add_argument("--audit-log", action=Store, metavar="FILE", help="append-only, hash-chained JSON-lines audit log (default: off)")
    s.add_argument(
        "--balancer", "--policy", action=Store, dest="balancer", default=d.balancer, choices=sorted(POLICIES),
        help="balancing policy (with --ray: the Ray Serve request router's policy)",
    )  # fmt: skip
    ray = s.add_argument_group("Ray Serve")
    ray.add_argument("--ray", action=Flag, help="scale out on Ray Serve (local, or RAY_ADDRESS); needs the 'ray' extra")
    ray.add_argument("--min-replicas", type=positive_int, default=1, help="with --max-replicas: autoscaling's lower bound")
    ray.add_argument("--max-replicas", type=positive_int, help="autoscale each model between --min-replicas and this (default: fixed --replicas)")
    ray.add_argument("--target-ongoing", type=positive_float, default=2.0, help="autoscaling: ongoing requests per replica to aim for")
    s.add_argument("--require-signed", action=Flag, help="refuse artifacts not signed by --trust keys")
    s.add_argument("--trust", action=Append, default=[], metavar="KEY.pub", help="trusted public key file (repeat)")
    s.add_argument("--keyring", action=Store, help="keyring file for encrypted weights (default: WASM_TORCH_KEYRING)")
    s.set_defaults(fn=cmd_serve, parser=s)
