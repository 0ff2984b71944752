"""Loading an artifact folder into a sandboxed wasmtime instance: every check, in order, before
anything of the artifact runs.

1. manifest.json is read once (a regular file inside the folder, at most 16 MiB);
2. with trusted keys, signature.json is checked over those exact bytes: signatures, covered files,
   the release name (by default the folder's name), the release store (rollback);
3. the manifest is parsed by the strict schema (artifact/schema.py);
4. model.wasm and weights.bin are read once, size-checked against the manifest before reading,
   and their sha256 checked (weights.bin.enc is decrypted in memory and checked the same way);
5. model.wasm is checked section by section against the manifest (validate.py) — exports and
   their exact types, no imports, no start function, no tables, one bounded memory;
6. wasmtime compiles it (or takes it from the cache, keyed by the sha256 of these bytes; only
   verified loads use the cache), and the entry's type is checked again on the compiled module;
7. store limits are set *before* instantiation: memory capped at what the model needs (or
   memory_limit), no tables, one memory, one instance; then it is instantiated (no code runs:
   there is no start function) and memory is grown once to the planned size.

Every failure is an ArtifactError (IntegrityError / SignatureError / DecryptionError for
integrity, MemoryLimitError when memory_limit is below the need); wasmtime's own errors are
translated here. Load time is bounded: files are size-limited and never FIFOs or devices, the
module is at most 1 MiB with bounded counts, and nothing of the module executes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

from ..artifact import (
    ENCRYPTED_WEIGHTS,
    MANIFEST,
    WASM,
    WEIGHTS,
    Manifest,
    read_manifest,
    read_manifest_bytes,
)
from ..artifact.files import read_verified, verify_bytes, verify_files
from ..config import Settings
from ..errors import ArtifactError, MemoryLimitError, WasmTorchError
from . import engine as engines
from .validate import PAGE, check_compiled, check_memory, check_module, read_wasm


def _align(n: int, a: int = 64) -> int:
    return (n + a - 1) // a * a


@dataclass
class Loaded:
    manifest: Manifest
    manifest_sha256: str  # of the bytes that were parsed (and signature-checked)
    signature: Any  # integrity.signing.Verified, or None when no signature was checked
    store: wasmtime.Store
    memory: wasmtime.Memory
    entry: wasmtime.Func
    stack_pointer: wasmtime.Global
    W: int  # where weights.bin was copied
    A: int  # the arena
    memory_bytes: int
    module_source: str  # 'memory' | 'disk' | 'compiled'


def _verify_signature(
    path: Path,
    raw_manifest: bytes,
    verify: bool,
    trusted_keys: Iterable[Any] | None,
    require: bool | None,
    name: str | None,
    releases: Any,
    settings: Settings,
    use_store: bool = True,
) -> Any:
    keys = None if trusted_keys is None else list(trusted_keys)
    require = keys is not None if require is None else require
    if not require and keys is None:
        if name is not None or releases is not None:
            raise ArtifactError("name= and releases= bind a signed release: give trusted_keys as well")
        return None
    if not verify:
        raise ArtifactError("verify=False cannot be combined with trusted_keys / require_signed")
    if not keys:
        raise ArtifactError(
            "signature checks need trusted_keys (.pub files or public keys, e.g. from `wasm-torch keygen`)"
        )
    try:  # lazy: cryptography is needed only for signed or encrypted artifacts
        from ..integrity.signing import verify_release
    except ImportError as e:
        raise ArtifactError(f"signature checks need `cryptography>=48` (pip install cryptography): {e}") from e
    store = (releases if releases is not None else settings.release_store) if use_store else None
    return verify_release(path, keys, name=name, require=require, store=store, have={MANIFEST: raw_manifest})


def check_signature_first(path: Path, raw_manifest: bytes, options: dict[str, Any], settings: Settings) -> None:
    """The signature check alone, for a caller that must parse the manifest before `load_artifact`
    (which checks again, with the release store): nothing of an unverified manifest is parsed when
    signatures are asked for."""
    if options.get("trusted_keys") is None and not options.get("require_signed"):
        return
    _verify_signature(path, raw_manifest, options.get("verify", True), options.get("trusted_keys"),
                      options.get("require_signed"), options.get("name"), None, settings,
                      use_store=False)  # load_artifact admits the release into the store, once  # fmt: skip


def _weights(path: Path, m: Manifest, raw_manifest: bytes, keyring: Any, verify: bool, settings: Settings) -> bytes:
    if (path / ENCRYPTED_WEIGHTS).exists() or (path / ENCRYPTED_WEIGHTS).is_symlink():
        try:  # weights.bin.enc wins over a leftover weights.bin
            from ..integrity.encryption import as_keyring, decrypt_file
        except ImportError as e:
            raise ArtifactError(f"{ENCRYPTED_WEIGHTS} needs `cryptography>=48` to decrypt: {e}") from e
        plain = decrypt_file(path / ENCRYPTED_WEIGHTS, as_keyring(keyring, settings), raw_manifest)
        verify_bytes(path, m, WEIGHTS, plain)  # authenticated already; this binds it to the manifest
        return bytes(plain)
    return read_verified(path, m, WEIGHTS, verify)


def load_artifact(
    path: Path,
    *,
    settings: Settings,
    memory_limit: int | None = None,
    deadline: float | None = None,
    fuel: int | None = None,
    verify: bool = True,
    trusted_keys: Iterable[Any] | None = None,
    require_signed: bool | None = None,
    keyring: Any = None,
    name: str | None = None,
    releases: Any = None,
) -> Loaded:
    """Steps 1-7 of the module docstring."""
    raw_manifest = read_manifest_bytes(path)
    signature = _verify_signature(path, raw_manifest, verify, trusted_keys, require_signed, name, releases, settings)
    m = read_manifest(path, raw_manifest)  # the bytes that were verified
    if verify:
        verify_files(path, m, skip=(WASM, WEIGHTS))  # any other listed file
    wasm = read_verified(path, m, WASM, verify)
    where = str(path / WASM)
    info = read_wasm(wasm, where)
    heap_base = check_module(info, m.entry, len(m.symbols), where)
    W = _align(heap_base)
    A = _align(W + m.weights_bytes)
    memory_bytes = _align(A + m.arena_bytes, PAGE)
    if memory_bytes > 1 << 32:
        raise ArtifactError(f"{path}: the model needs {memory_bytes:,} bytes of memory, over wasm32's 4 GiB")
    cap = memory_bytes if memory_limit is None else int(memory_limit)
    if cap < memory_bytes:
        raise MemoryLimitError(
            f"model {m.name!r} needs {memory_bytes:,} bytes of linear memory (weights {m.weights_bytes:,} + "
            f"arena {m.arena_bytes:,}); memory_limit={cap:,} is below that. Raise memory_limit or recompile "
            "with smaller dynamic-dimension maxima."
        )
    check_memory(info, memory_bytes, cap, where)
    weights = _weights(path, m, raw_manifest, keyring, verify, settings)
    if len(weights) != m.weights_bytes:
        raise ArtifactError(f"{path / WEIGHTS} has {len(weights):,} bytes, the manifest says {m.weights_bytes:,}")
    fuel_on, epoch_on = fuel is not None, deadline is not None
    try:
        mod, source = engines.module(wasm, fuel_on, epoch_on, settings, cache=verify)
    except wasmtime.WasmtimeError as e:
        raise ArtifactError(f"{where} is not a valid module: {e}") from None
    check_compiled(mod, m.entry, len(m.symbols), where)
    store = wasmtime.Store(engines.engine(fuel_on, epoch_on))
    store.set_limits(memory_size=cap, table_elements=0, instances=1, tables=0, memories=1)
    if deadline is not None:
        store.set_epoch_deadline(engines.deadline_ticks(deadline))
    if fuel is not None:
        store.set_fuel(fuel)
    try:
        inst = wasmtime.Instance(store, mod, [])
        exports = inst.exports(store)
        mem, heap, fn, sp = (exports.get(k) for k in ("memory", "__heap_base", m.entry, "__stack_pointer"))
        if not (isinstance(mem, wasmtime.Memory) and isinstance(fn, wasmtime.Func)
                and isinstance(heap, wasmtime.Global) and isinstance(sp, wasmtime.Global)):  # fmt: skip
            raise ArtifactError(f"{where} lacks the exports memory, __heap_base, __stack_pointer, {m.entry}")
        if heap.value(store) != heap_base:
            raise ArtifactError(f"{where}: __heap_base is not the constant its global declares")
        grow = memory_bytes // PAGE - mem.size(store)
        if grow > 0:
            mem.grow(store, grow)
    except WasmTorchError:
        raise
    except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
        raise ArtifactError(f"{where} cannot be instantiated within its limits: {e}") from None
    if mem.data_len(store) < memory_bytes:
        raise ArtifactError(f"{where}: linear memory is {mem.data_len(store):,} bytes, {memory_bytes:,} needed")
    base = mem.data_ptr(store)
    np.ctypeslib.as_array(base, shape=(mem.data_len(store),))[W : W + len(weights)] = np.frombuffer(weights, np.uint8)
    return Loaded(m, hashlib.sha256(raw_manifest).hexdigest(), signature, store, mem, fn, sp, W, A,
                  memory_bytes, source)  # fmt: skip
