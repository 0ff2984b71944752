"""wasmtime engines, compiled-module cache and the epoch ticker (for wall-clock deadlines).

Compiling a module with Cranelift costs milliseconds to seconds; we compile once per
(wasm sha256, wasmtime version, engine flags), keep it in memory for this process and serialize
it to the cache folder for the next one (A10). Engines differ by whether they meter fuel and
check epochs, because both add checks to the compiled code (~30–40% slower in tight loops per
shared/reference/wasm-runtimes.md), so they are opt-in.
"""

from __future__ import annotations

import hashlib
import threading
import time
from importlib.metadata import version
from pathlib import Path

import wasmtime

from ..config import Settings

TICK_SECONDS = 0.002  # epoch granularity for deadlines

_lock = threading.Lock()
_engines: dict[tuple[bool, bool], wasmtime.Engine] = {}
_modules: dict[tuple[str, bool, bool], wasmtime.Module] = {}


def engine(fuel: bool, epoch: bool) -> wasmtime.Engine:
    key = (fuel, epoch)
    with _lock:
        if key not in _engines:
            cfg = wasmtime.Config()
            cfg.consume_fuel = fuel
            cfg.epoch_interruption = epoch
            cfg.wasm_simd = True
            cfg.wasm_bulk_memory = True
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


def module(
    wasm: bytes, wasm_sha: str, fuel: bool, epoch: bool, settings: Settings
) -> tuple[wasmtime.Module, str]:
    """A compiled module for these flags, and where it came from ('memory' | 'disk' | 'compiled')."""
    key = (wasm_sha, fuel, epoch)
    with _lock:
        if key in _modules:
            return _modules[key], "memory"
    eng = engine(fuel, epoch)
    tag = hashlib.sha256(f"{wasm_sha}-{version('wasmtime')}-{int(fuel)}{int(epoch)}".encode()).hexdigest()[
        :32
    ]
    path = Path(settings.cache_dir) / "modules" / f"{tag}.cwasm"
    source = "compiled"
    mod = None
    if path.exists() and not settings.no_cache:
        try:
            mod = wasmtime.Module.deserialize_file(eng, str(path))
            source = "disk"
        except wasmtime.WasmtimeError:
            mod = None  # stale or foreign cache entry: recompile below
    if mod is None:
        mod = wasmtime.Module(eng, wasm)
        if not settings.no_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(mod.serialize())
            tmp.replace(path)
    with _lock:
        _modules[key] = mod
    return mod, source
