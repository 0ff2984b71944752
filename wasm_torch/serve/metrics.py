"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """Everything the pool, guard and healer report. Names follow Prometheus conventions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "wasm_torch_"
        self.requests = Counter(
            p + "inference_requests",
            "Inference requests by outcome: code is the HTTP status (for gRPC, the status its code maps to)",
            ["model", "code", "protocol"],
            registry=r,
        )
        self.grpc = Counter(
            p + "grpc_requests", "gRPC calls by method and gRPC status code", ["method", "code"], registry=r
        )
        self.repository = Counter(
            p + "repository_actions",
            "Model repository actions (load, reload, unload) by outcome",
            ["model", "action", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            p + "inference_request_duration_seconds",
            "End-to-end request latency",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            p + "inference_queue_duration_seconds",
            "Time queued before compute",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_time = Histogram(
            p + "inference_compute_duration_seconds",
            "Time in the wasm call",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            p + "inference_batch_size",
            "Requests per executed batch",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.errors = Counter(p + "inference_errors", "Errors by kind", ["model", "kind"], registry=r)
        self.restarts = Counter(
            p + "instance_restarts", "Wasm instance restarts", ["model", "replica", "reason"], registry=r
        )
        self.retries = Counter(p + "inference_retries", "Retries on another replica", ["model"], registry=r)
        self.cache = Counter(p + "cache_lookups", "Result cache lookups", ["model", "result"], registry=r)
        self.cache_hit_ratio = Gauge(
            p + "cache_hit_ratio", "Result cache hit ratio since start", ["model"], registry=r
        )
        self.circuit = Gauge(
            p + "circuit_state",
            "Circuit state (0 closed, 1 half-open, 2 open)",
            ["model", "replica"],
            registry=r,
        )
        self.healthy = Gauge(
            p + "replica_healthy", "1 if the replica takes traffic", ["model", "replica"], registry=r
        )
        self.outstanding = Gauge(
            p + "replica_outstanding", "Queued + running requests", ["model", "replica"], registry=r
        )
        self.rejections = Counter(
            p + "guard_rejections", "Requests rejected before compute", ["reason"], registry=r
        )
        self.anomaly = Histogram(
            p + "input_anomaly_score",
            "Input anomaly score",
            ["model"],
            buckets=(0.5, 1, 2, 3, 4, 6, 8, 12, 20, 50),
            registry=r,
        )
        self.healing = Counter(
            p + "healing_actions", "Self-healing actions taken", ["model", "action"], registry=r
        )
        self.safe_mode = Gauge(p + "safe_mode", "1 while the model runs in safe mode", ["model"], registry=r)
        self.http_rejections = Counter(
            p + "http_rejections",
            "Connections refused by the HTTP layer before the app saw a request (serve/http.py)",
            ["reason"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def merge_expositions(own: bytes, others: Iterable[tuple[Mapping[str, str], str]]) -> bytes:
    """One Prometheus text exposition from this process's and others' (say, each Ray replica's
    `/metrics`), every sample of an `other` labelled with its labels (`ray_replica="..."`).
    Families of the same name are merged into one (two HELP/TYPE lines for a name is invalid)."""
    families: dict[str, Metric] = {}
    sources = [({}, own.decode()), *others]
    for labels, text in sources:
        for fam in text_string_to_metric_families(text):
            into = families.get(fam.name)
            if into is None:
                into = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            into.samples.extend(s._replace(labels={**s.labels, **labels}) for s in fam.samples)

    class Merged:
        def collect(self) -> Iterator[Metric]:
            yield from families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())  # type: ignore[arg-type]
    return generate_latest(registry)

