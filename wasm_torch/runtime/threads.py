"""Running a build variant of an artifact: intra-op threads over one shared memory, or a
single-threaded variant (relaxed SIMD). `wasm_torch.load(path, threads=N)` builds one of these.

`VariantModule` is a `WasmModule` (same calls, inputs, outputs, errors) whose instance runs another
build than model.wasm. Loading first does everything `WasmModule` does — signature, strict manifest,
sha256 of every file, model.wasm's shape, decryption — then reads the variant's file (its sha256
is in the manifest), checks its exact shape (variant_check.py), compiles it in an engine with the
features it needs and instantiates it.

Threaded builds (kernels/wt_threads.h describes the protocol). Memory layout of the one shared
memory, sized exactly and never growable:

    [ stack 0 | data | weights | arena | stack 1 | ... | stack N-1 ]
                ^W               ^A       ^ each worker's own __stack_pointer region

N instances of the module over it, each in its own wasmtime Store: instance 0 (the leader) runs
wt_run on the calling thread; instances 1..N-1 run wt_worker(t) on a small persistent pool of
Python threads (wasmtime releases the GIL during a call, so they run in parallel). Weights live
once. A call is bit-identical to model.wasm's whatever N (tests/runtime/test_threads.py).

Failures: a trap in the leader (a deadline, a bad index) resets the pool (no chunk of the job is
claimed any more) and waits for workers still inside a chunk; a trap in a worker marks its chunk
done and failed, the leader traps at the end of that parallel step, and the worker's error is
raised (e.g. IndexOutOfRange). Either way the module stays usable. Fuel metering counts one
store's instructions, so it needs threads=1.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime
from wasmtime import _ffi as ffi

from ..artifact import MANIFEST
from ..artifact.files import read_verified
from ..errors import ArtifactError, ExecutionError, MemoryLimitError, ThreadsError, TrapError
from . import engine as engines
from .module import WasmModule
from .variant_check import check_compiled, check_variant
from .variants import parse_variants

PAGE = 65536
# wt_pool_ctl operations (kernels/wt_threads.h WT_CTL_*)
CTL_THREADS, CTL_CAN_BLOCK, CTL_QUIT, CTL_RESET, CTL_BUSY, CTL_CHUNKS, CTL_CLEAR, CTL_FAILED, CTL_JOBS = range(9)
RECOVER_SECONDS = 60.0  # after a trap, how long workers may take to finish the chunk they are in
NO_DEADLINE = 1 << 62


class _SharedMemory(wasmtime.SharedMemory):
    """wasmtime-py 50's SharedMemory passes a pointer to its pointer when used as an import (a
    TypeError); this hands the C API the pointer itself."""

    def _as_extern(self) -> ffi.wasmtime_extern_t:
        union = ffi.wasmtime_extern_union(sharedmemory=self.ptr())
        return ffi.wasmtime_extern_t(ffi.WASMTIME_EXTERN_SHAREDMEMORY, union)


def _align(n: int, a: int = 64) -> int:
    return (n + a - 1) // a * a


def _raw_call(store: wasmtime.Store, fn: wasmtime.Func, args: Any, n: int) -> wasmtime.Trap | str | None:
    """One unchecked call (types were checked at load); the trap or error, or None."""
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    err = ffi.wasmtime_func_call_unchecked(store._context(), ctypes.byref(fn._func), args, n, ctypes.byref(trap))
    if err:
        return str(wasmtime.WasmtimeError._from_ptr(err))
    return wasmtime.Trap._from_ptr(trap) if trap else None


class _Worker:
    """Instance t >= 1 and the Python thread that keeps it inside wt_worker(t)."""

    def __init__(self, tid: int, store: wasmtime.Store, inst: wasmtime.Instance, stack_top: int):
        ex = inst.exports(store)
        self.tid, self.store, self.stack_top = tid, store, stack_top
        self.fn, self.ctl, self.sp = ex["wt_worker"], ex["wt_pool_ctl"], ex["__stack_pointer"]
        self.thread: threading.Thread | None = None

    def run(self, on_error: Callable[[int, wasmtime.Trap | str], None], closing: threading.Event) -> None:
        args = (ffi.wasmtime_val_raw_t * 1)()
        while True:
            self.sp.set_value(self.store, self.stack_top)
            args[0].i32 = self.tid
            failure = _raw_call(self.store, self.fn, args, 1)
            if failure is None or closing.is_set():
                return  # wt_worker returned: the pool quit
            on_error(self.tid, failure)  # trapped inside a chunk: count it done and failed, keep serving
            self.sp.set_value(self.store, self.stack_top)
            self.ctl(self.store, CTL_FAILED, self.tid)


def _shutdown(ctl: Callable[[int, int], Any], closing: threading.Event, workers: list[_Worker]) -> None:
    closing.set()
    with contextlib.suppress(wasmtime.WasmtimeError, wasmtime.Trap):
        ctl(CTL_QUIT, 0)
    for w in workers:
        if w.thread is not None:
            w.thread.join(timeout=5)


class VariantModule(WasmModule):
    """A loaded artifact running build `spec` on `threads` threads (see the module docstring)."""

    def __init__(self, path: str | Path, *, variant: str, threads: int = 1, **options: Any):
        """variant: the name of a build in the manifest's compiler.variants (runtime/variants.py)."""
        if options.get("fuel") is not None and threads > 1:
            raise ThreadsError("fuel metering counts one thread's instructions: use threads=1 with fuel")
        t0 = time.perf_counter()
        super().__init__(path, **options)  # every check of model.wasm's load, and its weights in memory
        specs = parse_variants(self.manifest, str(self.path / MANIFEST))  # the verified manifest's
        named = [s for s in specs if s.name == variant]
        if not named:
            raise ThreadsError(f"{self.path} has no {variant!r} build (it has {[s.name for s in specs]})")
        spec = named[0]
        if threads > 1 and not spec.threads:
            raise ThreadsError(f"the {spec.name!r} build is single-threaded: pass threads=1")
        if threads > spec.max_threads:
            raise ThreadsError(f"the {spec.name!r} build runs at most {spec.max_threads} threads, not {threads}")
        m, where = self.manifest, str(Path(path) / spec.file)
        weights = np.frombuffer(self._buf, np.uint8, m.weights_bytes, self.W).copy()  # verified bytes
        verify = options.get("verify", True)
        wasm = read_verified(self.path, m, spec.file, verify)
        heap_base = check_variant(wasm, spec.threads, m.entry, where)
        fuel_on, epoch_on = self.fuel is not None, self.deadline is not None
        try:
            mod, self.module_source = engines.module(
                wasm, fuel_on, epoch_on, self.settings, cache=verify, features=spec.features
            )
        except wasmtime.WasmtimeError as e:
            raise ArtifactError(f"{where} is not a valid module: {e}") from None
        check_compiled(mod, spec.threads, m.entry, len(m.symbols), where)
        self.spec, self.threads = spec, threads
        self.W = _align(heap_base)
        self.A = _align(self.W + m.weights_bytes)
        self._arena_end = self.A + m.arena_bytes
        stacks = _align(self._arena_end, 16)
        need = _align(stacks + (threads - 1) * spec.stack_bytes, PAGE) if spec.threads else _align(self._arena_end, PAGE)
        limit = options.get("memory_limit")
        if limit is not None and int(limit) < need:
            raise MemoryLimitError(
                f"model {self.name!r} on {threads} thread(s) of the {spec.name!r} build needs {need:,} bytes of "
                f"memory (weights, arena and {threads - 1} worker stacks); memory_limit={int(limit):,} is below that"
            )
        self.memory_bytes = need
        self._engine = engines.engine(fuel_on, epoch_on, spec.features)
        self._closing = threading.Event()
        self._workers: list[_Worker] = []
        self._worker_errors: list[tuple[int, wasmtime.Trap | str]] = []
        self._errors_lock = threading.Lock()
        try:
            if spec.threads:
                self._start_threaded(mod, weights, stacks, need)
            else:
                self._start_single(mod, weights, need)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            self.close()
            raise ArtifactError(f"{where} cannot be instantiated: {e}") from None
        self.load_ms = (time.perf_counter() - t0) * 1e3

    # ---- instantiation ---------------------------------------------------------------------------
    def _store(self, memory_bytes: int) -> wasmtime.Store:
        store = wasmtime.Store(self._engine)
        store.set_limits(memory_size=memory_bytes, table_elements=0, instances=1, tables=0, memories=1)
        if self.deadline is not None:  # each call sets the leader's deadline; workers and loading have none
            store.set_epoch_deadline(NO_DEADLINE)
        if self.fuel is not None:
            store.set_fuel(self.fuel)
        return store

    def _adopt(self, store: wasmtime.Store, inst: wasmtime.Instance, base: int, size: int) -> None:
        ex = inst.exports(store)
        self.store, self._fn, self._sp = store, ex[self.manifest.entry], ex["__stack_pointer"]
        self._sp0 = self._sp.value(store)
        self._buf = (ctypes.c_ubyte * size).from_address(base)

    def _start_single(self, mod: wasmtime.Module, weights: np.ndarray, need: int) -> None:
        store = self._store(need)
        inst = wasmtime.Instance(store, mod, [])
        mem = inst.exports(store)["memory"]
        grow = need // PAGE - mem.size(store)
        if grow > 0:
            mem.grow(store, grow)
        self._mem = mem
        self._adopt(store, inst, ctypes.addressof(mem.data_ptr(store).contents), mem.data_len(store))
        np.frombuffer(self._buf, np.uint8, len(weights), self.W)[:] = weights

    def _start_threaded(self, mod: wasmtime.Module, weights: np.ndarray, stacks: int, need: int) -> None:
        pages = need // PAGE
        shared = _SharedMemory(self._engine, wasmtime.MemoryType(wasmtime.Limits(pages, pages), shared=True))
        self._mem = shared  # the model.wasm instance's memory is released
        base, size = ctypes.addressof(shared.data_ptr().contents), shared.data_len()
        if size < need:
            raise ArtifactError(f"the shared memory is {size:,} bytes, {need:,} needed")
        leader = self._store(0)
        inst = wasmtime.Instance(leader, mod, [shared])  # runs the data initializer, once
        self._adopt(leader, inst, base, size)
        np.frombuffer(self._buf, np.uint8, len(weights), self.W)[:] = weights
        self._ctl_fn = inst.exports(leader)["wt_pool_ctl"]
        for t in range(1, self.threads):
            store = self._store(0)
            top = stacks + t * self.spec.stack_bytes
            self._workers.append(_Worker(t, store, wasmtime.Instance(store, mod, [shared]), top))
        self.ctl(CTL_THREADS, self.threads)
        self.ctl(CTL_CAN_BLOCK, 1)
        for w in self._workers:
            w.thread = threading.Thread(
                target=w.run, args=(self._on_worker_error, self._closing), name=f"wasm-torch-{self.name}-{w.tid}",
                daemon=True,
            )
            w.thread.start()
        ctl = lambda op, arg, s=leader, f=self._ctl_fn: f(s, op, arg)  # noqa: E731 - no reference to self
        self._finalizer = weakref.finalize(self, _shutdown, ctl, self._closing, self._workers)

    # ---- the pool --------------------------------------------------------------------------------
    def ctl(self, op: int, arg: int = 0) -> int:
        """wt_pool_ctl on the leader (threaded builds): the pool's controls and counters."""
        if not self.spec.threads:
            raise ThreadsError(f"the {self.spec.name!r} build has no thread pool")
        if self.deadline is not None:  # a control call is never interrupted (each model call sets its own)
            self.store.set_epoch_deadline(NO_DEADLINE)
        return int(self._ctl_fn(self.store, op, arg))

    def _on_worker_error(self, tid: int, failure: wasmtime.Trap | str) -> None:
        with self._errors_lock:
            self._worker_errors.append((tid, failure))

    def _invoke(self) -> None:
        if self._closing.is_set():
            raise ThreadsError(f"{self.name}: the module was closed")
        try:
            super()._invoke()
        except ExecutionError as e:
            if not self.spec.threads:
                raise
            self._recover()
            with self._errors_lock:
                failures, self._worker_errors = self._worker_errors, []
            if failures:
                tid, failure = failures[0]
                if isinstance(failure, wasmtime.Trap):
                    try:
                        self._raise_trap(failure)
                    except ExecutionError as we:
                        raise type(we)(f"{we} (in worker thread {tid})") from e
                raise TrapError(f"{self.name}: worker thread {tid}: {failure}") from e
            raise

    def _recover(self) -> None:
        """After a trap of the leader: no chunk of the job is claimed any more, and the workers that
        are inside one finish it before the next call reuses the arena."""
        self.ctl(CTL_RESET)
        end = time.monotonic() + RECOVER_SECONDS
        while self.ctl(CTL_BUSY) > 0:
            if time.monotonic() > end:
                self.close()
                raise ThreadsError(f"{self.name}: worker threads did not finish within {RECOVER_SECONDS} s; closed")
            time.sleep(0.0002)

    # ---- introspection ---------------------------------------------------------------------------
    def thread_stats(self, clear: bool = False) -> dict[str, Any]:
        """Chunks each thread ran and parallel jobs published since the last clear (threaded builds):
        what shows that more than one thread worked."""
        if not self.spec.threads:
            return {"threads": 1, "chunks": [], "jobs": 0}
        out = {
            "threads": self.threads,
            "chunks": [self.ctl(CTL_CHUNKS, t) for t in range(self.threads)],
            "jobs": self.ctl(CTL_JOBS),
        }
        if clear:
            self.ctl(CTL_CLEAR)
        return out

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "variant": self.spec.name, "threads": self.threads}

    def close(self) -> None:
        """Stop the worker threads (also done when the module is garbage-collected or at exit)."""
        fin = getattr(self, "_finalizer", None)
        if fin is not None:
            fin()
        self._closing.set()

    def __enter__(self) -> VariantModule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, variant={self.spec.name!r}, threads={self.threads})"
