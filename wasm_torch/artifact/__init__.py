"""The contract between compiler and runtime: an artifact folder and its manifest.

    out/<name>/
      model.wasm      freestanding wasm32 module: exports memory, __heap_base, wt_run
      weights.bin     every constant, raw little-endian, each at a 64-byte aligned offset
      manifest.json   what is below (schema documented in docs/artifact-format.md)

Nothing here imports torch or the compiler: servers and edge nodes read artifacts with only
numpy + wasmtime. Integrity: every file's sha256 is in the manifest and checked on load; the
manifest schema is strict (schema.py), files are opened only as regular files inside the folder
(safeio.py), and `publish` replaces an output folder only when it is one of ours (publish.py).
"""

from .dims import eval_dim, parse_dim
from .files import file_entry, read_verified, sha256_file, verify_bytes, verify_files
from .layout import (
    ALIGN,
    CASCADE,
    ENCRYPTED_WEIGHTS,
    FORMAT,
    MANIFEST,
    NAME_RE,
    PIPELINE,
    SIGNATURE,
    WASM,
    WEIGHTS,
)
from .manifest import (
    Artifact,
    Manifest,
    SymbolSpec,
    TensorSpec,
    parse_manifest_bytes,
    read_manifest,
    read_manifest_bytes,
)
from .publish import artifact_kind, check_target, publish
from .safeio import open_regular, read_regular
from .write import MemorySpec, WeightSpec, add_manifest_fields, write_artifact

__all__ = [
    "ALIGN",
    "CASCADE",
    "ENCRYPTED_WEIGHTS",
    "FORMAT",
    "MANIFEST",
    "NAME_RE",
    "PIPELINE",
    "SIGNATURE",
    "WASM",
    "WEIGHTS",
    "Artifact",
    "Manifest",
    "MemorySpec",
    "SymbolSpec",
    "TensorSpec",
    "WeightSpec",
    "add_manifest_fields",
    "artifact_kind",
    "check_target",
    "eval_dim",
    "file_entry",
    "open_regular",
    "parse_dim",
    "parse_manifest_bytes",
    "publish",
    "read_manifest",
    "read_manifest_bytes",
    "read_regular",
    "read_verified",
    "sha256_file",
    "verify_bytes",
    "verify_files",
    "write_artifact",
]
