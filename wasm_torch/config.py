"""The one place that reads environment knobs. Everything else receives a `Settings`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    cache_dir: Path  # compiled wasm and precompiled wasmtime modules, keyed by content hash
    debug: int  # 0 quiet; 1 keep build dirs; 2 also dump IR text and C source next to the artifact
    no_cache: bool  # bypass every cache (for benchmarking cold paths)
    keyring_file: Path | None = None  # WASM_TORCH_KEYRING: keyring for encrypted weights (encryption.py)
    keyring_inline: str | None = field(default=None, repr=False)  # WASM_TORCH_KEYS: "id:base64,..." (secret)
    release_store: Path | None = None  # WASM_TORCH_RELEASES: rollback protection (integrity/releases.py)


def settings() -> Settings:
    default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wasm_torch"
    return Settings(
        cache_dir=Path(os.environ.get("WASM_TORCH_CACHE", default_cache)),
        debug=int(os.environ.get("WASM_TORCH_DEBUG", "0") or 0),
        no_cache=os.environ.get("WASM_TORCH_NO_CACHE", "") not in ("", "0"),
        keyring_file=Path(os.environ["WASM_TORCH_KEYRING"]) if os.environ.get("WASM_TORCH_KEYRING") else None,
        keyring_inline=os.environ.get("WASM_TORCH_KEYS") or None,
        release_store=Path(os.environ["WASM_TORCH_RELEASES"]) if os.environ.get("WASM_TORCH_RELEASES") else None,
    )
