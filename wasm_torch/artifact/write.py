"""Writing an artifact folder: the one place that lays out manifest.json (reading is manifest.py).

The compiler hands over typed pieces; this module assembles the manifest, hashes every file it
writes, and never writes outside `folder` (the caller builds in a fresh temporary folder and moves
it into place only when it is complete and validated).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .files import file_entry
from .layout import ALIGN, FORMAT, MANIFEST, WASM, WEIGHTS
from .manifest import Manifest, SymbolSpec, TensorSpec, read_manifest


@dataclass(frozen=True)
class WeightSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # byte offset in weights.bin, a multiple of ALIGN


@dataclass(frozen=True)
class MemorySpec:
    weights_bytes: int
    arena_bytes: int  # the planned arena (buffers reused by liveness)
    arena_unplanned_bytes: int  # what the arena would need without reuse
    peak_live_bytes: int  # the most activation bytes live at once: the lower bound of any plan


def write_artifact(
    folder: Path,
    *,
    name: str,
    entry: str,
    compiler: dict[str, Any],
    symbols: list[SymbolSpec],
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    memory: MemorySpec,
    ops: dict[str, int],
    weights: list[WeightSpec],
    work: dict[str, int | str],
    wasm: bytes,
    weights_blob: bytes,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """Write model.wasm, weights.bin and manifest.json into `folder` (which must exist)."""
    (folder / WASM).write_bytes(wasm)
    (folder / WEIGHTS).write_bytes(weights_blob)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "entry": entry,
        "compiler": compiler,
        "symbols": [asdict(s) for s in symbols],
        "inputs": [t.to_json() for t in inputs],
        "outputs": [t.to_json() for t in outputs],
        "memory": {**asdict(memory), "align": ALIGN},
        "ops": ops,
        "work": work,
        "weights": [{**asdict(w), "shape": list(w.shape)} for w in weights],
        "files": {WASM: file_entry(folder / WASM), WEIGHTS: file_entry(folder / WEIGHTS)},
        **(extra or {}),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return read_manifest(folder)


def add_manifest_fields(folder: Path, fields: dict[str, Any]) -> Manifest:
    """Add top-level fields (e.g. the validation report) to a manifest this process just wrote."""
    raw = json.loads((folder / MANIFEST).read_text())
    raw.update(fields)
    (folder / MANIFEST).write_text(json.dumps(raw, indent=1))
    return read_manifest(folder)
