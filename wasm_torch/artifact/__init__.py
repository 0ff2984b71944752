"""The contract between compiler and runtime: an artifact folder and its manifest.

    out/<name>/
      model.wasm      freestanding wasm32 module: exports memory, __heap_base, wt_run
      weights.bin     every constant, raw little-endian, each at a 64-byte aligned offset
      manifest.json   what is below (schema documented in docs/artifact-format.md)

Nothing here imports torch or the compiler: servers and edge nodes read artifacts with only
numpy + wasmtime. Integrity: every file's sha256 is in the manifest and checked on load.
"""

from .dims import eval_dim
from .files import file_entry, sha256_file, verify_bytes, verify_files
from .layout import ALIGN, ENCRYPTED_WEIGHTS, FORMAT, MANIFEST, SIGNATURE, WASM, WEIGHTS
from .manifest import Artifact, Manifest, SymbolSpec, TensorSpec, read_manifest, read_manifest_bytes
from .write import MemorySpec, WeightSpec, add_manifest_fields, write_artifact

__all__ = [
    "ALIGN",
    "ENCRYPTED_WEIGHTS",
    "FORMAT",
    "MANIFEST",
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
    "eval_dim",
    "file_entry",
    "read_manifest",
    "read_manifest_bytes",
    "sha256_file",
    "verify_bytes",
    "verify_files",
    "write_artifact",
]
