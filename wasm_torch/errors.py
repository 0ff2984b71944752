"""One exception tree for all of wasm-torch.

    WasmTorchError                      root: catch this to catch everything we raise
    ├── CompileError                    anything that stops `compile()`
    │   ├── ExportError                 torch.export could not trace the model
    │   ├── UnsupportedOpError          an aten op (or dtype) we cannot lower; names op, source line, list
    │   ├── GraphError                  the IR verifier found an inconsistent graph (a compiler bug)
    │   ├── BuildError                  zig cc failed (stderr attached)
    │   ├── ValidationError             wasm output disagrees with PyTorch beyond tolerance (or, for
    │   │                               fp16 / int8 weights, below the agreement bar: cosine, top-1)
    │   ├── QuantizationError           fp16 / int8 asked of a model with nothing to quantize, or bad
    │   │                               calibration inputs (count, shape, dtype)
    │   └── PartitionError              a model cannot be split into the stages asked for
    ├── ArtifactError                   an artifact folder is missing, malformed or from another version
    │   ├── IntegrityError              a file's sha256 does not match the manifest (tampered/corrupt)
    │   │   ├── SignatureError          signature.json missing (when required), invalid, or by untrusted keys
    │   │   └── DecryptionError         weights.bin.enc fails authentication: wrong key, tampered, swapped
    │   └── KeyringError                a key file or keyring is unusable, or lacks the key id a file needs
    ├── DependencyError                 an optional extra is not installed (e.g. `compile` in a runtime-only
    │                                   install); the message names the `pip install` that fixes it
    ├── BenchmarkError                  `wasm-torch bench` cannot run: unknown model name, a peer runtime
    │                                   (Node, onnxruntime-web) missing or failing
    ├── LearningError                   the autotuner / pattern memory cannot do what was asked
    │                                   (corrupt memory file, empty search space, budget too small)
    ├── NetworkError                    the edge network refused a message or cannot reach a peer
    │   └── LedgerError                 a ledger entry is malformed, forged, or would overdraw
    └── ExecutionError                  anything that stops a call of a loaded module
        ├── InputError                  wrong input count, name, shape or dtype (also ValueError)
        │   └── ContextOverflow         a generator's prompt plus new tokens exceed its compiled max context
        ├── LimitError                  a sandbox limit was hit; the module stays usable
        │   ├── MemoryLimitError        the memory cap is below what the model needs
        │   ├── DeadlineExceeded        the wall-clock deadline (epoch interruption) passed
        │   └── FuelExhausted           the fuel budget ran out
        ├── TrapError                   the wasm module trapped (a bug in a kernel or a hostile module)
        │   └── IndexOutOfRange         an index input (embedding ids, gather) was out of range; also an
        │                               InputError, because the caller's data is what is wrong
        └── ThreadsError                intra-op threads cannot run as asked (a bad thread count or build
                                        name, threads with fuel metering, a closed module); also ValueError

Foreign errors (torch.export failures, subprocess errors, wasmtime.Trap) are translated into
this tree at the boundary where they happen, so callers never need to import torch or wasmtime
just to catch our errors.
"""

from __future__ import annotations


class WasmTorchError(Exception):
    """Root of every error wasm-torch raises."""


class CompileError(WasmTorchError):
    pass


class ExportError(CompileError):
    pass


class UnsupportedOpError(CompileError):
    pass


class GraphError(CompileError):
    pass


class BuildError(CompileError):
    pass


class ValidationError(CompileError):
    pass


class QuantizationError(CompileError):
    """Reduced-precision weights cannot be made as asked: no quantizable layer, or calibration
    inputs of the wrong count, shape or dtype (the message names which and what to pass)."""


class ArtifactError(WasmTorchError):
    pass


class IntegrityError(ArtifactError):
    pass


class SignatureError(IntegrityError):
    pass


class DecryptionError(IntegrityError):
    pass


class KeyringError(ArtifactError):
    pass


class ExecutionError(WasmTorchError):
    pass


class InputError(ExecutionError, ValueError):
    pass


class ContextOverflow(InputError):
    """The prompt plus the tokens to generate do not fit a generator's compiled max context."""


class LimitError(ExecutionError):
    pass


class MemoryLimitError(LimitError):
    pass


class DeadlineExceeded(LimitError):
    pass


class FuelExhausted(LimitError):
    pass


class TrapError(ExecutionError):
    pass


class IndexOutOfRange(TrapError, InputError):
    pass


class ThreadsError(ExecutionError, ValueError):
    pass


class BenchmarkError(WasmTorchError):
    pass


class DependencyError(WasmTorchError, ImportError):
    """An optional extra is not installed; the message says which `pip install` adds it."""


class PartitionError(CompileError):
    pass


class LearningError(WasmTorchError):
    pass


class NetworkError(WasmTorchError):
    pass


class LedgerError(NetworkError):
    pass
