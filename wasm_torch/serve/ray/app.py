"""Scale-out on Ray Serve: the same KServe v2 app, with one Ray deployment per model.

    app = build_ray_app("out/", num_replicas=2, policy="peak_ewma")   # a Ray Serve Application
    run("out/", port=8000)                                            # start/connect Ray, serve, wait

Architecture (docs/serving.md, "Scale-out on Ray Serve"):

    HTTP ─▶ Ray proxy ─▶ Ingress (1 replica): the FastAPI app of `app.py`, guard and all
                            │ parsed numpy inputs, through a DeploymentHandle whose request
                            │ router is `router.PolicyRouter` (our balancing policies)
                            ▼
                         model-<name> (N replicas each): a `ModelPool` of wasm instances for the
                         artifact, with its self-healing orchestrator and a `check_health`

This file holds the model replica, the builder and the runner; the ingress is `ingress.py`
(the very routes of `create_app`, so protocol, guard and error bodies are the plain server's),
the request router `router.py`. Importing this module without Ray raises `MissingDependency`
with the pip command to run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasm_torch.errors import ArtifactError
from wasm_torch.serve.balancing import POLICIES
from wasm_torch.serve.errors import MissingDependency, ServeError, Unavailable
from wasm_torch.serve.ray.env import init_ray  # before `import ray` below: see serve/ray/env.py
from wasm_torch.serve.settings import ServeSettings

MIN_RAY = (2, 60)
try:
    import ray
    from ray import serve
    from ray.serve.config import RequestRouterConfig
except ImportError as e:
    raise MissingDependency(
        "serving on Ray needs Ray Serve, which is not installed: pip install 'wasm-torch[ray]'"
    ) from e
if tuple(int(p) for p in ray.__version__.split(".")[:2]) < MIN_RAY:
    raise MissingDependency(
        f"serving on Ray needs ray[serve] >= {'.'.join(map(str, MIN_RAY))} (found {ray.__version__}): "
        "pip install -U 'wasm-torch[ray]'"
    )

from wasm_torch.serve.healing import Orchestrator  # noqa: E402  (after the dependency check)
from wasm_torch.serve.metrics import Metrics  # noqa: E402
from wasm_torch.serve.pool import ModelPool  # noqa: E402
from wasm_torch.serve.ray.ingress import Ingress  # noqa: E402
from wasm_torch.serve.ray.router import PolicyRouter  # noqa: E402
from wasm_torch.serve.registry import (  # noqa: E402
    NAME_RE,
    as_factory,
    discover,
    integrity_options,
    is_artifact,
    public_reason,
)

APP_NAME = "wasm-torch"
__all__ = ["APP_NAME", "Autoscaling", "ModelReplica", "build_ray_app", "deploy", "deployment_name", "run"]


# --- one replica of one model ---------------------------------------------------------------
class ModelReplica:
    """A Ray Serve replica: a wasm instance pool (`settings.replicas` workers) for one artifact."""

    def __init__(self, name: str, path: str, settings: ServeSettings) -> None:
        self.name = name
        self.replica = serve.get_replica_context().replica_tag
        self.metrics = Metrics()
        # the registry's factory: signature checks, encrypted weights and cascades as in `create_app`
        factory, _, _ = as_factory(Path(path), settings)
        self.pool = ModelPool(name, factory, settings, self.metrics)
        self.served = 0  # infer calls answered by this replica (results or errors)
        self.healer = Orchestrator([self.pool], self.metrics) if settings.healing else None
        if self.healer is not None:
            self.healer.start(settings.healing_interval_s)

    async def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.pool.ainfer(inputs)
        finally:
            self.served += 1

    def spec(self) -> dict[str, Any]:
        return {"inputs": self.pool.inputs, "outputs": self.pool.outputs}

    def problem(self) -> str | None:
        """Why this replica should not serve (None = healthy)."""
        if not self.pool.ready:
            return "no wasm instance of the pool is available"
        if self.pool.safe_mode:
            return "the pool is in safe mode"
        if not any(r.breaker.would_allow() for r in self.pool.replicas):
            return "every circuit breaker of the pool is open"
        return None

    def check_health(self) -> None:
        """Ray calls this every `health_check_period_s`; raising marks the replica unhealthy, and
        after 3 consecutive failures Ray kills it and starts a fresh one."""
        problem = self.problem()
        if problem is not None:
            raise Unavailable(f"replica {self.replica} of {self.name!r}: {problem}")

    def record_routing_stats(self) -> dict[str, Any]:
        """Polled by Ray every `request_routing_stats_period_s`; read by `PolicyRouter`."""
        return {"healthy": self.problem() is None, "safe_mode": self.pool.safe_mode}

    def describe(self) -> dict[str, Any]:
        """What the ingress's probe collects: state, and this replica's metrics (Prometheus text)."""
        self.pool.refresh_gauges()
        return {
            "replica": self.replica,
            "problem": self.problem(),
            "served": self.served,
            **self.pool.describe(),
            "metrics": self.metrics.render().decode(),
        }

    def enter_safe_mode(self) -> str:
        """Operator (and test) hook: what the healer's last rung does. The replica keeps serving
        (batch 1, short queues), fails its health check, and Ray replaces it."""
        self.pool.enter_safe_mode()
        return self.replica

    def __del__(self) -> None:
        healer, pool = getattr(self, "healer", None), getattr(self, "pool", None)
        if healer is not None:
            healer.stop()
        if pool is not None:
            pool.close()


# --- building and running ---------------------------------------------------------------------
@dataclass(frozen=True)
class Autoscaling:
    """Ray Serve autoscaling of one model's replicas: between `min_replicas` and `max_replicas`,
    aiming at `target_ongoing_requests` per replica (Ray's `autoscaling_config`); scale-up waits
    `upscale_delay_s` of sustained load, scale-down `downscale_delay_s` of sustained quiet."""

    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 3.0
    downscale_delay_s: float = 30.0
    look_back_period_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(f"autoscaling needs 0 <= min_replicas <= max_replicas >= 1, got {self}")
        if self.target_ongoing_requests <= 0:
            raise ValueError("autoscaling target_ongoing_requests must be > 0")

    def config(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "initial_replicas": max(1, self.min_replicas),
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
            "metrics_interval_s": min(1.0, self.look_back_period_s),
        }


def deployment_name(model: str) -> str:
    return f"model-{model}"


def _per_model(value: Any, name: str, what: str) -> Any:
    if isinstance(value, Mapping):
        if name not in value:
            raise ValueError(f"{what} has no entry for model {name!r}")
        return value[name]
    return value


def check_loads(path: Path, settings: ServeSettings) -> str | None:
    """Load the artifact once here, in the driver, exactly as a replica would (signatures, hashes,
    decryption, the module's validation). None if it loads, else why not — so a bad folder is
    listed as refused instead of failing its deployment (and with it `serve.run`)."""
    try:
        factory, _, _ = as_factory(path, settings)
        factory()
    except Exception as e:  # a folder is data: any failure refuses this model only
        return public_reason(e, path)
    return None


def _runtime_env() -> dict[str, Any]:
    """Workers must import wasm_torch: from a source tree (not installed), put it on PYTHONPATH."""
    root = str(Path(__file__).resolve().parents[2])
    if "site-packages" in root or "dist-packages" in root:
        return {}
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def build_ray_app(
    models: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    settings: ServeSettings | None = None,
    *,
    num_replicas: int | Mapping[str, int] = 2,
    policy: str | Mapping[str, str] = "peak_ewma",
    autoscaling: Autoscaling | Mapping[str, Autoscaling | None] | None = None,
    replica_cpus: float | Mapping[str, float] = 0.5,
    ingress_cpus: float = 0.25,
    max_ongoing_requests: int = 16,
    health_check_period_s: float = 2.0,
    health_check_timeout_s: float = 10.0,
    routing_stats_period_s: float = 1.0,
    probe_interval_s: float = 2.0,
    seed: int | None = None,
) -> Any:
    """A Ray Serve Application: an ingress plus one deployment per artifact folder.

    `settings` apply in every model replica (`settings.replicas` wasm workers per Ray replica,
    batching, breakers, healing, sandbox limits; a model's `model_settings` entry over them) and in
    the ingress (guard). `num_replicas`, `policy`, `autoscaling` (replaces `num_replicas` for that
    model) and `replica_cpus` may be one value or one per model name. Artifact paths must exist on
    every node that runs a replica of that model (one machine, or a shared file system).

    Every artifact is loaded once in the driver first (`check_loads`): one that fails (malformed,
    tampered, unsigned under `require_signature`, ...) gets no deployment and is listed by the
    ingress as refused, with the reason, while the others are served.
    """
    settings = settings or ServeSettings(replicas=1)
    sources = discover(models) if isinstance(models, str | os.PathLike) else dict(models)
    integrity_options(settings)  # a bad --trust/--keyring stops here: it concerns every model
    env = _runtime_env()
    handles: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for i, (name, source) in enumerate(sources.items()):
        if not NAME_RE.match(name):
            raise ValueError(f"invalid model name {name!r}")
        if not isinstance(source, str | os.PathLike):
            raise TypeError(
                f"model {name!r}: Ray replicas load artifacts by path, got {type(source).__name__}"
            )
        path = Path(source).resolve()
        if not is_artifact(path):
            raise ArtifactError(f"model {name!r}: {path} is not an artifact folder (no manifest.json)")
        chosen = _per_model(policy, name, "policy")
        if chosen not in POLICIES:
            raise ValueError(f"unknown balancing policy {chosen!r}; choose from {sorted(POLICIES)}")
        why = check_loads(path, settings)
        if why is not None:
            refused[name] = why
            continue
        router = RequestRouterConfig(
            request_router_class=PolicyRouter,
            request_router_kwargs={
                "model": name,
                "policy": chosen,
                "seed": None if seed is None else seed + i,
            },
            request_routing_stats_period_s=routing_stats_period_s,
        )
        scaling = autoscaling.get(name) if isinstance(autoscaling, Mapping) else autoscaling  # absent: fixed
        replicas: dict[str, Any] = (
            {"autoscaling_config": scaling.config()}
            if scaling is not None
            else {"num_replicas": int(_per_model(num_replicas, name, "num_replicas"))}
        )
        deployment = serve.deployment(
            ModelReplica,
            name=deployment_name(name),
            **replicas,
            max_ongoing_requests=max_ongoing_requests,
            ray_actor_options={"num_cpus": _per_model(replica_cpus, name, "replica_cpus"), "runtime_env": env},
            health_check_period_s=health_check_period_s,
            health_check_timeout_s=health_check_timeout_s,
            max_constructor_retry_count=3,  # checked in the driver; fails only if the folder changes
            request_router_config=router,
        )
        handles[name] = deployment.bind(name, str(path), settings.for_model(name))
    ingress = serve.deployment(
        Ingress,
        name="ingress",
        num_replicas=1,
        max_ongoing_requests=1000,
        ray_actor_options={"num_cpus": ingress_cpus, "runtime_env": env},
    )
    return ingress.bind(handles, settings, probe_interval_s, refused)


def run(
    models: str | os.PathLike[str],
    settings: ServeSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    blocking: bool = True,
    **options: Any,
) -> Any:
    """What `wasm-torch serve out/ --ray` calls: start a local Ray (or join RAY_ADDRESS), serve the
    app on host:port (loopback by default), and wait for Ctrl-C; returns the ingress handle."""
    scaling = options.pop("autoscaling", None)
    if isinstance(scaling, Mapping) and not all(isinstance(v, Autoscaling | None) for v in scaling.values()):
        scaling = Autoscaling(**scaling)  # the CLI's {"min_replicas": .., "max_replicas": .., ...}
    app = build_ray_app(models, settings, autoscaling=scaling, **options)  # fails on bad input before Ray starts
    connected_here = not ray.is_initialized()
    local = connected_here and not os.environ.get("RAY_ADDRESS")
    if local:
        init_ray(include_dashboard=False)
    elif connected_here:  # join the cluster at RAY_ADDRESS (deployments carry their runtime_env)
        init_ray()
    keep = False
    try:
        serve.start(http_options={"host": host, "port": port})
        handle = deploy(app)
        if not blocking:
            keep = True
            return handle
        print(f"serving on http://{host}:{port}/v2 (Ray Serve); Ctrl-C to stop", file=sys.stderr)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return None
    finally:
        if not keep:
            if local:  # our own Ray instance: stop all of it
                serve.shutdown()
            else:  # a shared cluster: remove only our application
                serve.delete(APP_NAME)
            if connected_here:
                ray.shutdown()


def deploy(app: Any, name: str = APP_NAME, route_prefix: str | None = "/") -> Any:
    """`serve.run` with a clear error: Ray only says "failed to update the deployments"; the reason
    (say, an artifact failing its integrity check) is the last line of each failed deployment's
    status message."""
    try:
        return serve.run(app, name=name, route_prefix=route_prefix)
    except RuntimeError as e:
        status = serve.status().applications.get(name)
        deployments = status.deployments.items() if status is not None else []
        why = [
            f"{name}: {d.message.strip().splitlines()[-1]}"
            for name, d in deployments
            if d.status == "DEPLOY_FAILED" and d.message.strip()
        ]
        raise ServeError(f"Ray Serve could not start {name!r}: {'; '.join(why) or e}") from e
