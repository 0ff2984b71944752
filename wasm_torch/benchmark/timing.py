"""The one timing helper the benchmarks share: median of repeated calls after a warm-up.

Clock: "wall" (time.perf_counter — what a user waits) or "cpu" (time.thread_time — this thread's CPU
time, steadier on a shared machine but blind to waiting). Every figure we publish says which.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, Literal

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def median_ms(fn: Callable[[], Any], repeat: int, clock: Literal["wall", "cpu"] = "wall", warmup: int = 1) -> float:
    now = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = now()
        fn()
        ts.append((now() - t0) * 1e3)
    return statistics.median(ts)
