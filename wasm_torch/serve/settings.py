"""Every knob of the serving layer in one frozen dataclass (defaults are the safe choice)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    # --- pool (D2) -------------------------------------------------------------------------
    replicas: int = 2  # worker threads per model, one wasm instance (store) each
    max_batch_size: int = 8  # rows per batch for models with a symbolic first dim
    max_queue_delay_s: float = 0.002  # how long a worker waits to fill a batch
    max_queue: int = 256  # queued requests per replica before we shed load (503)
    request_timeout_s: float = 30.0  # a request gets an answer (result or error) within this
    hang_timeout_s: float = 10.0  # a call running longer than this marks its worker as hung
    cache_size: int = 0  # LRU result cache entries per model (0 = off)
    balancer: str = "peak_ewma"  # round_robin | least_outstanding | p2c | peak_ewma | weighted
    max_retries: int = 2  # retries on another replica, only for replica-caused failures
    # --- sandbox (D10), passed to wasm_torch.load -------------------------------------------
    memory_limit: int | None = 256 * 1024 * 1024
    deadline_s: float | None = 10.0
    fuel: int | None = None
    # --- resilience (D5) -------------------------------------------------------------------
    breaker_window: int = 20  # calls in the count-based sliding window
    breaker_min_calls: int = 5
    breaker_failure_rate: float = 0.5
    breaker_open_s: float = 5.0
    breaker_half_open_calls: int = 2
    healing: bool = True
    healing_interval_s: float = 0.5
    # --- guard (D8) -------------------------------------------------------------------------
    max_body_bytes: int = 8 * 1024 * 1024
    max_elements: int = 4 * 1024 * 1024  # elements per request over all inputs
    max_json_depth: int = 32
    auth_tokens: frozenset[str] = field(default_factory=frozenset)  # empty = auth off
    rate_limit_per_s: float = 0.0  # tokens per second per client (0 = off)
    rate_limit_burst: int = 50
    anomaly_warmup: int = 32  # requests before the anomaly score is meaningful
    anomaly_reject_score: float | None = None  # reject (422) above this score; None = flag only
    audit_log: Path | None = None  # append-only, hash-chained JSON lines
    # --- integrity (D9) -------------------------------------------------------------------
    require_signature: bool = False
    trusted_keys: tuple[Path, ...] = ()  # public keys (PEM); given without require_signature, only
    # the signatures present are checked (docs/security.md: the policy)
    keyring: Path | None = None  # keyring file for weights.bin.enc (default: WASM_TORCH_KEYRING/_KEYS)

    def with_(self, **changes: object) -> ServeSettings:
        return replace(self, **changes)  # type: ignore[arg-type]
