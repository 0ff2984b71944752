"""A Ray Serve request router that picks replicas with our balancing policies (`balancing.py`).

Ray Serve's public router API (`ray.serve.request_router.RequestRouter`, alpha since Ray 2.47,
configured per deployment with `RequestRouterConfig` since 2.48) asks one question per routing
attempt: `choose_replicas(candidates, pending_request) -> ranks`. Ray then tries the ranks in
order and, *within* a rank, takes the replica with the shortest queue that accepts. So that our
policy, not Ray's queue-length tie-break, decides, every rank here holds exactly one replica:
the policy's ranking, most preferred first. A replica that refuses (its `max_ongoing_requests`
is reached) makes Ray fall through to the next rank.

What the policies read is kept per router (one per deployment handle, i.e. per ingress process,
the way Finagle/Linkerd clients each balance on their own view): outstanding requests counted
from `on_request_routed` to `on_request_completed`, and a peak-EWMA of the latency between the
two. Replicas that report themselves unhealthy through Ray's routing stats
(`record_routing_stats` on the deployment, `RunningReplica.routing_stats` here) are ranked
after every healthy one until Ray's health check replaces them. Only `infer` calls are ranked by
the policy and feed its statistics; control calls (`describe`, `spec`) go round robin, so the
ingress's periodic probe reaches every replica.

Every router registers itself in this process (`router_snapshot`) so the ingress can show its
choices at `/v2/models/{name}/stats`.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import weakref
from collections import Counter
from typing import Any

import wasm_torch.serve.ray.env  # noqa: F401  (before `import ray`: see serve/ray/env.py)

# isort: split
from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from wasm_torch.serve.balancing import LoadStats, make_policy
from wasm_torch.serve.cache import input_digest

MEASURED_METHOD = "infer"
_ROUTERS: weakref.WeakValueDictionary[tuple[str, str], PolicyRouter] = weakref.WeakValueDictionary()
_ROUTERS_LOCK = threading.Lock()


def register(router: PolicyRouter) -> None:
    with _ROUTERS_LOCK:
        _ROUTERS[(router.app_name, router.model)] = router


def router_snapshot(app_name: str, model: str) -> dict[str, Any] | None:
    """What the router of `model` in this process has done (None until a handle here made one)."""
    with _ROUTERS_LOCK:
        router = _ROUTERS.get((app_name, model))
    return None if router is None else router.snapshot()


class PolicyRanking:
    """The router's state and decisions, without Ray: what a `balancing.Policy` reads (outstanding
    requests and a peak-EWMA latency per replica, from "routed" to "completed"), the ranking, and
    the record shown at `/v2/models/{name}/stats`. Replicas are anything with a hashable
    `replica_id` whose `unique_id` names it, and a `routing_stats` dict (Ray's `RunningReplica`)."""

    def __init__(self, model: str, policy: str = "peak_ewma", seed: int | None = None, tau_s: float = 10.0) -> None:
        self.model = model
        self.policy_name = policy
        self.policy = make_policy(policy, random.Random(seed))
        self.tau_s = tau_s
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._turn = itertools.count()  # round robin for control calls
        self._stats: dict[Any, LoadStats] = {}
        self._started: dict[str, tuple[Any, float, bool]] = {}  # request id -> (replica id, t0, measured)
        self.routed: Counter[str] = Counter()  # replica unique id -> infer requests routed to it
        self.calls: Counter[str] = Counter()  # replica unique id -> every call routed to it
        self.avoided = 0  # routing decisions that ranked a self-reported unhealthy replica last

    def _stats_for(self, replica_id: Any) -> LoadStats:
        stats = self._stats.get(replica_id)
        if stats is None:
            stats = self._stats[replica_id] = LoadStats(next(self._ids), tau_s=self.tau_s)
        return stats

    def rank(self, candidates: list[Any], method: str, args: Any = ()) -> list[Any]:
        """Candidates, most preferred first: infer calls by the policy (self-reported unhealthy
        replicas last), control calls round robin."""
        if method != MEASURED_METHOD:
            with self._lock:
                start = next(self._turn) % max(1, len(candidates))
            return [*candidates[start:], *candidates[:start]]
        with self._lock:
            by_rid = {}
            healthy: list[LoadStats] = []
            sick: list[LoadStats] = []
            for replica in candidates:
                stats = self._stats_for(replica.replica_id)
                by_rid[stats.rid] = replica
                ok = bool((replica.routing_stats or {}).get("healthy", True))
                (healthy if ok else sick).append(stats)
            if sick and healthy:
                self.avoided += 1
            key = self._affinity_key(args)
            ranked = [*self.policy.rank(healthy, key), *self.policy.rank(sick, key)]
        return [by_rid[s.rid] for s in ranked]

    def _affinity_key(self, args: Any) -> bytes | None:
        """The input digest, for the `weighted` policy's affinity term only (hashing costs)."""
        if self.policy_name != "weighted" or not args:
            return None
        return input_digest(args[0]) if isinstance(args[0], dict) else None

    def routed_to(self, replica_id: Any, method: str, request_id: str) -> None:
        measured = method == MEASURED_METHOD
        with self._lock:
            self.calls[replica_id.unique_id] += 1
            if measured:
                self.routed[replica_id.unique_id] += 1
                self._stats_for(replica_id).started()
            self._started[request_id] = (replica_id, time.monotonic(), measured)

    def completed(self, request_id: str) -> None:
        with self._lock:
            started = self._started.pop(request_id, None)
            if started is None or not started[2]:
                return  # refused by the replica (never routed), or a control call
            stats = self._stats.get(started[0])
            if stats is not None:
                stats.finished(time.monotonic() - started[1])

    def died(self, replica_id: Any) -> None:
        with self._lock:
            self._stats.pop(replica_id, None)

    def snapshot(self, live: dict[str, Any], router: str = "PolicyRouter") -> dict[str, Any]:
        """The record; `live`: unique id -> the live replica (with its `routing_stats`)."""
        with self._lock:
            stats = {rid.unique_id: s for rid, s in self._stats.items()}
            ids = sorted(set(live) | set(self.calls))
            return {
                "router": router,
                "policy": self.policy_name,
                "avoided_unhealthy": self.avoided,
                "replicas": [
                    {
                        "id": uid,
                        "live": uid in live,
                        "reported_healthy": (
                            bool((live[uid].routing_stats or {}).get("healthy", True)) if uid in live else None
                        ),
                        "routed": self.routed[uid],
                        "calls": self.calls[uid],
                        "outstanding": stats[uid].outstanding if uid in stats else 0,
                        "ewma_ms": round(stats[uid].ewma_s * 1e3, 3) if uid in stats else None,
                    }
                    for uid in ids
                ],
            }


class PolicyRouter(RequestRouter):
    """`RequestRouter` whose ranking comes from a `balancing.Policy` (peak_ewma, least_outstanding,
    p2c, round_robin or weighted), chosen per deployment with `request_router_kwargs`; the
    decisions are `PolicyRanking`'s (tested without Ray)."""

    def initialize_state(  # type: ignore[override]
        self,
        model: str = "",
        policy: str = "peak_ewma",
        seed: int | None = None,
        tau_s: float = 10.0,
        **_: Any,
    ) -> None:
        self.model = model
        self.ranking = PolicyRanking(model, policy, seed, tau_s)
        # Ray pickles this class *by value* (RequestRouterConfig registers its module so), so the
        # unpickled copy has its own module globals: register through the real, imported module.
        from wasm_torch.serve.ray import router as home

        home.register(self)

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        method = pending_request.metadata.call_method if pending_request is not None else MEASURED_METHOD
        args = pending_request.args if pending_request is not None else ()
        return [[r] for r in self.ranking.rank(candidate_replicas, method, args)]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        meta = pending_request.metadata
        self.ranking.routed_to(replica_id, meta.call_method, meta.internal_request_id)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        self.ranking.completed(internal_request_id)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.ranking.died(replica_id)

    def snapshot(self) -> dict[str, Any]:
        live = {r.replica_id.unique_id: r for r in self.curr_replicas.values()}
        return self.ranking.snapshot(live, type(self).__name__)
