"""Injectable clocks: real code takes `clock: Callable[[], float]`; tests pass a FakeClock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
monotonic: Clock = time.monotonic


class FakeClock:
    """A manually advanced clock (seconds). Thread-safe; never goes backwards."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds
            return self._now
