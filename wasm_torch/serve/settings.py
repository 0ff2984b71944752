"""Every knob of the serving layer in one frozen dataclass (defaults are the safe choice).

This is the one source of the defaults: `wasm-torch serve` (serve/cli.py) reads its flag defaults
from `ServeSettings()`, and the balancing policy names come from `balancing.POLICIES`. Values are
checked when the settings are made, so a bad flag is a clear error at start-up, not a failure
under load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from wasm_torch.runtime.variants import MAX_THREADS
from wasm_torch.serve.balancing import POLICIES
from wasm_torch.serve.errors import ServeError


class SettingsError(ServeError, ValueError):
    """A serving setting (or the `wasm-torch serve` flag that sets it) has an invalid value."""


@dataclass(frozen=True)
class ServeSettings:
    # --- pool --------------------------------------------------------------------------------
    replicas: int = 2  # worker threads per model, one wasm instance (store) each
    threads: int = 1  # intra-op threads of each replica's instance (wasm threads; 1 = single-threaded build)
    max_batch_size: int = 8  # rows per batch for models with a symbolic first dim
    max_queue_delay_s: float = 0.002  # how long a worker waits to fill a batch
    max_queue: int = 256  # queued requests per replica before we shed load (503)
    request_timeout_s: float = 30.0  # a request gets an answer (result or error) within this
    hang_timeout_s: float = 10.0  # a call running longer than this marks its worker as hung
    cache_size: int = 0  # LRU result cache entries per model (0 = off)
    balancer: str = "peak_ewma"  # one of balancing.POLICIES
    max_retries: int = 2  # retries on another replica, only for replica-caused failures
    # --- sandbox, passed to wasm_torch.load -------------------------------------------
    memory_limit: int | None = 256 * 1024 * 1024
    deadline_s: float | None = 10.0
    fuel: int | None = None
    # --- resilience ------------------------------------------------------------------------
    breaker_window: int = 20  # calls in the count-based sliding window
    breaker_min_calls: int = 5
    breaker_failure_rate: float = 0.5
    breaker_open_s: float = 5.0
    breaker_half_open_calls: int = 2
    healing: bool = True
    healing_interval_s: float = 0.5
    # --- HTTP limits (serve/http.py, applied by `serve()` / `wasm-torch serve`) --------------
    max_header_bytes: int = 16 * 1024  # request line + headers; over it: 431 and the connection closes
    read_timeout_s: float = 30.0  # a request's head and body must arrive within this from its first byte
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int = 256  # open connections + running requests; over it: 503 (uvicorn)
    # --- guard ------------------------------------------------------------------------------
    max_body_bytes: int = 8 * 1024 * 1024
    max_response_bytes: int = 64 * 1024 * 1024  # JSON answer size bound (422 above it)
    max_elements: int = 4 * 1024 * 1024  # elements per request over all inputs
    max_json_depth: int = 32  # nesting of the request JSON (the envelope takes 4 levels)
    offload_bytes: int = 64 * 1024  # bodies/answers bigger than this are (de)coded off the event loop
    offload_workers: int = 2  # threads (de)coding big bodies at once: bounds their memory
    auth_tokens: frozenset[str] = field(default_factory=frozenset)  # empty = auth off
    open_metrics: bool = False  # with tokens: /metrics without a token (True) or only with one
    open_docs: bool = False  # with tokens: /docs and /openapi.json without a token (True) or not
    rate_limit_per_s: float = 0.0  # tokens per second per client (0 = off)
    rate_limit_burst: int = 50
    anomaly_warmup: int = 32  # accepted rows before the anomaly score is meaningful
    anomaly_reject_score: float | None = None  # reject (422) above this score; None = flag only
    anomaly_client_share: float = 0.25  # most of the baseline's rows one client may contribute
    audit_log: Path | None = None  # append-only, hash-chained JSON lines
    # --- integrity ------------------------------------------------------------------------
    require_signature: bool = False
    trusted_keys: tuple[Path, ...] = ()  # public keys (PEM); given without require_signature, only
    # the signatures present are checked (docs/security.md: the policy)
    keyring: Path | None = None  # keyring file for weights.bin.enc (default: WASM_TORCH_KEYRING/_KEYS)
    # --- gRPC (serve/grpc/) and the model repository (registry.py, repository.py) -------------
    grpc_port: int | None = None  # KServe v2 gRPC on this port (`wasm-torch serve`: 8001); None = off
    grpc_host: str = "127.0.0.1"
    model_control: str = "none"  # "none": load/unload answer 403; "explicit": they work; "poll": and
    # the repository folder is polled: changed folders reload, new ones load, removed ones unload
    repository_poll_s: float = 2.0  # poll period with model_control="poll"
    # per-model overrides of the pool, sandbox and size settings: {"mlp": {"max_batch_size": 16}}
    model_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # --- learning (serve/learning.py) -------------------------------------------------------
    learn_memory: Path | None = None  # pattern-memory folder to consolidate in low-load phases; None = off
    learn_period_s: float = 60.0  # one consolidation chunk per period, in the dusk and rest phases only

    def __post_init__(self) -> None:
        problems = [p for p in _problems(self) if p]
        if problems:
            raise SettingsError("invalid serve settings: " + "; ".join(problems))

    def with_(self, **changes: object) -> ServeSettings:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise SettingsError(f"unknown serve setting(s) {sorted(unknown)}")
        return replace(self, **changes)  # type: ignore[arg-type]

    def for_model(self, name: str) -> ServeSettings:
        """These settings with model `name`'s overrides applied (cached: the request path asks)."""
        overrides = self.model_settings.get(name)
        if not overrides:
            return self
        cache: dict[str, ServeSettings] = self.__dict__.setdefault("_per_model", {})
        if name not in cache:
            cache[name] = replace(self, model_settings={}, **overrides)
        return cache[name]


