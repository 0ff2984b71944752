"""A circuit breaker with resilience4j semantics and an injected clock.

CLOSED: calls pass; outcomes go into a count-based sliding window. When the window holds at
least `min_calls` outcomes and the failure rate reaches `failure_rate`, the breaker OPENs.
OPEN: calls are refused until `open_s` has passed, then the breaker is HALF_OPEN.
HALF_OPEN: at most `half_open_calls` trial calls are let through; if all succeed the breaker
CLOSEs (window cleared), any failure re-OPENs it.
"""

from __future__ import annotations

import enum
import threading
from collections import deque

from wasm_torch.serve.clock import Clock, monotonic


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        window: int = 20,
        min_calls: int = 5,
        failure_rate: float = 0.5,
        open_s: float = 5.0,
        half_open_calls: int = 2,
        clock: Clock = monotonic,
    ) -> None:
        if not (0 < failure_rate <= 1) or window < 1 or min_calls < 1 or half_open_calls < 1:
            raise ValueError("invalid circuit breaker configuration")
        self.window, self.min_calls, self.failure_rate = window, min(min_calls, window), failure_rate
        self.open_s, self.half_open_calls, self.clock = open_s, half_open_calls, clock
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = failure
        self._state = State.CLOSED
        self._opened_at = 0.0
        self._probes_out = 0  # half-open calls let through and not yet reported
        self._probes_ok = 0
        self._lock = threading.Lock()
        self.transitions: deque[tuple[float, State]] = deque(maxlen=256)

    # --- queries ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def would_allow(self) -> bool:
        """True if `allow()` would let a call through now (does not take a probe slot)."""
        with self._lock:
            self._maybe_half_open()
            if self._state is State.CLOSED:
                return True
            budget = self._probes_out + self._probes_ok < self.half_open_calls
            return self._state is State.HALF_OPEN and budget

    # --- protocol ---------------------------------------------------------------------------
    def allow(self) -> bool:
        """Ask before a call. In HALF_OPEN this takes one of the limited probe slots."""
        with self._lock:
            self._maybe_half_open()
            if self._state is State.CLOSED:
                return True
            if self._state is State.HALF_OPEN and self._probes_out + self._probes_ok < self.half_open_calls:
                self._probes_out += 1
                return True
            return False

    def record(self, success: bool) -> None:
        """Report the outcome of a call that `allow()` let through."""
        with self._lock:
            self._maybe_half_open()
            if self._state is State.HALF_OPEN:
                self._probes_out = max(0, self._probes_out - 1)
                if not success:
                    self._trip()
                    return
                self._probes_ok += 1
                if self._probes_ok >= self.half_open_calls:
                    self._set(State.CLOSED)
                    self._outcomes.clear()
                return
            if self._state is State.OPEN:
                return  # a straggler from before the trip: ignore
            self._outcomes.append(not success)
            n = len(self._outcomes)
            if n >= self.min_calls and sum(self._outcomes) / n >= self.failure_rate:
                self._trip()

    def release(self) -> None:
        """Give back a half-open probe slot whose call never ran (e.g. the request was cancelled)."""
        with self._lock:
            if self._state is State.HALF_OPEN and self._probes_out:
                self._probes_out -= 1

    def force_open(self) -> None:
        with self._lock:
            self._trip()

    def reset(self) -> None:
        with self._lock:
            self._outcomes.clear()
            self._set(State.CLOSED)

    # --- internals (lock held) ------------------------------------------------------------
    def _trip(self) -> None:
        self._opened_at = self.clock()
        self._set(State.OPEN)

    def _maybe_half_open(self) -> None:
        if self._state is State.OPEN and self.clock() - self._opened_at >= self.open_s:
            self._set(State.HALF_OPEN)

    def _set(self, state: State) -> None:
        self._state = state
        self._probes_out = self._probes_ok = 0
        self.transitions.append((self.clock(), state))
