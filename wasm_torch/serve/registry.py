"""Which models a server serves: artifact folders under a directory, or a dict given in Python.

Model names come only from this registry (folder names checked against a strict pattern); a
request's model name is a dictionary key, never a path, so path traversal has nothing to reach.

Integrity: every instance is loaded through `wasm_torch.load` with the settings' trusted keys
and keyring, so signatures and hashes are checked before wasmtime compiles anything.

One bad folder never stops the server: an artifact folder that cannot be served for ANY reason
(malformed manifest or module, tampered, unsigned when signatures are required, signed by an
untrusted key, encrypted under a key we lack, a bad cascade.json) is refused: listed in `refused`
with the reason (the repository index, `/v2/health/ready`, and a 503 naming it on its routes), and
the others are served. Folders are data, so every exception loading one is caught; models given
as Python objects or factories are code, so only wasm-torch's own load errors refuse them and
anything else is raised as the bug it is. Configuration errors (a missing --trust key, an
unreadable keyring) stop the server: they concern every model.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from wasm_torch.errors import ArtifactError, ExecutionError
from wasm_torch.serve.cascade import CASCADE_FILE, cascade_factory
from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.errors import ModelNotFound, ModelRefused
from wasm_torch.serve.metrics import Metrics
from wasm_torch.serve.pool import ModelPool
from wasm_torch.serve.seams import ServedModel
from wasm_torch.serve.settings import ServeSettings

log = logging.getLogger("wasm_torch.serve")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ModelSource = str | os.PathLike[str] | Callable[[], ServedModel] | ServedModel
# What refuses a model given as a Python object or factory (code): our own load errors only.
LOAD_ERRORS: tuple[type[Exception], ...] = (ArtifactError, ExecutionError, ModelRefused)


def is_artifact(path: Path) -> bool:
    if path.is_dir() and (path / CASCADE_FILE).is_file():  # a small+large cascade, one name
        return True
    return path.is_dir() and ((path / "manifest.json").is_file() or any(path.glob("*.wasm")))


def discover(models_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Artifact folders directly under `models_dir` (or `models_dir` itself if it is one)."""
    root = Path(models_dir)
    if not root.is_dir():
        raise ArtifactError(f"model directory {root} does not exist")
    if is_artifact(root):
        return {root.resolve().name: root}
    found = {}
    for p in sorted(root.iterdir()):
        if not is_artifact(p):
            continue
        if NAME_RE.match(p.name):
            found[p.name] = p
        else:
            log.warning("skipping %r: not a valid model name (letters, digits, '_', '.', '-')", p.name)
    if not found:
        raise ArtifactError(f"no model artifacts (folders with manifest.json) under {root}")
    return found


def path_factory(path: Path, settings: ServeSettings) -> Callable[[], ServedModel]:
    """A factory for fresh instances of the artifact at `path`, sandboxed per the settings.

    `wasm_torch.load` checks every file's sha256 against the manifest before compiling.
    """
    import wasm_torch

    integrity = integrity_options(settings)

    def load() -> ServedModel:
        return wasm_torch.load(
            str(path),
            memory_limit=settings.memory_limit,
            deadline=settings.deadline_s,
            fuel=settings.fuel,
            **integrity,
        )

    return load


def integrity_options(settings: ServeSettings) -> dict[str, Any]:
    """`wasm_torch.load` keyword arguments for signatures and encrypted weights. Raises on a
    configuration error (a key file that is missing or not a public key, an unreadable keyring)."""
    out: dict[str, Any] = {}
    if settings.require_signature or settings.trusted_keys:
        from ..integrity.signing import trusted

        out["trusted_keys"] = trusted(settings.trusted_keys)
        out["require_signed"] = settings.require_signature
        if settings.require_signature and not out["trusted_keys"]:
            raise ArtifactError(
                "require_signature is set but no trusted public key is given (--trust KEY.pub)"
            )
    if settings.keyring is not None:
        from ..integrity.encryption import Keyring

        out["keyring"] = Keyring.load(settings.keyring)
    return out


