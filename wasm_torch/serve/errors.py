"""Serving errors and the one table that maps every exception to an HTTP status.

Client faults are 4xx with a message that says what to fix; replica faults are 5xx. A bad
request never produces a 500: only a trap inside a module or a bug of ours does.

Whose fault is it? `client_fault` is asked first: an error the request caused (bad input, an
out-of-range index — which is also a trap —, a request over its sandbox budget) never counts
against a replica, never opens its circuit breaker and never restarts its instance; only then
does `replica_fault` look at what is left (a trap that is not the request's, a dead or hung
worker).
"""

from __future__ import annotations

from wasm_torch.errors import (
    ArtifactError,
    DeadlineExceeded,
    ExecutionError,
    FuelExhausted,
    IndexOutOfRange,
    InputError,
    LimitError,
    MemoryLimitError,
    TrapError,
    WasmTorchError,
)


class ServeError(WasmTorchError):
    """Root of errors raised by the serving layer itself."""


class MissingDependency(ServeError, ImportError):
    """An optional extra is not installed (e.g. Ray Serve for `--ray`); the message says what to install."""


class RequestError(ServeError, ValueError):
    """Malformed request: bad JSON, wrong shape/datatype, non-finite numbers, ..."""


class PayloadTooLarge(RequestError):
    pass


class ResponseTooLarge(RequestError):
    """The answer would be larger than `max_response_bytes`: ask for fewer rows or outputs."""


class ReadTimeout(RequestError):
    """The request (head and body) did not arrive within `read_timeout_s`."""


class ClientGone(RequestError):
    """The client closed the connection before sending its whole body; nobody reads the answer.
    Counted as 499 ("client closed request", as nginx does), never as a server error."""


class UnsupportedEncoding(RequestError):
    """A Content-Encoding other than identity, gzip or deflate (415)."""


class Unauthorized(ServeError):
    pass


class ModelControlOff(ServeError):
    """Load/unload asked of a server whose model control is off (`--model-control none`) or that
    cannot load models (Ray Serve): the server's configuration says no (403)."""


class LoadRefused(ServeError):
    """A model (re)load that failed: the artifact is malformed, tampered, unsigned under the
    signing policy, ... (422). What was served before keeps serving."""


class RateLimited(ServeError):
    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AnomalousInput(RequestError):
    """The input anomaly score is above the configured rejection threshold."""


class ModelNotFound(ServeError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "model not found"


class ModelRefused(ServeError):
    """The model's artifact failed its integrity checks at load (unsigned, tampered, untrusted key,
    missing decryption key); the server serves the others. Not retryable: fix the artifact."""


class Unavailable(ServeError):
    """No replica can take the request now (all open, isolated, or queues full)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeout(ServeError):
    """The request got no result within the pool's request timeout."""


class NonFiniteOutput(ServeError):
    """The model returned NaN/Inf, which JSON cannot carry (we never emit non-standard JSON)."""


class ReplicaFailure(ServeError):
    """A replica died or hung while holding the request; safe to retry elsewhere."""


class ReplicaHung(ReplicaFailure):
    """The replica hung while running this request; never retried (the request may be the cause)."""


# (exception class, HTTP status, error kind for metrics). First match wins: order subclasses first.
STATUS_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (PayloadTooLarge, 413, "payload_too_large"),
    (ResponseTooLarge, 422, "response_too_large"),
    (ReadTimeout, 408, "read_timeout"),
    (ClientGone, 499, "client_disconnected"),
    (AnomalousInput, 422, "anomalous_input"),
    (UnsupportedEncoding, 415, "unsupported_encoding"),
    (RequestError, 400, "bad_request"),
    (IndexOutOfRange, 400, "index_out_of_range"),  # a trap too, but the caller's data is what is wrong
    (InputError, 400, "bad_input"),
    (Unauthorized, 401, "unauthorized"),
    (ModelNotFound, 404, "model_not_found"),
    (ModelRefused, 503, "model_refused"),
    (ModelControlOff, 403, "model_control_off"),
    (LoadRefused, 422, "load_refused"),
    (RateLimited, 429, "rate_limited"),
    (DeadlineExceeded, 504, "deadline_exceeded"),
    (FuelExhausted, 422, "fuel_exhausted"),
    (MemoryLimitError, 422, "memory_limit"),
    (LimitError, 422, "limit"),
    (NonFiniteOutput, 422, "non_finite_output"),
    (RequestTimeout, 504, "timeout"),
    (Unavailable, 503, "unavailable"),
    (ReplicaHung, 503, "replica_hung"),
    (ReplicaFailure, 503, "replica_failure"),
    (TrapError, 500, "trap"),
    (ArtifactError, 500, "artifact"),
    (ExecutionError, 500, "execution"),
)

# Failures the request itself caused. Checked FIRST: IndexOutOfRange is a TrapError too, and it
# must never charge the replica (else a client sending bad token ids takes a model offline).
CLIENT_FAULTS: tuple[type[BaseException], ...] = (InputError, LimitError, RequestError)
# Failures caused by the replica rather than the request: they count against the replica's
# circuit breaker, restart its instance, and may be retried elsewhere (inference is pure).
REPLICA_FAULTS: tuple[type[BaseException], ...] = (ReplicaFailure, TrapError)
RETRYABLE: tuple[type[BaseException], ...] = (ReplicaFailure,)


def client_fault(exc: BaseException) -> bool:
    """The request caused this (bad data, over its own budget): say so to the client, blame no one."""
    return isinstance(exc, CLIENT_FAULTS)


def replica_fault(exc: BaseException) -> bool:
    """The replica caused this: count it against the replica's breaker and restart its instance."""
    return not client_fault(exc) and isinstance(exc, REPLICA_FAULTS)


def retryable(exc: BaseException) -> bool:
    return replica_fault(exc) and isinstance(exc, RETRYABLE) and not isinstance(exc, ReplicaHung)


def classify(exc: BaseException) -> tuple[int, str]:
    """HTTP status and error kind for any exception (500/"internal" for the unexpected)."""
    for cls, status, kind in STATUS_TABLE:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal"


def public_message(exc: BaseException) -> str:
    _, kind = classify(exc)
    if kind == "internal":
        return "internal server error"  # never leak internals of an unexpected exception
    return str(exc) or kind.replace("_", " ")
