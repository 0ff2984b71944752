"""manifest.json: its typed view (`Manifest`, `TensorSpec`, `SymbolSpec`) and reading it.

Reading goes through safeio (a regular file inside the folder, size-bounded), strictjson (no
duplicate keys, NaN, huge integers) and schema.py (every field typed and bounded).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from . import strictjson
from .layout import MANIFEST, MAX_MANIFEST_BYTES, WASM, WEIGHTS
from .safeio import read_regular
from .schema import check_manifest


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
        """From a manifest entry the schema has already checked."""
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
    """A parsed manifest. Constructing one runs the strict schema (schema.py): a Manifest that
    exists is well-formed, whoever built it (the runtime, `info`, serve, signing, the edge network)."""

    raw: dict[str, Any]
    where: str = field(default=MANIFEST, compare=False, repr=False)  # names the file in errors

    def __post_init__(self) -> None:
        check_manifest(self.raw, self.where)

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

    def file(self, name: str) -> tuple[str, int]:
        """(sha256, bytes) the manifest pins for one of its files."""
        e = self.raw["files"][name]
        return e["sha256"], e["bytes"]


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
    """The bytes of `folder/manifest.json`: a regular file inside the folder, at most 16 MiB."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(
            f"{folder} is not an artifact folder (compile a model with wasm_torch.compile first)"
        )
    if not (folder / MANIFEST).exists() and not (folder / MANIFEST).is_symlink():
        raise ArtifactError(f"{folder / MANIFEST} is missing: {folder} is not a wasm-torch artifact")
    return read_regular(folder, MANIFEST, max_bytes=MAX_MANIFEST_BYTES)


def parse_manifest_bytes(data: bytes, where: str) -> Manifest:
    """Strictly parse manifest bytes (strictjson + schema); `where` names the file in errors."""
    raw = strictjson.loads(data, where, max_bytes=MAX_MANIFEST_BYTES, fix="recompile the model")
    return Manifest(raw, where)


def read_manifest(folder: str | Path, data: bytes | None = None) -> Manifest:
    """Parse the manifest; pass `data` (bytes already read, e.g. signature-checked) to parse exactly those."""
    if data is None:
        data = read_manifest_bytes(folder)
    return parse_manifest_bytes(data, str(Path(folder) / MANIFEST))
