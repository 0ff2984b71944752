"""The Ray Serve ingress: the KServe v2 FastAPI app of `app.py` over pools that forward to Ray.

`Ingress` is a late-bound `@serve.ingress()` deployment: Ray calls `__serve_build_asgi_app__` in
the replica after the constructor has received the model deployments' handles, and we build the
very routes `create_app` builds (`app.build_app`) over `RemoteRegistry`, whose `RemotePool`s send
the parsed numpy inputs to the model deployments through those handles (routed by
`router.PolicyRouter`). Protocol, guard and error bodies are therefore the plain server's,
and run once, before any compute. Errors raised in a model replica come back as Ray's
`RayTaskError`; we hand on the original wasm-torch error so it is classified as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import wasm_torch.serve.ray.env  # noqa: F401  (before `import ray`: see serve/ray/env.py)

# isort: split
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle

from wasm_torch.errors import WasmTorchError
from wasm_torch.serve.app import build_app
from wasm_torch.serve.errors import ModelControlOff, ModelRefused, ReplicaFailure, RequestTimeout
from wasm_torch.serve.metrics import Metrics
from wasm_torch.serve.ray.router import router_snapshot
from wasm_torch.serve.registry import model_not_found
from wasm_torch.serve.settings import ServeSettings

log = logging.getLogger("wasm_torch.serve")


class RemotePool:
    """What `app.Server` needs from a pool, forwarding inference to a model deployment."""

    def __init__(
        self,
        name: str,
        handle: DeploymentHandle,
        spec: Mapping[str, Any],
        settings: ServeSettings,
        app_name: str,
    ) -> None:
        self.name, self.handle, self.settings, self.app_name = name, handle, settings, app_name
        self.inputs, self.outputs = list(spec["inputs"]), list(spec["outputs"])
        self.ready = True
        self.last_seen: dict[str, dict[str, Any]] = {}  # replica tag -> its last `describe()`

    async def ainfer(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        last: BaseException | None = None
        for _ in range(self.settings.max_retries + 1):
            response = self.handle.infer.remote(dict(inputs))
            try:
                return await asyncio.wait_for(response, self.settings.request_timeout_s)
            except TimeoutError:
                response.cancel()
                raise RequestTimeout(
                    f"no answer from {self.name!r} within {self.settings.request_timeout_s:g} s"
                ) from None
            except RayTaskError as e:  # the replica raised: hand its error on, classified as usual
                cause = e.cause
                if isinstance(cause, WasmTorchError):
                    raise cause from None
                raise RuntimeError(f"replica of {self.name!r} failed: {type(cause).__name__}") from None
            except RayActorError as e:  # the replica died while holding the request: retry elsewhere
                last = ReplicaFailure(f"a replica of {self.name!r} died while running the request")
                log.warning("%s: %s; retrying", self.name, type(e).__name__)
        raise last or ReplicaFailure(f"model {self.name!r}: no replica answered")

    async def probe(self) -> None:
        try:
            info = await asyncio.wait_for(self.handle.describe.remote(), 10.0)
        except Exception as e:  # a probe failure only marks the model not ready
            log.warning("probe of %s failed: %r", self.name, e)
            self.ready = False
            return
        self.last_seen[info["replica"]] = info
        live = self._live()
        self.last_seen = {tag: i for tag, i in self.last_seen.items() if tag in live}
        self.ready = any(i["problem"] is None for i in self.last_seen.values())

    def _live(self) -> set[str]:
        router = router_snapshot(self.app_name, self.name)
        return {r["id"] for r in router["replicas"] if r["live"]} if router else set(self.last_seen)

    def describe(self) -> dict[str, Any]:
        """The router's record, and each live replica's state as of the last probe that reached it."""
        return {
            "ray": {"deployment": getattr(self.handle, "deployment_name", None)},
            "router": router_snapshot(self.app_name, self.name),
            "replicas": [
                {k: v for k, v in info.items() if k != "metrics"} for _, info in sorted(self.last_seen.items())
            ],
        }

    def refresh_gauges(self) -> None:  # the pool gauges live in the model replicas
        pass

    def replica_metrics(self) -> dict[str, str]:
        """Each live replica's own Prometheus text, as of the last probe that reached it (the
        ingress's /metrics merges them, labelled `ray_replica`)."""
        return {tag: info["metrics"] for tag, info in sorted(self.last_seen.items()) if "metrics" in info}


class RemoteRegistry:
    """`Registry`'s interface (seams.ModelRegistry) over model deployments: names come from the
    handles we were given; `refused` from the driver's load check (`ray/app.py: check_loads`)."""

    def __init__(
        self, pools: dict[str, RemotePool], probe_interval_s: float, refused: Mapping[str, str] | None = None
    ) -> None:
        self.pools = pools
        self.refused: dict[str, str] = dict(refused or {})
        self._task = asyncio.get_running_loop().create_task(self._probe_forever(probe_interval_s))

    async def _probe_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.gather(*(p.probe() for p in self.pools.values()))
            await asyncio.sleep(interval_s)

    def get(self, name: str) -> RemotePool:
        pool = self.pools.get(name)
        if pool is None and name in self.refused:
            raise ModelRefused(f"model {name!r} was refused at load: {self.refused[name]}")
        if pool is None:
            raise model_not_found(name, self.pools)
        return pool

    @property
    def ready(self) -> bool:
        return bool(self.pools) and all(p.ready for p in self.pools.values())

    @contextmanager
    def lease(self, name: str) -> Iterator[RemotePool]:
        yield self.get(name)  # Ray Serve drains replicas itself when a deployment changes

    def index(self) -> list[dict[str, str]]:
        rows = {n: ("READY" if p.ready else "UNAVAILABLE", "") for n, p in self.pools.items()}
        rows.update({n: ("UNAVAILABLE", why) for n, why in self.refused.items()})
        return [{"name": n, "version": "1", "state": st, "reason": why} for n, (st, why) in sorted(rows.items())]

    def load(self, name: str) -> str:
        raise ModelControlOff("on Ray Serve, models are loaded by deploying the application; redeploy to change them")

    def unload(self, name: str) -> None:
        raise ModelControlOff("on Ray Serve, models are unloaded by deploying the application; redeploy to change them")

    def close(self) -> None:
        self._task.cancel()


@serve.ingress()
class Ingress:
    """The HTTP entry: `app.build_app` over `RemoteRegistry` (guard, protocol, metrics)."""

    def __init__(
        self,
        models: dict[str, DeploymentHandle],
        settings: ServeSettings,
        probe_s: float,
        refused: dict[str, str] | None = None,
    ) -> None:
        self.models, self.settings, self.probe_s = models, settings, probe_s
        self.refused = refused or {}

    async def __serve_build_asgi_app__(self) -> Any:
        specs = await asyncio.gather(*(h.spec.remote() for h in self.models.values()))
        pools = {
            name: RemotePool(name, handle, spec, self.settings, serve.get_replica_context().app_name)
            for (name, handle), spec in zip(self.models.items(), specs, strict=True)
        }
        registry = RemoteRegistry(pools, self.probe_s, self.refused)
        # Healing runs next to the pools, in the model replicas; the ingress only guards and routes.
        return build_app(registry, self.settings, Metrics())
