"""`load`: the one entry point that picks how an artifact runs — which build (runtime/variants.py)
and on how many threads (runtime/threads.py) — and returns a `WasmModule` to call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact import MANIFEST, read_manifest, read_manifest_bytes
from ..config import settings as load_settings
from .loader import check_signature_first
from .module import WasmModule
from .threads import VariantModule
from .variants import check_threads, choose, default_threads, engine_features, parse_variants


def load(path: str | Path, *, threads: int | None = None, variant: str = "auto", **options: Any) -> WasmModule:
    """Load a compiled artifact folder.

    threads: intra-op threads for each call (default: the machine's cores, at most 8 — or 1 when
    fuel or memory_limit is given, since both are sized for one thread; 1 = today's single-threaded
    path). N threads run N instances of the module over one shared memory (the
    weights once); results are bit-identical whatever N. An artifact without a threaded build, or
    an engine without wasm threads, runs on one thread (a ThreadsUnavailableWarning says why when
    you asked for more).
    variant: which build to run — "auto" (the fastest this engine supports: relaxed SIMD where
    available), "simd128" (only builds bit-identical to model.wasm on every host, as the edge
    network needs), or a build's name from the manifest (e.g. "relaxed-threads").
    Options: memory_limit (bytes), deadline (s), fuel (needs threads=1), verify; integrity:
    trusted_keys (.pub paths or public keys: signatures required unless require_signed=False,
    which checks only signatures that exist), name (the release name the signature must carry;
    default the folder's name, '*' for any), releases (a release-store file for rollback
    protection; default WASM_TORCH_RELEASES), keyring (Keyring or keyring file, for
    weights.bin.enc; default from WASM_TORCH_KEYRING / WASM_TORCH_KEYS). verify=False skips the
    sha256 checks and the compiled-module cache. Every malformed artifact raises ArtifactError;
    a bad threads / variant value raises ThreadsError.
    """
    asked = check_threads(threads)
    # Not asked: the cores — unless fuel (meters one thread) or a memory cap (sized for one instance:
    # every extra thread needs its own stack) says the caller planned for one thread.
    capped = options.get("fuel") is not None or options.get("memory_limit") is not None
    n = asked if asked is not None else (1 if capped else default_threads())
    folder = Path(path)
    # The manifest is read here only to choose; VariantModule re-reads the build from the manifest it
    # verified (signature, schema, hashes) before using anything. With signatures asked for, they are
    # checked before these bytes are parsed at all.
    raw = read_manifest_bytes(folder)
    check_signature_first(folder, raw, options, options.get("settings") or load_settings())
    specs = parse_variants(read_manifest(folder, raw), str(folder / MANIFEST))
    spec = choose(specs, n, variant, engine_features(), str(folder), warn=asked is not None)
    if spec.plain:
        return WasmModule(path, **options)
    return VariantModule(path, variant=spec.name, threads=n if spec.threads else 1, **options)
