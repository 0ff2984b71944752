"""One replica: a worker thread owning one wasm instance (one wasmtime Store), its own queue,
dynamic batching, a circuit breaker and the load statistics the balancer reads.

A replica never decides a request's fate on its own when it fails for replica reasons: it hands
the job back to the pool (`reroute`), which retries elsewhere or answers with a clear error.
A worker that dies or hangs is detected by the pool's watchdog (`Replica.check`), which replaces
the thread and instance and hands back every job the worker held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from wasm_torch.errors import ExecutionError, TrapError
from wasm_torch.serve.balancing import LoadStats
from wasm_torch.serve.batching import Job, concat, split
from wasm_torch.serve.breaker import CircuitBreaker
from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.errors import ReplicaFailure, ReplicaHung, replica_fault
from wasm_torch.serve.metrics import Metrics
from wasm_torch.serve.settings import ServeSettings

log = logging.getLogger("wasm_torch.serve")
Reroute = Callable[[Job, BaseException], None]
_local = threading.local()


def current_replica() -> int | None:
    """Id of the replica whose worker thread is calling (None outside workers): for fault plans."""
    return getattr(_local, "rid", None)


class Replica:
    def __init__(
        self,
        rid: int,
        model: str,
        factory: Callable[[], Any],
        settings: ServeSettings,
        metrics: Metrics,
        reroute: Reroute,
        batchable: bool,
        clock: Clock = monotonic,
        instance: Any = None,
    ) -> None:
        self.rid, self.model, self.factory, self.settings = rid, model, factory, settings
        self.metrics, self.reroute, self.batchable, self.clock = metrics, reroute, batchable, clock
        self.stats = LoadStats(rid, max_outstanding=settings.max_queue, clock=clock)
        self.breaker = CircuitBreaker(
            settings.breaker_window,
            settings.breaker_min_calls,
            settings.breaker_failure_rate,
            settings.breaker_open_s,
            settings.breaker_half_open_calls,
            clock,
        )
        self.max_batch = settings.max_batch_size
        self.max_queue = settings.max_queue
        self.isolated = False
        self.restarts = 0
        self.memory_bytes = 0
        self.recent: deque[tuple[float, float, bool]] = deque(maxlen=256)  # (time, latency, ok)
        self.completed = 0  # calls ever appended to `recent`
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._generation = 0
        self._inflight: list[Job] = []
        self._inflight_since: float | None = None
        self._restart_requested: str | None = None
        self._stopped = False
        self._instance = instance
        self._thread: threading.Thread | None = None
        self.death: BaseException | None = None
        self.ready_at = 0.0  # clock time the current instance became ready
        self.broken: BaseException | None = None  # the factory failed: no instance to run
        self._broken_at = 0.0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._instance is None:
            self._instance = self.factory()
        self._spawn()

    def _spawn(self) -> None:
        gen = self._generation
        self._thread = threading.Thread(
            target=self._run, args=(gen,), daemon=True, name=f"wt-{self.model}-{self.rid}-g{gen}"
        )
        self._thread.start()

    def stop(self) -> list[Job]:
        with self._cv:
            self._stopped = True
            self._generation += 1
            left = [*self._inflight, *self._queue]
            self._queue.clear()
            self._inflight = []
            self._cv.notify_all()
        return left

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped

    @property
    def available(self) -> bool:
        """Takes new requests: a worker that just died still does (the watchdog replaces it and
        the new worker runs its queue); a replica whose instance cannot be rebuilt does not."""
        return not self._stopped and not self.isolated and self.broken is None

    def queue_len(self) -> int:
        return len(self._queue)

    # --- intake ------------------------------------------------------------------------------
    def submit(self, job: Job) -> bool:
        with self._cv:
            if self._stopped or len(self._queue) >= self.max_queue:
                return False
            self._queue.append(job)
            self.stats.started()
            self._cv.notify()
        return True

    def drain(self) -> list[Job]:
        """Take every queued (not yet running) job, e.g. when the replica is isolated."""
        with self._cv:
            jobs = list(self._queue)
            self._queue.clear()
        for _ in jobs:
            self.stats.dropped()
        return jobs

    def request_restart(self, reason: str) -> None:
        """Replace the instance between batches (in the worker's own thread)."""
        with self._cv:
            self._restart_requested = reason
            self._cv.notify()

    # --- watchdog ------------------------------------------------------------------------------
    def check(self) -> list[tuple[Job, BaseException]]:
        """Called by the pool's watchdog. Replaces a dead or hung worker; returns jobs to settle."""
        with self._cv:
            if self._stopped:
                return []
            if self.broken is not None:
                if time.monotonic() - self._broken_at >= self.settings.breaker_open_s:
                    self.broken = None  # try to rebuild the instance again
                    self._generation += 1
                    self._spawn()
                return []
            dead = self._thread is not None and not self._thread.is_alive()
            since = self._inflight_since
            hung = since is not None and time.monotonic() - since > self.settings.hang_timeout_s
            if not (dead or hung):
                return []
            reason = "worker died" if dead else "worker hung"
            # A request that hung a worker alone is never retried (it may be the cause). The
            # members of a batch that hung or killed its worker are retried alone ("solo": never
            # batched again), so the culprit cannot take its batch-mates down with it a second
            # time. Retries are bounded by max_retries. Queued jobs never started: they stay
            # queued for the new worker.
            msg = f"replica {self.rid} of {self.model!r}: {reason} while running the request"
            solo_hang = hung and len(self._inflight) == 1
            out: list[tuple[Job, BaseException]] = []
            for j in self._inflight:
                j.meta["solo"] = True
                out.append((j, ReplicaHung(msg) if solo_hang else ReplicaFailure(msg)))
            for _ in out:
                self.stats.dropped()
            self.stats.observe(self.stats.failure_penalty_s)
            self._inflight = []
            self._inflight_since = None
            self._generation += 1
            self._instance = None  # the new worker builds a fresh instance in its own thread
            self.restarts += 1
            self._spawn()  # under the lock: a concurrent check() sees the new, live thread
        log.warning("%s replica %d: %s; restarted", self.model, self.rid, reason)
        self.metrics.restarts.labels(self.model, str(self.rid), reason.replace(" ", "_")).inc()
        self.breaker.record(False)
        return out

    # --- worker --------------------------------------------------------------------------------
    def _run(self, gen: int) -> None:
        _local.rid = self.rid
        try:
            self._loop(gen)
        except BaseException as exc:  # a killed worker: the watchdog recovers its jobs
            self.death = exc
            log.error("%s replica %d worker died: %r", self.model, self.rid, exc)

    def _loop(self, gen: int) -> None:
        while True:
            batch = self._take(gen)
            if batch is None:
                return
            if not batch:
                continue
            self._execute(batch, gen)
            with self._cv:
                if gen == self._generation:
                    self._inflight = []
                    self._inflight_since = None

    def _take(self, gen: int) -> list[Job] | None:
        with self._cv:
            while True:
                if gen != self._generation or self._stopped:
                    return None
                if self._restart_requested is not None or self._instance is None:
                    reason, self._restart_requested = self._restart_requested, None
                    self._cv.release()
                    try:
                        self._replace_instance(reason)
                        failed = None
                    except Exception as exc:
                        failed = exc
                    finally:
                        self._cv.acquire()
                    if failed is not None:
                        self._give_up(failed)
                        return None
                    continue
                while self._queue and self._queue[0].done:  # cancelled or answered elsewhere
                    self._queue.popleft()
                    self.stats.dropped()
                    self.breaker.release()
                if self._queue:
                    break
                self._cv.wait(0.1)
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            limit = self.max_batch if self.batchable and not first.meta.get("solo") else 1
            end = time.monotonic() + self.settings.max_queue_delay_s
            while rows < limit:
                for job in list(self._queue):
                    if (
                        job.sig == first.sig
                        and rows + job.rows <= limit
                        and not job.done
                        and not job.meta.get("solo")
                    ):
                        self._queue.remove(job)
                        batch.append(job)
                        rows += job.rows
                left = end - time.monotonic()
                if rows >= limit or left <= 0 or self._stopped or gen != self._generation:
                    break
                self._cv.wait(left)
            self._inflight = batch
            self._inflight_since = time.monotonic()
            return batch

    def _give_up(self, exc: BaseException) -> None:
        """The instance cannot be rebuilt (lock held): hand every queued job back to the pool."""
        log.error("%s replica %d: cannot create an instance: %s", self.model, self.rid, exc)
        self.broken, self._broken_at = exc, time.monotonic()
        jobs = list(self._queue)
        self._queue.clear()
        err = ReplicaFailure(f"replica {self.rid} of {self.model!r} cannot load its model: {exc}")
        for job in jobs:
            self.stats.dropped()
            threading.Thread(target=self.reroute, args=(job, err), daemon=True).start()

    def _replace_instance(self, reason: str | None) -> None:
        old, self._instance = self._instance, None
        del old
        self._instance = self.factory()
        self.ready_at = self.clock()
        if reason is not None:
            self.restarts += 1
            self.metrics.restarts.labels(self.model, str(self.rid), reason).inc()

    def _execute(self, batch: list[Job], gen: int) -> None:
        now = self.clock()
        for job in batch:
            job.started = now
            job.tried.add(self.rid)
            self.metrics.queue_time.labels(self.model).observe(max(0.0, now - job.enqueued))
        self.metrics.batch_size.labels(self.model).observe(len(batch))
        if self._call(batch, gen) or len(batch) == 1:
            return
        for job in batch:  # the batch failed: rerun each request alone to find the culprit
            if gen == self._generation:
                self._call([job], gen)

    def _call(self, batch: list[Job], gen: int) -> bool:
        """Run one batch; True if it produced results (or we were replaced meanwhile)."""
        t0 = time.perf_counter()
        try:
            inputs = batch[0].inputs if len(batch) == 1 else concat([j.inputs for j in batch])
            outputs = self._instance.run(inputs)
        except Exception as exc:  # every failure is classified in _failed
            if gen != self._generation:
                return True
            if len(batch) == 1:
                self._failed(batch[0], exc, time.perf_counter() - t0)
            return False
        elapsed = time.perf_counter() - t0
        if gen != self._generation:
            return True  # we were declared hung and replaced; our jobs were settled already
        self.metrics.compute_time.labels(self.model).observe(elapsed)
        parts = [outputs] if len(batch) == 1 else split(outputs, [j.rows for j in batch])
        for job, part in zip(batch, parts, strict=True):
            job.resolve(part)
            self._finish(elapsed, True)
        self._sample_memory()
        return True

    def _failed(self, job: Job, exc: Exception, elapsed: float) -> None:
        """A request that failed alone. Whose fault decides everything: a client fault (bad input,
        an out-of-range index even though it trapped, a request over its sandbox budget) is
        answered as it is and leaves the replica untouched — its breaker, its statistics and its
        instance (the trap left the instance usable: the runtime resets it after every trap). A
        replica fault counts against the breaker and replaces the instance."""
        if not isinstance(exc, ExecutionError):
            log.exception("%s replica %d: unexpected error", self.model, self.rid, exc_info=exc)
            exc = ReplicaFailure(f"replica {self.rid} failed: {type(exc).__name__}")
        blame = replica_fault(exc)
        self._finish(elapsed, not blame)
        if blame:
            self.request_restart("trap" if isinstance(exc, TrapError) else "failure")
        self.reroute(job, exc)

    def _finish(self, latency: float, ok: bool) -> None:
        """Client faults count as ok here: they say nothing about the replica's health."""
        self.stats.finished(latency, ok)
        self.recent.append((self.clock(), latency, ok))
        self.completed += 1
        self.breaker.record(ok)

    def _sample_memory(self) -> None:
        try:
            self.memory_bytes = int(self._instance.stats().get("memory_bytes", 0))
        except Exception:  # stats are best effort
            self.memory_bytes = 0
