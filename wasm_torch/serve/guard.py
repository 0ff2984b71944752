"""Input guard pieces that run before any compute: bearer auth, per-client token buckets and a
running-statistics anomaly score. (Body size, JSON strictness and spec checks live in the app
and `protocol.py`.)

Clients are identified by a hash of their whole bearer token (with auth on) or by their address:
two tenants whose tokens share a prefix are two clients. The anomaly baseline learns only from
requests that were answered 200, and no client may contribute more than a fixed share of it, so
a burst of crafted (or later rejected) requests cannot define "normal" for everyone else.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.errors import RateLimited, Unauthorized


def token_id(token: str) -> str:
    """A client id for a bearer token: a hash of the WHOLE token (never a prefix: tenants whose
    tokens share a prefix must not share a rate-limit bucket), short enough for logs."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:24]


def check_bearer(header: str | None, tokens: Iterable[str]) -> str:
    """Return the matching token's client id; raise Unauthorized. Constant-time comparison."""
    if not header or not header.startswith("Bearer "):
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    given = header[len("Bearer ") :].strip().encode()
    for token in tokens:
        if hmac.compare_digest(given, token.encode()):
            return token_id(token)
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
    """Mean/variance per feature, merged a batch at a time (Chan et al.'s parallel Welford)."""

    def __init__(self, width: int) -> None:
        self.n = 0
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)

    def update(self, rows: np.ndarray) -> None:
        k = rows.shape[0]
        if k == 0:
            return
        mean_b = rows.mean(axis=0)
        m2_b = ((rows - mean_b) ** 2).sum(axis=0)
        n = self.n + k
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (k / n)
        self.m2 = self.m2 + m2_b + delta * delta * (self.n * k / n)
        self.n = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(1, self.n - 1))


@dataclass
class Observation:
    """One request's features and score, kept until we know whether the request was accepted."""

    score: float
    rows: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return max((r.shape[0] for r in self.rows.values()), default=0)


class AnomalyScorer:
    """Score = root-mean-square per-feature z-score of a request against running statistics.

    Features are the flattened trailing dims of each input when their size is fixed (one row per
    batch element); otherwise a summary (mean, std, min, max) of the whole tensor. `observe` scores
    without learning; the app calls `learn` only once the request was answered 200, so requests
    that are rejected later (by the score, the model, or a limit) never shape the baseline.

    Bounded influence: a client's learned rows may not exceed `client_share` of all learned rows
    (or `client_share * warmup` while the baseline is young). Warming up therefore needs rows from
    at least 1 / client_share distinct clients; until then the score stays 0 (nothing is
    rejected) and `describe()` says so. This bounds one identity, not many: an attacker holding
    several tokens or addresses holds several shares. Heuristic: not adversarial robustness.
    """

    def __init__(
        self,
        warmup: int = 32,
        max_features: int = 65536,
        client_share: float = 0.25,
        max_clients: int = 10_000,
    ) -> None:
        if not 0 < client_share <= 1:
            raise ValueError(f"client_share must be in (0, 1], got {client_share}")
        self.warmup, self.max_features, self.client_share = warmup, max_features, client_share
        self.max_clients = max_clients
        self._stats: dict[str, RunningStats] = {}
        self._learned = 0  # rows learned, over all clients
        self._by_client: OrderedDict[str, int] = OrderedDict()  # rows learned per client (LRU)
        self._refused = 0  # rows not learned because their client was over its share
        self._lock = threading.Lock()

    def _rows(self, arr: np.ndarray) -> np.ndarray:
        a = arr.astype(np.float64)
        if a.ndim >= 2 and math.prod(a.shape[1:]) <= self.max_features:
            return a.reshape(a.shape[0], -1)
        flat = a.ravel()
        if flat.size == 0:
            return np.zeros((1, 4))
        return np.array([[flat.mean(), flat.std(), flat.min(), flat.max()]])

    def observe(self, inputs: Mapping[str, np.ndarray]) -> Observation:
        """Score a request (0 while warming up). Learns nothing."""
        rows_by_key = {}
        scores = []
        for name, arr in inputs.items():
            rows = self._rows(arr)
            rows_by_key[f"{name}:{rows.shape[1]}"] = rows
        with self._lock:
            for key, rows in rows_by_key.items():
                st = self._stats.get(key)
                if st is not None and st.n >= self.warmup:
                    z = (rows - st.mean) / np.maximum(st.std, 1e-3 * (1 + np.abs(st.mean)))
                    scores.append(float(np.sqrt(np.mean(z * z, axis=1)).max()))
        return Observation(max(scores, default=0.0), rows_by_key)

    def learn(self, obs: Observation, client: str) -> int:
        """Fold an accepted request into the baseline, within the client's share. Returns the
        number of rows learned (0 when the client already holds its share)."""
        with self._lock:
            have = self._by_client.get(client, 0)
            cap = max(math.ceil(self.client_share * self.warmup), int(self.client_share * self._learned))
            room = max(0, cap - have)
            take = min(room, obs.count)
            self._refused += obs.count - take
            if take == 0:
                return 0
            for key, rows in obs.rows.items():
                self._stats.setdefault(key, RunningStats(rows.shape[1])).update(rows[:take])
            self._learned += take
            self._by_client[client] = have + take
            self._by_client.move_to_end(client)
            while len(self._by_client) > self.max_clients:  # forgetting a client frees no share of
                self._by_client.popitem(last=False)  # the baseline: it only bounds memory
            return take

    def score(self, inputs: Mapping[str, np.ndarray], client: str = "local") -> float:
        """Observe and learn at once (for callers with no later accept/reject step)."""
        obs = self.observe(inputs)
        self.learn(obs, client)
        return obs.score

    def describe(self) -> dict[str, Any]:
        with self._lock:
            warm = bool(self._stats) and all(st.n >= self.warmup for st in self._stats.values())
            return {
                "warm": warm,
                "learned_rows": self._learned,
                "warmup_rows": self.warmup,
                "clients": len(self._by_client),
                "client_share": self.client_share,
                "rows_over_share": self._refused,
            }
