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
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wasm_torch.errors import ArtifactError, ExecutionError
from wasm_torch.serve.cascade import CASCADE_FILE, cascade_factory
from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.errors import LoadRefused, ModelNotFound, ModelRefused
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
            threads=settings.threads,
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
    """The served models: a pool per model, the refused ones with the reason, and the model
    repository actions (load, reload, unload; `repository.py` polls the folder for changes).

    Leases keep every request's pool alive: a request takes a lease on its model's pool when it
    starts (`lease`); a reload or unload swaps the pool in `pools` at once (new requests go to the
    new pool, or get 404) and closes the old one only when its last lease is returned, so no
    request in flight is dropped.
    """

    def __init__(
        self,
        models: str | os.PathLike[str] | Mapping[str, ModelSource],
        settings: ServeSettings,
        metrics: Metrics,
        clock: Clock = monotonic,
        seed: int | None = None,
    ) -> None:
        self.root = Path(models) if isinstance(models, str | os.PathLike) else None
        self.sources: dict[str, ModelSource] = dict(discover(models) if self.root is not None else models)  # type: ignore[arg-type]
        self.settings, self.metrics, self.clock, self.seed = settings, metrics, clock, seed
        self.pools: dict[str, ModelPool] = {}
        self.refused: dict[str, str] = {}  # name -> why the model was not loaded
        self.unloaded: dict[str, str] = {}  # name -> why it is not served (unloaded on request, removed)
        self.notes: dict[str, str] = {}  # name -> a note on a served model (its last reload was refused)
        self.on_swap: Callable[[ModelPool | None, ModelPool | None], None] | None = None  # the healer
        self._leases: Counter[ModelPool] = Counter()
        self._retiring: list[ModelPool] = []
        self._lock = threading.Condition()
        self._load_lock = threading.Lock()  # one load/unload at a time
        self._loads = 0  # pools made so far: seeds each pool's balancer
        try:
            integrity_options(settings)  # a bad --trust/--keyring stops the server, not one model
            for name, source in self.sources.items():
                if not NAME_RE.match(name):
                    raise ValueError(f"invalid model name {name!r}")
                try:
                    self.pools[name] = self._make_pool(name, source)
                except Exception as e:
                    if not isinstance(source, str | os.PathLike) and not isinstance(e, LOAD_ERRORS):
                        raise  # a Python model or factory that fails this way is a bug, not bad data
                    self.refused[name] = public_reason(e, source)
                    log.error("refusing model %r: %s", name, self.refused[name])
        except BaseException:
            self.close()
            raise

    def _make_pool(self, name: str, source: ModelSource) -> ModelPool:
        settings = self.settings.for_model(name)
        factory, first, cap = as_factory(source, settings)
        if cap is not None:
            settings = settings.with_(replicas=min(cap, settings.replicas))
        rng = random.Random(None if self.seed is None else self.seed + self._loads)
        self._loads += 1
        return ModelPool(name, factory, settings, self.metrics, self.clock, rng, first_instance=first)

    # --- lookups -----------------------------------------------------------------------------
    def get(self, name: str) -> ModelPool:
        pool = self.pools.get(name)
        if pool is None and name in self.refused:
            raise ModelRefused(f"model {name!r} was refused at load: {self.refused[name]}")
        if pool is None and name in self.unloaded:
            raise ModelNotFound(f"model {name!r} is not loaded ({self.unloaded[name]}); load it first")
        if pool is None:
            raise model_not_found(name, self.pools)
        return pool

    @contextmanager
    def lease(self, name: str) -> Iterator[ModelPool]:
        """The model's pool, kept open until the block ends (even if it is reloaded or unloaded)."""
        with self._lock:
            pool = self.get(name)
            self._leases[pool] += 1
        try:
            yield pool
        finally:
            with self._lock:
                self._leases[pool] -= 1
                if self._leases[pool] <= 0:
                    del self._leases[pool]
                    self._lock.notify_all()

    @property
    def ready(self) -> bool:
        return bool(self.pools) and all(p.ready for p in self.pools.values())

    def index(self) -> list[dict[str, str]]:
        """The repository index: every model we know of, READY or UNAVAILABLE with the reason."""
        rows = {n: ("READY" if p.ready else "UNAVAILABLE", self.notes.get(n, "")) for n, p in self.pools.items()}
        rows.update({n: ("UNAVAILABLE", why) for n, why in self.unloaded.items()})
        rows.update({n: ("UNAVAILABLE", why) for n, why in self.refused.items()})
        if self.root is not None:  # folders in the repository that were never loaded (poll mode is off)
            for name in self.on_disk():
                rows.setdefault(name, ("UNAVAILABLE", "not loaded"))
        return [
            {"name": n, "version": "1", "state": state, "reason": why} for n, (state, why) in sorted(rows.items())
        ]

    # --- repository actions -------------------------------------------------------------------
    def on_disk(self) -> dict[str, Path]:
        if self.root is None or not self.root.is_dir():
            return {}
        if is_artifact(self.root):
            return {self.root.resolve().name: self.root}
        return {p.name: p for p in sorted(self.root.iterdir()) if NAME_RE.match(p.name) and is_artifact(p)}

    def source(self, name: str) -> ModelSource:
        """Where model `name` loads from: its folder in the repository (looked up among the
        folder's entries by name, never joined as a path), or the source it was given as."""
        if self.root is not None:
            found = self.on_disk().get(name)
            if found is None:
                raise model_not_found(name, self.on_disk())
            return found
        if name not in self.sources:
            raise model_not_found(name, self.sources)
        return self.sources[name]

    def load(self, name: str) -> str:
        """Load (or reload) model `name` under the signing policy; "loaded" or "reloaded". While a
        new pool is made the old one keeps serving; if the artifact is refused, the old one stays."""
        with self._load_lock:
            source = self.source(name)
            old = self.pools.get(name)
            action = "reload" if old is not None else "load"
            try:
                pool = self._make_pool(name, source)
            except Exception as e:
                if not isinstance(source, str | os.PathLike) and not isinstance(e, LOAD_ERRORS):
                    raise
                why = public_reason(e, source)
                self.metrics.repository.labels(name, action, "refused").inc()
                if old is None:
                    self.refused[name] = why
                    self.unloaded.pop(name, None)
                    raise LoadRefused(f"model {name!r} was refused at load: {why}") from None
                self.notes[name] = f"serving the previous version: the last reload was refused: {why}"
                raise LoadRefused(
                    f"model {name!r} was not reloaded (the previous version keeps serving): {why}"
                ) from None
            with self._lock:
                self.pools[name] = pool
                self.sources[name] = source
                for table in (self.refused, self.unloaded, self.notes):
                    table.pop(name, None)
            self._swapped(old, pool)
            self.metrics.repository.labels(name, action, "ok").inc()
            log.info("model %r %sed", name, action)
            return action + "ed"

    def unload(self, name: str, why: str = "unloaded on request") -> None:
        """Stop serving `name`: new requests get 404 at once, requests in flight finish."""
        with self._load_lock:
            with self._lock:
                old = self.pools.pop(name, None)
                if old is None and name not in self.refused and name not in self.unloaded:
                    raise model_not_found(name, self.pools)
                self.refused.pop(name, None)
                self.notes.pop(name, None)
                self.unloaded[name] = why
            self._swapped(old, None)
            self.metrics.repository.labels(name, "unload", "ok").inc()

    def _swapped(self, old: ModelPool | None, new: ModelPool | None) -> None:
        if self.on_swap is not None:
            self.on_swap(old, new)
        if old is not None:
            threading.Thread(target=self._retire, args=(old,), daemon=True, name=f"wt-retire-{old.name}").start()

    def _retire(self, pool: ModelPool) -> None:
        """Close a replaced pool once no request holds it (bounded: a request cannot hold a lease
        longer than its read timeout plus its request timeout)."""
        s = self.settings.for_model(pool.name)
        deadline = time.monotonic() + s.read_timeout_s + s.request_timeout_s + 5.0
        with self._lock:
            self._retiring.append(pool)
            while self._leases.get(pool, 0) > 0 and time.monotonic() < deadline:
                self._lock.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            self._retiring.remove(pool)
            self._lock.notify_all()
        pool.close()

    def wait_retired(self, timeout: float) -> bool:
        """True when every replaced pool has been closed (tests and shutdown)."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._retiring and time.monotonic() < end:
                self._lock.wait(0.05)
            return not self._retiring

    def close(self) -> None:
        with self._lock:
            pools = [*self.pools.values(), *self._retiring]
        for pool in pools:
            pool.close()


def public_reason(exc: BaseException, source: Any) -> str:
    """The error with the server's folder layout removed (clients see artifact-relative paths)."""
    text = str(exc)
    if isinstance(source, str | os.PathLike):
        for parent in {str(Path(source).parent), str(Path(source).resolve().parent)}:
            text = text.replace(parent + os.sep, "")
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 500 else text[:497] + "..."