def model_not_found(name: str, available: Iterable[str]) -> ModelNotFound:
    """The 404 for an unknown model; a name that is not a valid model name is not echoed back."""
    shown = name if NAME_RE.match(name) else "(invalid name)"
    return ModelNotFound(f"model {shown!r} not found; available: {sorted(available)}")


def as_factory(
    source: ModelSource, settings: ServeSettings
) -> tuple[Callable[[], ServedModel], ServedModel | None, int | None]:
    """(factory, first instance or None, replica cap or None)."""
    from wasm_torch.runtime import WasmModule

    if isinstance(source, str | os.PathLike):
        if (Path(source) / CASCADE_FILE).is_file():  # members load through path_factory too
            factory = cascade_factory(
                Path(source), lambda p: path_factory(p, settings), integrity_options(settings)
            )
            return factory, None, None
        return path_factory(Path(source), settings), None, None
    if isinstance(source, WasmModule):  # with signatures required, reload it through the verifying factory
        return path_factory(source.path, settings), None if settings.require_signature else source, None
    if isinstance(source, ServedModel):
        if settings.require_signature:
            raise ModelRefused("an in-memory model cannot be signature-checked; serve its artifact folder")
        # A loaded instance we cannot clone: one replica, and "restart" reuses it.
        return (lambda: source), source, 1
    if callable(source):
        if settings.require_signature:
            raise ModelRefused("a Python factory cannot be signature-checked; serve an artifact folder")
        return source, None, None
    raise TypeError(f"cannot serve {type(source).__name__}: give a path, a factory or a loaded model")


class Registry:
    def __init__(
        self,
        models: str | os.PathLike[str] | Mapping[str, ModelSource],
        settings: ServeSettings,
        metrics: Metrics,
        clock: Clock = monotonic,
        seed: int | None = None,
    ) -> None:
        sources: Mapping[str, ModelSource] = (
            discover(models) if isinstance(models, str | os.PathLike) else models
        )
        self.pools: dict[str, ModelPool] = {}
        self.refused: dict[str, str] = {}  # name -> why the model was not loaded
        try:
            integrity_options(settings)  # a bad --trust/--keyring stops the server, not one model
            for i, (name, source) in enumerate(sources.items()):
                if not NAME_RE.match(name):
                    raise ValueError(f"invalid model name {name!r}")
                try:
                    factory, first, cap = as_factory(source, settings)
                    s = settings if cap is None else settings.with_(replicas=min(cap, settings.replicas))
                    rng = random.Random(None if seed is None else seed + i)
                    self.pools[name] = ModelPool(name, factory, s, metrics, clock, rng, first_instance=first)
                except Exception as e:
                    if not isinstance(source, str | os.PathLike) and not isinstance(e, LOAD_ERRORS):
                        raise  # a Python model or factory that fails this way is a bug, not bad data
                    self.refused[name] = public_reason(e, source)
                    log.error("refusing model %r: %s", name, self.refused[name])
        except BaseException:
            self.close()
            raise

    def get(self, name: str) -> ModelPool:
        pool = self.pools.get(name)
        if pool is None and name in self.refused:
            raise ModelRefused(f"model {name!r} was refused at load: {self.refused[name]}")
        if pool is None:
            raise model_not_found(name, self.pools)
        return pool

    @property
    def ready(self) -> bool:
        return bool(self.pools) and all(p.ready for p in self.pools.values())

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


def public_reason(exc: BaseException, source: Any) -> str:
    """The error with the server's folder layout removed (clients see artifact-relative paths)."""
    text = str(exc)
    if isinstance(source, str | os.PathLike):
        for parent in {str(Path(source).parent), str(Path(source).resolve().parent)}:
            text = text.replace(parent + os.sep, "")
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 500 else text[:497] + "..."
