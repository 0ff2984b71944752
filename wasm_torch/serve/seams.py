"""The typed seams of the serving layer: what the app needs from a served model, a pool and a
registry. The in-process `Registry`/`ModelPool` and the Ray Serve `RemoteRegistry`/`RemotePool`
both satisfy them, so the routes of `app.py` run over either without `getattr(..., default)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class ModelRegistry(Protocol):
    """The served models by name, and the ones refused at load with the reason."""

    @property
    def pools(self) -> Mapping[str, ServedPool]: ...

    @property
    def refused(self) -> Mapping[str, str]: ...

    @property
    def ready(self) -> bool: ...

    def get(self, name: str) -> ServedPool: ...

    def close(self) -> None: ...
