"""The contract between compiler and runtime: an artifact folder and its manifest.

    out/<name>/
      model.wasm      freestanding wasm32 module: exports memory, __heap_base, wt_run
      weights.bin     every constant, raw little-endian, each at a 64-byte aligned offset
      manifest.json   what is below (schema documented in docs/artifact-format.md)

Nothing here imports torch or the compiler: servers and edge nodes read artifacts with only
numpy + wasmtime. Integrity: every file's sha256 is in the manifest and checked on load.
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ArtifactError, IntegrityError

FORMAT = "wasm-torch/1"
MANIFEST = "manifest.json"
WASM = "model.wasm"
WEIGHTS = "weights.bin"
ENCRYPTED_WEIGHTS = "weights.bin.enc"  # AES-256-GCM at rest instead of weights.bin (encryption.py)
SIGNATURE = "signature.json"  # detached signatures over manifest.json (signing.py)
ALIGN = 64


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


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


def verify_bytes(folder: str | Path, manifest: Manifest, name: str, data: bytes | memoryview) -> None:
    """Refuse file contents (already read into memory) that do not match their sha256 in the manifest."""
    entry = manifest.raw["files"][name]
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise IntegrityError(
            f"{Path(folder) / name} does not match its sha256 in {MANIFEST}: the file is corrupt or was "
            "tampered with. Recompile the model or restore the original file."
        )


def verify_files(folder: str | Path, manifest: Manifest, skip: tuple[str, ...] = ()) -> None:
    """Refuse an artifact whose files do not match the hashes in its manifest.

    `skip`: names checked elsewhere (an encrypted weights.bin is checked after decryption).
    """
    folder = Path(folder)
    for name, entry in manifest.raw["files"].items():
        if name in skip:
            continue
        p = folder / name
        if not p.exists():
            raise ArtifactError(f"{p} is missing (listed in {MANIFEST}); the artifact is incomplete")
        if p.stat().st_size != entry["bytes"] or sha256_file(p) != entry["sha256"]:
            raise IntegrityError(
                f"{p} does not match its sha256 in {MANIFEST}: the file is corrupt or was tampered with. "
                "Recompile the model or restore the original file."
            )


_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def eval_dim(expr: int | str, symbols: dict[str, int]) -> int:
    """Evaluate a manifest dimension ('seq', '(seq * 12)', '((seq) // (2))') without eval()."""
    if isinstance(expr, int):
        return expr

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in symbols:
            return int(symbols[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("max", "min"):
            vals = [ev(a) for a in node.args]
            return max(vals) if node.func.id == "max" else min(vals)
        raise ArtifactError(f"bad dimension expression {expr!r} in manifest")

    return ev(ast.parse(expr, mode="eval"))
