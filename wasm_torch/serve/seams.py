"""The typed seams of the serving layer: what the app needs from a served model, a pool and a
registry. The in-process `Registry`/`ModelPool` and the Ray Serve `RemoteRegistry`/`RemotePool`
both satisfy them, so the routes of `app.py` run over either without `getattr(..., default)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import numpy as np

from wasm_torch.serve.protocol import TensorSpecLike

Arrays = dict[str, np.ndarray]


@runtime_checkable
class ServedModel(Protocol):
    """What a pool worker calls: `wasm_torch.load(...)`'s WasmModule, a cascade, or a test fake."""

    @property
    def inputs(self) -> Sequence[TensorSpecLike]: ...

    @property
    def outputs(self) -> Sequence[TensorSpecLike]: ...

    def run(self, inputs: dict[str, np.ndarray]) -> Mapping[str, np.ndarray]: ...

    def stats(self) -> Mapping[str, Any]: ...


class ServedPool(Protocol):
    """One model as the routes see it: its specs, readiness, inference and a description."""

    name: str

    @property
    def inputs(self) -> Sequence[TensorSpecLike]: ...

    @property
    def outputs(self) -> Sequence[TensorSpecLike]: ...

    @property
    def ready(self) -> bool: ...

    async def ainfer(self, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...

    def refresh_gauges(self) -> None: ...

    def replica_metrics(self) -> Mapping[str, str]:
        """Prometheus text of replicas in other processes (Ray), by replica; {} in process."""
        ...


class ModelRegistry(Protocol):
    """The served models by name, the ones refused at load with the reason, and the repository
    actions (the Ray registry answers load/unload with `ModelControlOff`)."""

    @property
    def pools(self) -> Mapping[str, ServedPool]: ...

    @property
    def refused(self) -> Mapping[str, str]: ...

    @property
    def ready(self) -> bool: ...

    def get(self, name: str) -> ServedPool: ...

    def lease(self, name: str) -> AbstractContextManager[ServedPool]:
        """The model's pool, kept serving until the block ends even if it is reloaded or unloaded."""
        ...

    def index(self) -> list[dict[str, str]]:
        """Every model: {"name", "version", "state": "READY"|"UNAVAILABLE", "reason"}."""
        ...

    def load(self, name: str) -> str:
        """Load or reload a model (blocking); "loaded" or "reloaded", else `LoadRefused`."""
        ...

    def unload(self, name: str) -> None: ...

    def close(self) -> None: ...
