"""The pool of one model: replicas behind a balancing policy, with retries, a result cache, a
watchdog, and the actions the self-healing orchestrator takes.

Guarantee: every submitted request gets exactly one answer, a result or a clear error.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np

from wasm_torch.serve.balancing import make_policy
from wasm_torch.serve.batching import Job, batch_symbol, signature
from wasm_torch.serve.cache import ResultCache, input_digest
from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.errors import RequestTimeout, Unavailable, retryable
from wasm_torch.serve.metrics import Metrics
from wasm_torch.serve.replica import Replica
from wasm_torch.serve.settings import ServeSettings

Factory = Callable[[], Any]


class ModelPool:
    def __init__(
        self,
        name: str,
        factory: Factory,
        settings: ServeSettings | None = None,
        metrics: Metrics | None = None,
        clock: Clock = monotonic,
        rng: random.Random | None = None,
        first_instance: Any = None,
    ) -> None:
        self.name, self.factory = name, factory
        self.settings = settings = settings or ServeSettings()
        self.metrics = metrics or Metrics()
        self.clock = clock
        first = first_instance if first_instance is not None else factory()
        self.inputs, self.outputs = list(first.inputs), list(first.outputs)
        self.batchable = batch_symbol(self.inputs, self.outputs) is not None
        self.policy = make_policy(settings.balancer, rng)
        self.cache = ResultCache(settings.cache_size)
        self.safe_mode = False
        self.max_retries = settings.max_retries
        self.replicas = [
            Replica(
                i,
                name,
                factory,
                settings,
                self.metrics,
                self._reroute,
                self.batchable,
                clock,
                instance=first if i == 0 else None,
            )
            for i in range(max(1, settings.replicas))
        ]
        for r in self.replicas:
            r.start()
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name=f"wt-{name}-watchdog")
        self._watchdog.start()

    # --- state -----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return not self._closed.is_set() and any(r.available for r in self.replicas)

    def describe(self) -> dict[str, Any]:
        return {
            "batchable": self.batchable,
            "safe_mode": self.safe_mode,
            "cache": {
                "size": len(self.cache),
                "hits": self.cache.hits,
                "misses": self.cache.misses,
                "hit_rate": self.cache.hit_rate,
            },
            "replicas": [
                {
                    "id": r.rid,
                    "alive": r.alive,
                    "isolated": r.isolated,
                    "broken": r.broken is not None,
                    "circuit": r.breaker.state.name,
                    "outstanding": r.stats.outstanding,
                    "max_batch": r.max_batch,
                    "restarts": r.restarts,
                    "ewma_ms": round(r.stats.ewma_s * 1e3, 3),
                    "memory_bytes": r.memory_bytes,
                }
                for r in self.replicas
            ],
        }

    # --- requests -------------------------------------------------------------------------
    def submit(
        self, inputs: Mapping[str, np.ndarray], key: bytes | None = None
    ) -> Future[dict[str, np.ndarray]]:
        if self._closed.is_set():
            raise Unavailable(f"model {self.name!r} is shutting down")
        inputs = dict(inputs)
        rows = int(inputs[self.inputs[0].name].shape[0]) if self.batchable else 1
        job = Job(inputs, rows, signature(inputs) if self.batchable else None, self.clock())
        if self.cache.enabled:
            digest = input_digest(inputs)
            hit = self.cache.get(digest)
            self.metrics.cache.labels(self.name, "hit" if hit is not None else "miss").inc()
            self.metrics.cache_hit_ratio.labels(self.name).set(self.cache.hit_rate)
            if hit is not None:
                job.resolve(hit)
                return job.future
            job.future.add_done_callback(lambda f: self._remember(digest, f))
        if key is None and self.settings.balancer == "weighted":
            key = input_digest(inputs)  # affinity: the same input goes to the same replica
        job.meta["key"] = key
        self._dispatch(job)
        return job.future

    def infer(self, inputs: Mapping[str, np.ndarray], timeout: float | None = None) -> dict[str, np.ndarray]:
        """Blocking call (from any thread but a worker's)."""
        fut = self.submit(inputs)
        try:
            return fut.result(timeout if timeout is not None else self.settings.request_timeout_s)
        except TimeoutError:
            fut.cancel()
            raise RequestTimeout(f"no answer from {self.name!r} within the request timeout") from None

    async def ainfer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        fut = self.submit(inputs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.settings.request_timeout_s)
        except TimeoutError:
            fut.cancel()
            raise RequestTimeout(
                f"no answer from {self.name!r} within {self.settings.request_timeout_s:g} s"
            ) from None

    def _remember(self, digest: bytes, fut: Future[dict[str, np.ndarray]]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.cache.put(digest, fut.result())

    def _dispatch(self, job: Job) -> None:
        candidates = [r for r in self.replicas if r.available and r.breaker.would_allow()]
        fresh = [r.stats for r in candidates if r.rid not in job.tried]
        tried = [r.stats for r in candidates if r.rid in job.tried]
        key = job.meta.get("key")
        for stats in [*self.policy.rank(fresh, key), *self.policy.rank(tried, key)]:
            r = self.replicas[stats.rid]
            if r.queue_len() >= r.max_queue or not r.breaker.allow():
                continue
            if r.submit(job):
                return
            r.breaker.release()
        why = "no replica is available" if not candidates else "every replica is busy or its circuit is open"
        job.fail(Unavailable(f"model {self.name!r}: {why}; retry later"))

    def _reroute(self, job: Job, exc: BaseException) -> None:
        if (
            retryable(exc)
            and not self.safe_mode
            and job.attempts < self.max_retries
            and not job.done
            and not self._closed.is_set()
        ):
            job.attempts += 1
            self.metrics.retries.labels(self.name).inc()
            self._dispatch(job)
            return
        job.fail(exc)

    # --- watchdog ---------------------------------------------------------------------------
    def _watch(self) -> None:
        period = min(0.05, self.settings.hang_timeout_s / 4)
        while not self._closed.wait(period):
            self.check()

    def check(self) -> None:
        """Replace dead/hung workers and settle their jobs; refresh per-replica gauges."""
        for r in self.replicas:
            for job, exc in r.check():
                self._reroute(job, exc)
        self.refresh_gauges()

    def replica_metrics(self) -> dict[str, str]:
        return {}  # in process: the replicas report into the app's own registry

    def refresh_gauges(self) -> None:
        for r in self.replicas:
            labels = (self.name, str(r.rid))
            self.metrics.circuit.labels(*labels).set(int(r.breaker.state))
            self.metrics.healthy.labels(*labels).set(int(r.available and r.breaker.would_allow()))
            self.metrics.outstanding.labels(*labels).set(r.stats.outstanding)

    # --- healing actions (each really changes how the pool runs) ----------------------------
    def clear_caches(self) -> None:
        self.cache.clear()

    def reduce_batch(self, rid: int) -> int:
        r = self.replicas[rid]
        r.max_batch = max(1, r.max_batch // 2)
        return r.max_batch

    def restart(self, rid: int, reason: str = "healing") -> None:
        self.replicas[rid].request_restart(reason)

    def isolate(self, rid: int) -> bool:
        """Take a replica out of rotation if at least one other replica keeps serving."""
        r = self.replicas[rid]
        if r.isolated or not any(o.available for o in self.replicas if o is not r):
            return False
        r.isolated = True
        r.breaker.force_open()
        for job in r.drain():
            self._dispatch(job)
        return True

    def rejoin(self, rid: int) -> None:
        r = self.replicas[rid]
        r.request_restart("rejoin")
        r.max_batch = 1 if self.safe_mode else self.settings.max_batch_size
        r.breaker.reset()
        r.isolated = False

    def restore(self, rid: int) -> None:
        if not self.safe_mode:
            self.replicas[rid].max_batch = self.settings.max_batch_size

    def enter_safe_mode(self) -> None:
        """Batch 1, short queues (shed load early with 503 + Retry-After), no retries."""
        self.safe_mode = True
        for r in self.replicas:
            r.max_batch = 1
            r.max_queue = max(1, self.settings.max_queue // 8)
        self.metrics.safe_mode.labels(self.name).set(1)

    def exit_safe_mode(self) -> None:
        self.safe_mode = False
        for r in self.replicas:
            r.max_batch = self.settings.max_batch_size
            r.max_queue = self.settings.max_queue
        self.metrics.safe_mode.labels(self.name).set(0)

    # --- shutdown -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for r in self.replicas:
            for job in r.stop():
                job.fail(Unavailable(f"model {self.name!r} is shutting down"))
        self._watchdog.join(timeout=1.0)
