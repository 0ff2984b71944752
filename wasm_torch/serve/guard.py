"""Input guard pieces that run before any compute: bearer auth, per-client token buckets and a
running-statistics anomaly score. (Body size, JSON strictness and spec checks live in the app
and `protocol.py`.)"""

from __future__ import annotations

import hmac
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np

from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.errors import RateLimited, Unauthorized


def check_bearer(header: str | None, tokens: Iterable[str]) -> str:
    """Return the matching token's short id; raise Unauthorized. Constant-time comparison."""
    if not header or not header.startswith("Bearer "):
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    given = header[len("Bearer ") :].strip().encode()
    for token in tokens:
        if hmac.compare_digest(given, token.encode()):
            return "token:" + token[:4]
    raise Unauthorized("invalid bearer token")


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def take(self, now: float, cost: float = 1.0) -> float:
        """0.0 if allowed, else seconds until `cost` tokens will be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """Per-client token buckets, bounded in number (least recently seen clients are forgotten)."""

    def __init__(self, rate: float, burst: int, clock: Clock = monotonic, max_clients: int = 10_000):
        self.rate, self.burst, self.clock, self.max_clients = rate, burst, clock, max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, client: str) -> None:
        if not self.enabled:
            return
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, now)
                while len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            self._buckets.move_to_end(client)
            wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(
                f"rate limit of {self.rate:g} requests/s exceeded; retry in {wait:.2f} s", retry_after_s=wait
            )


class RunningStats:
    """Welford mean/variance per feature."""

    def __init__(self, width: int) -> None:
        self.n = 0
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)

    def update(self, rows: np.ndarray) -> None:
        for row in rows:
            self.n += 1
            delta = row - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (row - self.mean)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(1, self.n - 1))


class AnomalyScorer:
    """Score = root-mean-square per-feature z-score of a request against running statistics.

    Features are the flattened trailing dims of each input when their size is fixed (one row per
    batch element); otherwise a summary (mean, std, min, max) of the whole tensor. Statistics
    learn only from requests that scored below the rejection threshold, so an attacker cannot
    drag the baseline by flooding it with rejected inputs. Heuristic: not adversarial robustness.
    """

    def __init__(self, warmup: int = 32, max_features: int = 65536) -> None:
        self.warmup, self.max_features = warmup, max_features
        self._stats: dict[str, RunningStats] = {}
        self._lock = threading.Lock()

    def _rows(self, arr: np.ndarray) -> np.ndarray:
        a = arr.astype(np.float64)
        if a.ndim >= 2 and math.prod(a.shape[1:]) <= self.max_features:
            return a.reshape(a.shape[0], -1)
        flat = a.ravel()
        if flat.size == 0:
            return np.zeros((1, 4))
        return np.array([[flat.mean(), flat.std(), flat.min(), flat.max()]])

    def score(self, inputs: Mapping[str, np.ndarray], learn_below: float | None = None) -> float:
        """Score a request (0 during warm-up), then learn from it if it scored below `learn_below`."""
        scores, rows_by_key = [], {}
        with self._lock:
            for name, arr in inputs.items():
                rows = self._rows(arr)
                key = f"{name}:{rows.shape[1]}"
                rows_by_key[key] = rows
                st = self._stats.get(key)
                if st is not None and st.n >= self.warmup:
                    z = (rows - st.mean) / np.maximum(st.std, 1e-3 * (1 + np.abs(st.mean)))
                    scores.append(float(np.sqrt(np.mean(z * z, axis=1)).max()))
            score = max(scores, default=0.0)
            if learn_below is None or score < learn_below:
                for key, rows in rows_by_key.items():
                    self._stats.setdefault(key, RunningStats(rows.shape[1])).update(rows)
        return score
