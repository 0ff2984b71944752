"""A small HTTP client over urllib (no extra dependency on nodes) with retries and backoff.

`Http.call` raises `Refused` for a 4xx answer (the message from the coordinator, never retried:
the request itself is wrong) and `Unreachable` when the peer does not answer or answers 5xx after
`attempts` tries, waiting `backoff` seconds (doubling, capped at `max_backoff`, ±25% jitter) between
them. `attempts=None` retries forever (what a node does while its coordinator restarts). An answer
over `max_bytes` (read no further) or a success that is not strict JSON is the peer's fault, as if it
had not answered: `Unreachable`, so a hostile peer costs a node bounded memory and a backoff.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import NetworkError
from .errors import Unreachable
from .wire import loads_strict

MAX_ANSWER_BYTES = 128 << 20  # above the largest artifact file (64 MB) and task (64 MB of tensors, in base64)


class Refused(NetworkError):
    """The peer answered 4xx: `status` and the peer's message."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.body = status, message, body


@dataclass
class PeerStats:
    """What a node (or a coordinator, for its gossip peers) knows about one peer."""

    requests: int = 0
    failures: int = 0
    refused: int = 0
    ewma_ms: float = 0.0
    last_ok_ms: int = 0
    last_error: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Http:
    def __init__(
        self,
        base: str,
        timeout: float = 30.0,
        attempts: int | None = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.base = base.rstrip("/")
        self.max_bytes = max_bytes
        self.timeout, self.attempts, self.backoff, self.max_backoff = timeout, attempts, backoff, max_backoff
        self.sleep = sleep
        self.stats = PeerStats()

    def call(
        self, method: str, path: str, body: Any = None, attempts: int | str | None = "default", parse: bool = True
    ) -> Any:
        tries = self.attempts if attempts == "default" else attempts
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        delay, k = self.backoff, 0
        while True:
            k += 1
            try:
                return self._once(method, path, data, parse)
            except Unreachable as e:
                if tries is not None and k >= int(tries):
                    raise
                self.stats.last_error = str(e)
                self.sleep(delay * random.uniform(0.75, 1.25))
                delay = min(self.max_backoff, delay * 2)

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self.call("POST", path, body, **kw)

    def raw(self, path: str) -> bytes:
        """GET bytes (artifact files), with the same retries."""
        return self.call("GET", path, parse=False)

    def _once(self, method: str, path: str, data: bytes | None, parse: bool = True) -> Any:
        url = self.base + path
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        t0 = time.perf_counter()
        self.stats.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                payload = r.read(self.max_bytes + 1)
                status = r.status
        except urllib.error.HTTPError as e:
            payload, status = e.read(self.max_bytes + 1), e.code
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            self.stats.failures += 1
            raise Unreachable(f"{url}: {getattr(e, 'reason', e)}") from None
        ms = (time.perf_counter() - t0) * 1e3
        if len(payload) > self.max_bytes:
            self.stats.failures += 1
            raise Unreachable(f"{url}: the answer is over {self.max_bytes:,} bytes; not read further")
        if status >= 500:
            self.stats.failures += 1
            raise Unreachable(f"{url}: HTTP {status}: {payload[:300]!r}")
        self.stats.ewma_ms = ms if not self.stats.ewma_ms else 0.8 * self.stats.ewma_ms + 0.2 * ms
        if status >= 400:
            self.stats.refused += 1
            try:
                body = loads_strict(payload, "error answer")
                msg = body.get("error", str(body)) if isinstance(body, dict) else str(body)
            except NetworkError:
                body, msg = None, payload[:300].decode("utf-8", "replace")
            raise Refused(status, msg, body)
        self.stats.last_ok_ms = int(time.time() * 1000)
        if not parse:
            return payload
        if status == 204 or not payload:
            return None
        try:
            return loads_strict(payload, f"answer from {url}")
        except NetworkError as e:
            self.stats.failures += 1
            raise Unreachable(str(e)) from None
