"""The names, constants and limits of an artifact folder: one place for each.

The limits bound every number a hostile manifest or module could use to make a loader allocate,
loop or read without end. Each is far above what the compiler writes (the largest zoo model:
a 27 KB module, 7 functions, an 18 KB manifest), so only hand-made files ever reach them.
"""

import re

FORMAT = "wasm-torch/1"
MANIFEST = "manifest.json"
WASM = "model.wasm"
WEIGHTS = "weights.bin"
ENCRYPTED_WEIGHTS = "weights.bin.enc"  # AES-256-GCM at rest instead of weights.bin (integrity/encryption.py)
SIGNATURE = "signature.json"  # detached signatures over a release statement (integrity/signing.py)
CASCADE = "cascade.json"  # a small+large cascade folder (serve/cascade.py)
PIPELINE = "pipeline.json"  # a folder of pipeline stages (analyze/pipeline_manifest.py)
DEBUG_FILES = ("model.c", "graph.txt")  # written next to the artifact with WASM_TORCH_DEBUG=2
ALIGN = 64  # every weight and every arena buffer starts at a multiple of this many bytes

# names: model and file names are one path component, never '.', '..', a slash or a control character
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # entry points and symbol names
TENSOR_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
DTYPES = ("float32", "int64", "int32", "uint8", "int8", "bool")  # numpy names the compiler writes
WEIGHT_DTYPES = (*DTYPES, "float16")  # weights may also be IEEE halves (fp16 weights); inputs and outputs not

# limits
MAX_MANIFEST_BYTES = 16 << 20
MAX_SMALL_FILE_BYTES = 1 << 20  # signature.json, cascade.json, pipeline.json
MAX_WASM_BYTES = 1 << 20  # bounds Cranelift's compile time (measured: docs/security.md, Measured)
MAX_MEMORY_BYTES = 1 << 32  # wasm32: 65,536 pages of 64 KiB
MAX_DIM = (1 << 31) - 1
MAX_RANK = 16
MAX_TENSORS = 1024  # inputs, outputs
MAX_SYMBOLS = 16
MAX_WEIGHT_ENTRIES = 1 << 20
MAX_FILES = 16
MAX_EXPR_CHARS = 4096
