"""wasm-torch: compile PyTorch models to small, sandboxed, verified WebAssembly modules.

    art = wasm_torch.compile(model, (x,), "out/model")   # checked against PyTorch before writing
    m = wasm_torch.load("out/model")                     # wasmtime; numpy in, numpy out
    y = m(x)

`load` needs only numpy + wasmtime; `compile` imports torch lazily.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    ArtifactError,
    CompileError,
    ExecutionError,
    InputError,
    IntegrityError,
    LimitError,
    UnsupportedOpError,
    ValidationError,
    WasmTorchError,
)
from .runtime import WasmModule, load
from .version import __version__


def compile(model: Any, example_inputs: Any, out_dir: Any, **options: Any) -> Any:
    """Compile a torch.nn.Module to a wasm artifact folder. See wasm_torch.compiler.pipeline.compile."""
    from .compiler.pipeline import compile as _compile

    return _compile(model, example_inputs, out_dir, **options)


def supported_ops() -> list[str]:
    """The core ATen ops the compiler can lower."""
    from .compiler.frontend import supported_ops as _ops

    return _ops()


__all__ = [
    "ArtifactError",
    "CompileError",
    "ExecutionError",
    "InputError",
    "IntegrityError",
    "LimitError",
    "UnsupportedOpError",
    "ValidationError",
    "WasmModule",
    "WasmTorchError",
    "__version__",
    "compile",
    "load",
    "supported_ops",
]
