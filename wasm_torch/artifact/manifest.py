"""manifest.json: its typed view (`Manifest`, `TensorSpec`, `SymbolSpec`) and reading it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from .layout import FORMAT, MANIFEST, WASM, WEIGHTS


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: float32, int64, int32, uint8, int8, bool
    shape: tuple[int | str, ...]  # str = a symbolic expression over the manifest's symbols
    offset: int = 0  # byte offset in the arena (runtime use)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "offset": self.offset}

    @staticmethod
    def from_json(d: dict[str, Any]) -> TensorSpec:
        return TensorSpec(d["name"], d["dtype"], tuple(d["shape"]), int(d.get("offset", 0)))


@dataclass(frozen=True)
class SymbolSpec:
    name: str
    min: int
    max: int
    input: str
    axis: int


@dataclass(frozen=True)
class Manifest:
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def entry(self) -> str:
        return self.raw["entry"]

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(d) for d in self.raw["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(d) for d in self.raw["outputs"]]

    @property
    def symbols(self) -> list[SymbolSpec]:
        return [SymbolSpec(**d) for d in self.raw.get("symbols", [])]

    @property
    def weights_bytes(self) -> int:
        return int(self.raw["memory"]["weights_bytes"])

    @property
    def arena_bytes(self) -> int:
        return int(self.raw["memory"]["arena_bytes"])




@dataclass
class Artifact:
    """A compiled model folder plus what the compiler measured while making it.

    `wasm_torch.load(art)` loads it (an Artifact is a path-like of its folder)."""

    path: Path
    manifest: Manifest
    report: dict[str, Any] = field(default_factory=dict)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    @property
    def code_bytes(self) -> int:
        return int(self.manifest.raw["files"][WASM]["bytes"])

    @property
    def weights_bytes(self) -> int:
        return int(self.manifest.raw["files"][WEIGHTS]["bytes"])


def read_manifest_bytes(folder: str | Path) -> bytes:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(
            f"{folder} is not an artifact folder (compile a model with wasm_torch.compile first)"
        )
    if not path.exists():
        raise ArtifactError(f"{path} is missing: {folder} is not a wasm-torch artifact")
    return path.read_bytes()


def read_manifest(folder: str | Path, data: bytes | None = None) -> Manifest:
    """Parse the manifest; pass `data` (bytes already read, e.g. signature-checked) to parse exactly those."""
    path = Path(folder) / MANIFEST
    if data is None:
        data = read_manifest_bytes(folder)
    try:
        raw = json.loads(data.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}); recompile the model") from e
    if raw.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {raw.get('format')!r}, this runtime reads {FORMAT!r}; recompile")
    for key in ("name", "entry", "inputs", "outputs", "memory", "files"):
        if key not in raw:
            raise ArtifactError(f"{path}: missing field {key!r}; recompile the model")
    return Manifest(raw)


