"""`WasmModule`: a loaded artifact you call like a function — numpy in, numpy out.

Memory layout of the instance (all offsets 64-byte aligned):

    [ stack | module data | weights (weights.bin) | arena (inputs, activations, outputs) ]
                            ^ W = __heap_base        ^ A = W + weights_bytes

Each call copies the inputs into their arena slots through numpy views of linear memory, makes
one raw wasm call `wt_run(W, A, symbols...)` (no per-call type queries: ~2 µs instead of ~30 µs
for wasmtime-py's Func.__call__), and returns the outputs (copies by default, or zero-copy views
with copy=False that stay valid until the next call). Memory is capped at what the model needs
unless you pass memory_limit; deadline (seconds, epoch interruption) and fuel are opt-in.

Loading (loader.py) checks everything before any of the artifact runs: the signature over the exact
manifest bytes that are parsed (with trusted_keys), the strict manifest schema, every file's size and
sha256 (an encrypted weights.bin.enc is decrypted in memory first), the module's exports and exact
types against the manifest (validate.py), and store limits are set before instantiation. The raw
call below is only ever made on an entry whose type was checked to be (i32, i32, i32 x symbols) -> i32.

One instance is not thread-safe (one wasmtime Store); use one per thread.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime
from wasmtime import _ffi as ffi

from ..artifact import ENCRYPTED_WEIGHTS, Manifest, TensorSpec, eval_dim
from ..config import Settings
from ..config import settings as load_settings
from ..errors import (
    ArtifactError,
    DeadlineExceeded,
    FuelExhausted,
    IndexOutOfRange,
    InputError,
    TrapError,
)
from . import engine as engines
from .index_check import index_trap_message
from .loader import load_artifact


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class WasmModule:
    def __init__(
        self,
        path: str | Path,
        *,
        memory_limit: int | None = None,
        deadline: float | None = None,
        fuel: int | None = None,
        verify: bool = True,
        settings: Settings | None = None,
        trusted_keys: Iterable[Any] | None = None,
        require_signed: bool | None = None,
        keyring: Any = None,
        name: str | None = None,
        releases: Any = None,
        stateful: bool = False,
    ):
        t0 = time.perf_counter()
        self.path = Path(path)
        self.settings = settings or load_settings()
        loaded = load_artifact(
            self.path,
            settings=self.settings,
            memory_limit=memory_limit,
            deadline=deadline,
            fuel=fuel,
            verify=verify,
            trusted_keys=trusted_keys,
            require_signed=require_signed,
            keyring=keyring,
            name=name,
            releases=releases,
        )
        self.manifest: Manifest = loaded.manifest
        self.manifest_sha256 = loaded.manifest_sha256  # of the manifest bytes this instance runs
        sig = loaded.signature
        self.signed_by: list[str] = [] if sig is None else list(sig.key_ids)
        self.release = None if sig is None else sig.release  # the signed {name, version}
        m = self.manifest
        self.encrypted = (self.path / ENCRYPTED_WEIGHTS).exists()
        self.name = m.name
        self.inputs: list[TensorSpec] = m.inputs
        self.outputs: list[TensorSpec] = m.outputs
        self.deadline, self.fuel = deadline, fuel
        self.store, self.module_source = loaded.store, loaded.module_source
        self.W, self.A, self.memory_bytes = loaded.W, loaded.A, loaded.memory_bytes
        self._mem, self._fn = loaded.memory, loaded.entry
        # A trap leaves the C shadow-stack pointer wherever the trapped function had moved it;
        # we put it back after every trap so a module that hit a limit stays usable forever.
        self._sp = loaded.stack_pointer
        self._sp0 = self._sp.value(self.store)
        base = ctypes.addressof(self._mem.data_ptr(self.store).contents)
        self._buf = (ctypes.c_ubyte * self._mem.data_len(self.store)).from_address(base)
        self._arena_end = self.A + m.arena_bytes
        nargs = 2 + len(m.symbols)
        self._args = (ffi.wasmtime_val_raw_t * nargs)()
        self._nargs = nargs
        self._sym_index = {s.name: k for k, s in enumerate(m.symbols)}
        self._calls, self._total_s, self._last_s = 0, 0.0, 0.0
        self._fuel_last = self._fuel_total = 0
        # A stateful artifact (a text generator's KV cache: the manifest's `state`) keeps those arena
        # bytes between calls. Loaded without stateful=True (a plain `load`, a server's pool), each
        # call starts from zeroed state: calls stay pure functions of their inputs, and none can read
        # what an earlier call (another client's) left there. wasm_torch.generate passes stateful=True.
        self.stateful = bool(stateful)
        self._state_spans = [] if stateful else [
            (t["offset"], math.prod(int(d) for d in t["shape"]) * np.dtype(t["dtype"]).itemsize)
            for t in m.raw.get("state", [])
        ]
        self.load_ms = (time.perf_counter() - t0) * 1e3

    # ---- views of linear memory ------------------------------------------------------------------
    def _view(self, spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
        dt = np.dtype(spec.dtype)
        count = math.prod(shape)
        start = self.A + spec.offset
        if min(shape, default=0) < 0 or start + count * dt.itemsize > self._arena_end:
            raise ArtifactError(
                f"{self.name}: the manifest places {spec.name!r} with shape {list(shape)} outside the arena "
                f"({self._arena_end - self.A:,} bytes): it is inconsistent. Recompile the model."
            )
        return np.frombuffer(self._buf, dt, count, start).reshape(shape)

    def arena_view(self, offset: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        """A view of linear memory at byte `offset` of the arena (e.g. a generator's KV cache, the
        manifest's `state`); bounds-checked, valid until the next call changes it."""
        if int(offset) < 0:
            raise ArtifactError(f"{self.name}: arena offset {offset} is negative")
        return self._view(TensorSpec("arena", dtype, tuple(shape), int(offset)), tuple(shape))

    def _bind(self, arrays: list[np.ndarray]) -> dict[str, int]:
        syms: dict[str, int] = {}
        for spec, arr in zip(self.inputs, arrays, strict=True):
            if arr.ndim != len(spec.shape):
                raise InputError(
                    f"{self.name}: input {spec.name!r} expects rank {len(spec.shape)} "
                    f"shape {list(spec.shape)}, got shape {list(arr.shape)}"
                )
            for axis, (want, got) in enumerate(zip(spec.shape, arr.shape, strict=True)):
                if isinstance(want, int):
                    if want != got:
                        raise InputError(
                            f"{self.name}: input {spec.name!r} expects shape {list(spec.shape)}, "
                            f"got {list(arr.shape)} (axis {axis}: {got} != {want})"
                        )
                elif want in self._sym_index and syms.setdefault(want, got) != got:
                    raise InputError(
                        f"{self.name}: dimension {want!r} is {syms[want]} in one input and {got} "
                        f"in {spec.name!r} (axis {axis}); they must agree"
                    )
        for s in self.manifest.symbols:
            v = syms.get(s.name)
            if v is None or not s.min <= v <= s.max:
                raise InputError(
                    f"{self.name}: dimension {s.name!r}={v} is outside the compiled range "
                    f"[{s.min}, {s.max}]; recompile with a larger Dim max if you need it"
                )
        for spec, arr in zip(self.inputs, arrays, strict=True):  # derived dims like 'seq*2'
            for want, got in zip(spec.shape, arr.shape, strict=True):
                if isinstance(want, str) and want not in syms and eval_dim(want, syms) != got:
                    raise InputError(f"{self.name}: input {spec.name!r} axis size {got} != {want}")
        return syms

    def _coerce(self, spec: TensorSpec, x: Any) -> np.ndarray:
        arr = _as_numpy(x)
        want = np.dtype(spec.dtype)
        if arr.dtype != want and not (
            (np.can_cast(arr.dtype, want, "same_kind") and arr.dtype.kind == want.kind)
            or np.can_cast(arr.dtype, want, "safe")
        ):
            raise InputError(
                f"{self.name}: input {spec.name!r} expects dtype {want}, got {arr.dtype} "
                f"(cast it with .astype({want.name!r}))"
            )
        return arr

    # ---- calling ---------------------------------------------------------------------------------
    def run(self, inputs: dict[str, Any], copy: bool = True) -> dict[str, np.ndarray]:
        names = [s.name for s in self.inputs]
        unknown = sorted(set(inputs) - set(names))
        missing = [n for n in names if n not in inputs]
        if unknown or missing:
            raise InputError(f"{self.name}: inputs are {names}; missing {missing}, unexpected {unknown}")
        outs = self._call([inputs[n] for n in names], copy)
        return {s.name: o for s, o in zip(self.outputs, outs, strict=True)}

    def __call__(self, *args: Any, copy: bool = True, **kwargs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        if kwargs:
            if args:
                raise InputError(f"{self.name}: pass inputs either positionally or by name, not both")
            outs = list(self.run(kwargs, copy).values())
        else:
            if len(args) != len(self.inputs):
                raise InputError(
                    f"{self.name}: expects {len(self.inputs)} inputs "
                    f"{[s.name for s in self.inputs]}, got {len(args)}"
                )
            outs = self._call(list(args), copy)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _call(self, args: list[Any], copy: bool) -> list[np.ndarray]:
        arrays = [self._coerce(s, a) for s, a in zip(self.inputs, args, strict=True)]
        syms = self._bind(arrays)
        for off, n in self._state_spans:  # schema-checked: inside the arena (see __init__)
            ctypes.memset(ctypes.addressof(self._buf) + self.A + off, 0, n)
        for spec, arr in zip(self.inputs, arrays, strict=True):
            np.copyto(self._view(spec, arr.shape), arr, casting="unsafe")
        self._args[0].i32 = self.W  # the call writes its result into slot 0, so set every arg each time
        self._args[1].i32 = self.A
        for name, k in self._sym_index.items():
            self._args[2 + k].i32 = syms[name]
        t0 = time.perf_counter()
        try:
            self._invoke()
        except IndexOutOfRange as e:  # name the input, the bad value and the valid range
            msg = index_trap_message(self.manifest.raw.get("index_inputs") or {}, [s.name for s in self.inputs], arrays)
            raise IndexOutOfRange(f"{self.name}: {msg}") from e
        dt = time.perf_counter() - t0
        self._calls += 1
        self._total_s += dt
        self._last_s = dt
        outs = []
        for spec in self.outputs:
            v = self._view(spec, tuple(eval_dim(d, syms) for d in spec.shape))
            outs.append(v.copy() if copy else v)
        return outs

    def _invoke(self) -> None:
        if self.deadline is not None:
            self.store.set_epoch_deadline(engines.deadline_ticks(self.deadline))
        if self.fuel is not None:
            self.store.set_fuel(self.fuel)
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        err = ffi.wasmtime_func_call_unchecked(
            self.store._context(), ctypes.byref(self._fn._func), self._args, self._nargs, ctypes.byref(trap)
        )
        if self.fuel is not None:
            self._fuel_last = self.fuel - self.store.get_fuel()
            self._fuel_total += self._fuel_last
        if (err or trap) and self._sp is not None:
            self._sp.set_value(self.store, self._sp0)
        if err:
            raise TrapError(f"{self.name}: {wasmtime.WasmtimeError._from_ptr(err)}")
        if trap:
            self._raise_trap(wasmtime.Trap._from_ptr(trap))

    def _raise_trap(self, t: wasmtime.Trap) -> None:
        code = t.trap_code
        if code == wasmtime.TrapCode.INTERRUPT:
            raise DeadlineExceeded(
                f"{self.name}: call exceeded its deadline of {self.deadline} s and was stopped; "
                "the module is still usable"
            )
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            raise FuelExhausted(f"{self.name}: call ran out of fuel (budget {self.fuel:,}) and was stopped")
        if code == wasmtime.TrapCode.UNREACHABLE:  # kernels trap only on out-of-range index inputs
            raise IndexOutOfRange(
                f"{self.name}: an index input (e.g. token ids) is out of range for the model"
            )
        raise TrapError(f"{self.name}: wasm trap {code.name if code else '?'}: {t.message}")

    # ---- introspection ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "calls": self._calls,
            "total_ms": self._total_s * 1e3,
            "last_ms": self._last_s * 1e3,
            "mean_ms": self._total_s * 1e3 / self._calls if self._calls else 0.0,
            "memory_bytes": self.memory_bytes,
            "weights_bytes": self.manifest.weights_bytes,
            "arena_bytes": self.manifest.arena_bytes,
            "load_ms": self.load_ms,
            "module_source": self.module_source,
        }
        if self.fuel is not None:
            s.update(fuel_last=self._fuel_last, fuel_total=self._fuel_total)
        return s

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.inputs)
        return f"WasmModule({self.name!r}, inputs=[{ins}], path={str(self.path)!r})"


def load(path: str | Path, **options: Any) -> WasmModule:
    """Load a compiled artifact folder. Options: memory_limit (bytes), deadline (s), fuel, verify;
    integrity: trusted_keys (.pub paths or public keys: signatures required unless require_signed=False,
    which checks only signatures that exist), name (the release name the signature must carry; default
    the folder's name, '*' for any), releases (a release-store file for rollback protection; default
    WASM_TORCH_RELEASES), keyring (Keyring or keyring file, for weights.bin.enc; default from
    WASM_TORCH_KEYRING / WASM_TORCH_KEYS). verify=False skips the sha256 checks and the compiled-module
    cache (the module is compiled privately). Every malformed artifact raises ArtifactError."""
    return WasmModule(path, **options)
