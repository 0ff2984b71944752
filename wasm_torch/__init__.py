"""wasm-torch: compile PyTorch models to small, sandboxed, verified WebAssembly modules.

    art = wasm_torch.compile(model, (x,), "out/model")   # checked against PyTorch before writing
    m = wasm_torch.load("out/model")                     # wasmtime; numpy in, numpy out
    y = m(x)

    gen = wasm_torch.compile_generator(hf_causal_lm, "out/gen", max_context=256)   # text generation: docs/generate.md

`load` needs only numpy + wasmtime; `compile`, `lower` and `CompileOptions` come from the compiler
(torch, sympy, ziglang: `pip install 'wasm-torch[compile]'`) and are imported when first used.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .errors import (
    ArtifactError,
    CompileError,
    DeadlineExceeded,
    ExecutionError,
    FuelExhausted,
    IndexOutOfRange,
    InputError,
    IntegrityError,
    LimitError,
    MemoryLimitError,
    SignatureError,
    TrapError,
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


def __getattr__(name: str) -> Any:
    """`CompileOptions` and `lower` live in the compiler, `compile_generator` in wasm_torch.generate:
    imported on first use (not by `load`)."""
    if name in ("CompileOptions", "lower"):
        from . import compiler

        return getattr(compiler, name)
    if name == "compile_generator":
        from .generate import compile_generator

        return compile_generator
    raise AttributeError(f"module 'wasm_torch' has no attribute {name!r}")


__all__ = [
    "ArtifactError",
    "CompileError",
    "CompileOptions",
    "DeadlineExceeded",
    "ExecutionError",
    "FuelExhausted",
    "IndexOutOfRange",
    "InputError",
    "IntegrityError",
    "LimitError",
    "MemoryLimitError",
    "SignatureError",
    "TrapError",
    "UnsupportedOpError",
    "ValidationError",
    "WasmModule",
    "WasmTorchError",
    "__version__",
    "compile",
    "compile_generator",
    "errors",
    "load",
    "lower",
    "supported_ops",
]
