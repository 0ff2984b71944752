"""`WasmModule`: a loaded artifact you call like a function — numpy in, numpy out.

Memory layout of the instance (all offsets 64-byte aligned):

    [ stack | module data | weights (weights.bin) | arena (inputs, activations, outputs) ]
                            ^ W = __heap_base        ^ A = W + weights_bytes

Each call copies the inputs into their arena slots through numpy views of linear memory, makes
one raw wasm call `wt_run(W, A, symbols...)` (no per-call type queries: ~2 µs instead of ~30 µs
for wasmtime-py's Func.__call__), and returns the outputs (copies by default, or zero-copy views
with copy=False that stay valid until the next call). Memory is capped at what the model needs
unless you pass memory_limit; deadline (seconds, epoch interruption) and fuel are opt-in.

Integrity, all before wasmtime compiles anything: signature.json is checked over the exact bytes of
manifest.json that are then parsed (when trusted_keys / require_signed are given, wasm_torch.integrity.signing),
model.wasm and weights.bin are read once and checked against the manifest's sha256, and an encrypted
weights.bin.enc is decrypted in memory with the keyring (wasm_torch.integrity.encryption) and checked the same way.

One instance is not thread-safe (one wasmtime Store); use one per thread.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime
from wasmtime import _ffi as ffi

from ..artifact import (
    ENCRYPTED_WEIGHTS,
    WASM,
    WEIGHTS,
    Manifest,
    TensorSpec,
    eval_dim,
    read_manifest,
    read_manifest_bytes,
    verify_bytes,
    verify_files,
)
from ..config import Settings
from ..config import settings as load_settings
from ..errors import (
    ArtifactError,
    DeadlineExceeded,
    FuelExhausted,
    IndexOutOfRange,
    InputError,
    MemoryLimitError,
    TrapError,
)
from . import engine as engines

PAGE = 65536


def _align(n: int, a: int = 64) -> int:
    return (n + a - 1) // a * a


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
    ):
        t0 = time.perf_counter()
        self.path = Path(path)
        self.settings = settings or load_settings()
        raw_manifest = read_manifest_bytes(self.path)
        self.signed_by = self._check_signature(raw_manifest, verify, trusted_keys, require_signed)
        self.manifest: Manifest = read_manifest(self.path, raw_manifest)  # the bytes that were verified
        m = self.manifest
        self.encrypted = (self.path / ENCRYPTED_WEIGHTS).exists()
        if verify:
            verify_files(self.path, m, skip=(WASM, WEIGHTS))  # any other listed file
        wasm = self._file(WASM).read_bytes()
        weights = self._read_weights(raw_manifest, keyring, verify)
        if verify:
            verify_bytes(self.path, m, WASM, wasm)
        self.name = m.name
        self.inputs: list[TensorSpec] = m.inputs
        self.outputs: list[TensorSpec] = m.outputs
        self.deadline, self.fuel = deadline, fuel
        wasm_sha = m.raw["files"][WASM]["sha256"]
        mod, self.module_source = engines.module(
            wasm, wasm_sha, fuel is not None, deadline is not None, self.settings
        )
        self.store = wasmtime.Store(engines.engine(fuel is not None, deadline is not None))
        if deadline is not None:
            self.store.set_epoch_deadline(engines.deadline_ticks(deadline))
        if fuel is not None:
            self.store.set_fuel(fuel)
        self._instantiate(mod, memory_limit, weights)
        self._calls, self._total_s, self._last_s = 0, 0.0, 0.0
        self._fuel_last = self._fuel_total = 0
        self.load_ms = (time.perf_counter() - t0) * 1e3

    # ---- set-up -----------------------------------------------------------------------------------
    def _check_signature(
        self, raw_manifest: bytes, verify: bool, trusted_keys: Iterable[Any] | None, require: bool | None
    ) -> list[str]:
        keys = None if trusted_keys is None else list(trusted_keys)
        require = keys is not None if require is None else require
        if not require and keys is None:
            return []
        if not verify:
            raise ArtifactError("verify=False cannot be combined with trusted_keys / require_signed")
        if not keys:
            raise ArtifactError(
                "signature checks need trusted_keys (.pub files or public keys, e.g. from `wasm-torch keygen`)"
            )
        try:  # lazy: cryptography is needed only for signed or encrypted artifacts
            from ..integrity.signing import verify_manifest
        except ImportError as e:
            raise ArtifactError(
                f"signature checks need `cryptography>=48` (pip install cryptography): {e}"
            ) from e
        return verify_manifest(self.path, raw_manifest, keys, require=require)

    def _file(self, name: str) -> Path:
        p = self.path / name
        if not p.is_file():
            raise ArtifactError(f"{p} is missing (listed in manifest.json); the artifact is incomplete")
        return p

    def _read_weights(self, raw_manifest: bytes, keyring: Any, verify: bool) -> np.ndarray:
        if self.encrypted:  # weights.bin.enc wins over a leftover weights.bin
            try:
                from ..integrity.encryption import as_keyring, load_weights
            except ImportError as e:
                raise ArtifactError(f"{ENCRYPTED_WEIGHTS} needs `cryptography>=48` to decrypt: {e}") from e
            plain = load_weights(self.path, raw_manifest, as_keyring(keyring, self.settings))
            return np.frombuffer(plain, dtype=np.uint8)
        weights = np.fromfile(self._file(WEIGHTS), dtype=np.uint8)
        if verify:
            verify_bytes(self.path, self.manifest, WEIGHTS, weights.data)
        return weights

    def _instantiate(self, mod: wasmtime.Module, memory_limit: int | None, weights: np.ndarray) -> None:
        m = self.manifest
        try:
            inst = wasmtime.Instance(self.store, mod, [])
        except wasmtime.WasmtimeError as e:
            raise ArtifactError(f"{self.path / WASM} cannot be instantiated: {e}") from e
        exports = inst.exports(self.store)
        mem, heap_base, fn = exports.get("memory"), exports.get("__heap_base"), exports.get(m.entry)
        if not isinstance(mem, wasmtime.Memory) or not isinstance(fn, wasmtime.Func) or heap_base is None:
            raise ArtifactError(f"{self.path / WASM} lacks the exports memory/__heap_base/{m.entry}")
        self.W = _align(int(heap_base.value(self.store)))
        self.A = _align(self.W + m.weights_bytes)
        need = self.A + m.arena_bytes
        self.memory_bytes = (need + PAGE - 1) // PAGE * PAGE
        cap = self.memory_bytes if memory_limit is None else int(memory_limit)
        if cap < self.memory_bytes:
            raise MemoryLimitError(
                f"model {self.name!r} needs {self.memory_bytes:,} bytes of linear memory "
                f"(weights {m.weights_bytes:,} + arena {m.arena_bytes:,}); memory_limit={cap:,} is below that. "
                "Raise memory_limit or recompile with smaller dynamic-dimension maxima."
            )
        self.store.set_limits(memory_size=cap)
        grow = self.memory_bytes // PAGE - mem.size(self.store)
        if grow > 0:
            try:
                mem.grow(self.store, grow)
            except wasmtime.WasmtimeError as e:
                raise MemoryLimitError(f"could not grow memory to {self.memory_bytes:,} bytes: {e}") from e
        self._mem, self._fn = mem, fn
        # A trap leaves the C shadow-stack pointer wherever the trapped function had moved it;
        # we put it back after every trap so a module that hit a limit stays usable forever.
        sp = exports.get("__stack_pointer")
        self._sp = sp if isinstance(sp, wasmtime.Global) else None
        self._sp0 = sp.value(self.store) if self._sp is not None else None
        base = ctypes.addressof(mem.data_ptr(self.store).contents)
        self._buf = (ctypes.c_ubyte * mem.data_len(self.store)).from_address(base)
        if weights.size != m.weights_bytes:
            raise ArtifactError(
                f"{self.path / WEIGHTS} has {weights.size} bytes, manifest says {m.weights_bytes}"
            )
        np.frombuffer(self._buf, np.uint8, weights.size, self.W)[:] = weights
        nargs = 2 + len(m.symbols)
        self._args = (ffi.wasmtime_val_raw_t * nargs)()
        self._nargs = nargs
        self._sym_index = {s.name: k for k, s in enumerate(m.symbols)}

    # ---- views of linear memory ------------------------------------------------------------------
    def _view(self, spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
        dt = np.dtype(spec.dtype)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self._buf, dt, count, self.A + spec.offset).reshape(shape)

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
        for spec, arr in zip(self.inputs, arrays, strict=True):
            np.copyto(self._view(spec, arr.shape), arr, casting="unsafe")
        self._args[0].i32 = self.W  # the call writes its result into slot 0, so set every arg each time
        self._args[1].i32 = self.A
        for name, k in self._sym_index.items():
            self._args[2 + k].i32 = syms[name]
        t0 = time.perf_counter()
        self._invoke()
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
    which checks only signatures that exist), keyring (Keyring or keyring file, for weights.bin.enc;
    default from WASM_TORCH_KEYRING / WASM_TORCH_KEYS)."""
    return WasmModule(path, **options)
