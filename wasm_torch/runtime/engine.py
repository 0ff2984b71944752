"""wasmtime engines, the compiled-module cache and the epoch ticker (for wall-clock deadlines).

Compiling a module with Cranelift costs milliseconds to seconds; we compile once per
(wasm sha256, wasmtime version, engine profile, engine flags), keep it in memory for this process
(a small LRU) and serialize it to the cache folder for the next one. Engines differ by whether
they meter fuel and check epochs, because both add checks to the compiled code (slower in tight
loops), so they are opt-in.

The cache holds native code that wasmtime runs without re-checking it, so:

- it is keyed by the sha256 of the wasm bytes handed to `module()` — computed here from the bytes
  that will be compiled, never taken from a manifest — so no claim can put code under another key;
- only verified loads use it (`cache=False` for `verify=False`): an unverified load compiles in
  private and never writes where a verified load reads;
- a cache file starts with a magic and the sha256 of the serialized code, checked before
  deserializing (a truncated or corrupted file is recompiled, never run);
- the folder and file must belong to this user and not be writable by group or others, else the
  disk cache is skipped (compiled fresh) and a warning logged.

Engine profile: the proposals a model never needs (multi-memory, memory64, threads, GC, function
references, exceptions, tail calls, relaxed SIMD, custom page sizes, wide arithmetic, stack
switching, multi-value) are switched off, so wasmtime itself refuses modules that use them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from importlib.metadata import version
from pathlib import Path

import wasmtime

from ..config import Settings

TICK_SECONDS = 0.002  # epoch granularity for deadlines
PROFILE = "v2-strict"  # bump when the engine configuration changes (part of every cache key)
MAGIC = b"WTCWASM1"
MEMORY_CACHE = 64  # compiled modules kept per process
OFF = ["wasm_gc", "wasm_function_references", "wasm_multi_memory", "wasm_memory64", "wasm_threads", "wasm_exceptions", "wasm_tail_call", "wasm_relaxed_simd", "wasm_custom_page_sizes", "wasm_wide_arithmetic", "wasm_stack_switching", "wasm_multi_value"]

log = logging.getLogger("wasm_torch.runtime")
_lock = threading.Lock()
_engines: dict[tuple[bool, bool, tuple[str, ...]], wasmtime.Engine] = {}
_modules: OrderedDict[tuple[str, bool, bool, tuple[str, ...]], wasmtime.Module] = OrderedDict()
# Proposals a build variant may need (runtime/variants.py): each switches its flags back on, in an
# engine of its own. Relaxed SIMD runs in wasmtime's deterministic mode (the same result on every host).
FEATURE_FLAGS = {
    "threads": ("wasm_threads", "shared_memory"),
    "relaxed_simd": ("wasm_relaxed_simd", "wasm_relaxed_simd_deterministic"),
}


def engine(fuel: bool, epoch: bool, features: tuple[str, ...] = ()) -> wasmtime.Engine:
    features = tuple(sorted(f for f in features if f in FEATURE_FLAGS))
    key = (fuel, epoch, features)
    with _lock:
        if key not in _engines:
            cfg = wasmtime.Config()
            cfg.consume_fuel = fuel
            cfg.epoch_interruption = epoch
            cfg.wasm_simd = True
            cfg.wasm_bulk_memory = True
            for flag in OFF:
                setattr(cfg, flag, False)
            for feature in features:
                for flag in FEATURE_FLAGS[feature]:
                    setattr(cfg, flag, True)
            cfg.cranelift_opt_level = "speed"
            _engines[key] = wasmtime.Engine(cfg)
            if epoch:
                _start_ticker(_engines[key])
        return _engines[key]


def _start_ticker(eng: wasmtime.Engine) -> None:
    def tick() -> None:
        while True:
            time.sleep(TICK_SECONDS)
            eng.increment_epoch()

    threading.Thread(target=tick, name="wasm-torch-epoch", daemon=True).start()


def deadline_ticks(seconds: float) -> int:
    return max(1, int(seconds / TICK_SECONDS + 0.999))


def cache_path(settings: Settings, wasm_sha: str, fuel: bool, epoch: bool, features: tuple[str, ...] = ()) -> Path:
    tag = f"{wasm_sha}-{version('wasmtime')}-{PROFILE}-{int(fuel)}{int(epoch)}" + "".join(f"+{f}" for f in features)
    return Path(settings.cache_dir) / "modules" / f"{hashlib.sha256(tag.encode()).hexdigest()[:32]}.cwasm"


def _private(path: Path) -> bool:
    """Owned by this user and not writable by group or others (POSIX); True elsewhere."""
    if os.name != "posix":
        return True
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not stat.S_ISLNK(
        st.st_mode
    )


def _read_cached(eng: wasmtime.Engine, path: Path) -> wasmtime.Module | None:
    if not path.exists():
        return None
    if not (_private(path.parent) and _private(path)):
        log.warning("ignoring the compiled-module cache %s: it is writable by other users", path.parent)
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 32
    if data[: len(MAGIC)] != MAGIC or hashlib.sha256(data[head:]).digest() != data[len(MAGIC) : head]:
        return None  # truncated, corrupt or foreign: recompile
    try:
        return wasmtime.Module.deserialize(eng, data[head:])
    except wasmtime.WasmtimeError:
        return None  # another wasmtime build: recompile


def _write_cached(mod: wasmtime.Module, path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(path.parent):
            log.warning("not writing to the compiled-module cache %s: it is writable by other users", path.parent)
            return
        payload = mod.serialize()
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)
    except OSError as e:  # a read-only or full cache folder costs a recompile next time, nothing else
        log.warning("could not write the compiled-module cache %s: %s", path, e)


def module(
    wasm: bytes, fuel: bool, epoch: bool, settings: Settings, cache: bool = True, features: tuple[str, ...] = ()
) -> tuple[wasmtime.Module, str]:
    """A compiled module for these flags, and where it came from ('memory' | 'disk' | 'compiled').

    `cache=False` (unverified loads): compile privately, read and write no cache.
    Raises wasmtime.WasmtimeError for a module wasmtime refuses (the caller translates it)."""
    features = tuple(sorted(f for f in features if f in FEATURE_FLAGS))
    eng = engine(fuel, epoch, features)
    use_cache = cache and not settings.no_cache
    if not use_cache:
        return wasmtime.Module(eng, wasm), "compiled"
    sha = hashlib.sha256(wasm).hexdigest()  # of the bytes compiled below, never a claimed hash
    key = (sha, fuel, epoch, features)
    with _lock:
        if key in _modules:
            _modules.move_to_end(key)
            return _modules[key], "memory"
    path = cache_path(settings, sha, fuel, epoch, features)
    mod, source = _read_cached(eng, path), "disk"
    if mod is None:
        mod, source = wasmtime.Module(eng, wasm), "compiled"
        _write_cached(mod, path)
    with _lock:
        _modules[key] = mod
        while len(_modules) > MEMORY_CACHE:
            _modules.popitem(last=False)
    return mod, source