# What a model's entry in `model_settings` may change: its pool, sandbox and request/answer sizes.
# Server-wide things (HTTP limits, auth, the guard's policy, gRPC, the repository) are not per model.
PER_MODEL = frozenset({
    "replicas", "threads", "max_batch_size", "max_queue_delay_s", "max_queue", "request_timeout_s", "hang_timeout_s",
    "cache_size", "balancer", "max_retries", "memory_limit", "deadline_s", "fuel", "breaker_window",
    "breaker_min_calls", "breaker_failure_rate", "breaker_open_s", "breaker_half_open_calls",
    "max_body_bytes", "max_response_bytes", "max_elements",
})  # fmt: skip
MODEL_CONTROL = ("none", "explicit", "poll")


_AT_LEAST_ONE = (
    "replicas", "max_batch_size", "max_queue", "breaker_window", "breaker_min_calls",
    "breaker_half_open_calls", "max_header_bytes", "max_connections", "max_body_bytes",
    "max_response_bytes", "max_elements", "max_json_depth", "offload_workers", "rate_limit_burst",
    "anomaly_warmup",
)  # fmt: skip
_POSITIVE = (
    "request_timeout_s", "hang_timeout_s", "breaker_open_s", "healing_interval_s", "read_timeout_s",
    "keep_alive_s", "learn_period_s", "repository_poll_s",
)  # fmt: skip
_NOT_NEGATIVE = ("max_queue_delay_s", "cache_size", "max_retries", "offload_bytes", "rate_limit_per_s")


def _problems(s: ServeSettings) -> list[str]:
    out = []
    if not _int(s.threads) or not 1 <= s.threads <= MAX_THREADS:
        out.append(f"threads must be an integer 1..{MAX_THREADS}, got {s.threads!r}")
    elif s.threads > 1 and s.fuel is not None:
        out.append("fuel meters one thread's instructions: use threads=1 with fuel")
    for name in _AT_LEAST_ONE:
        v = getattr(s, name)
        out.append(f"{name} must be an integer >= 1, got {v!r}" if not _int(v) or v < 1 else "")
    for name in _POSITIVE:
        v = getattr(s, name)
        out.append(f"{name} must be a finite number > 0, got {v!r}" if not _real(v) or v <= 0 else "")
    for name in _NOT_NEGATIVE:
        v = getattr(s, name)
        out.append(f"{name} must be a finite number >= 0, got {v!r}" if not _real(v) or v < 0 else "")
    if s.balancer not in POLICIES:
        out.append(f"balancer {s.balancer!r} is not one of {sorted(POLICIES)}")
    if not (_real(s.breaker_failure_rate) and 0 < s.breaker_failure_rate <= 1):
        out.append(f"breaker_failure_rate must be in (0, 1], got {s.breaker_failure_rate!r}")
    if not (_real(s.anomaly_client_share) and 0 < s.anomaly_client_share <= 1):
        out.append(f"anomaly_client_share must be in (0, 1], got {s.anomaly_client_share!r}")
    for name in ("memory_limit", "fuel"):
        v = getattr(s, name)
        bad = v is not None and (not _int(v) or v < 1)
        out.append(f"{name} must be None or an integer >= 1, got {v!r}" if bad else "")
    for name in ("deadline_s", "anomaly_reject_score"):
        v = getattr(s, name)
        bad = v is not None and (not _real(v) or v <= 0)
        out.append(f"{name} must be None or a finite number > 0, got {v!r}" if bad else "")
    if any(not isinstance(t, str) or not t or t != t.strip() for t in s.auth_tokens):
        out.append("auth_tokens must be non-empty strings without surrounding whitespace")
    if s.grpc_port is not None and not (_int(s.grpc_port) and 1 <= s.grpc_port <= 65535):
        out.append(f"grpc_port must be None or a TCP port 1..65535, got {s.grpc_port!r}")
    if s.model_control not in MODEL_CONTROL:
        out.append(f"model_control {s.model_control!r} is not one of {list(MODEL_CONTROL)}")
    out.extend(_model_problems(s))
    return out


def _model_problems(s: ServeSettings) -> list[str]:
    if not isinstance(s.model_settings, Mapping):
        return ["model_settings must map model names to {setting: value}"]
    out = []
    for name, overrides in s.model_settings.items():
        if not isinstance(overrides, Mapping):
            out.append(f"model_settings[{name!r}] must be a table of settings")
            continue
        unknown = sorted(set(overrides) - PER_MODEL)
        if unknown:
            out.append(f"model_settings[{name!r}]: {unknown} cannot be set per model; per model: {sorted(PER_MODEL)}")
            continue
        try:
            replace(s, model_settings={}, **overrides)
        except SettingsError as e:
            out.append(f"model_settings[{name!r}]: {str(e).removeprefix('invalid serve settings: ')}")
        except TypeError as e:
            out.append(f"model_settings[{name!r}]: {e}")
    return out


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _real(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
