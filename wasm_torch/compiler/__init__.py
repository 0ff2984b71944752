"""The compiler: PyTorch model -> IR -> passes -> C -> wasm, checked against PyTorch.

    lower(model, inputs, dynamic_shapes, options) -> Graph       # the graph codegen receives
    compile(model, inputs, out_dir, options=...) -> Artifact    # wasm_torch.compile

Importing this package registers every IR op (compiler/ops/) but does not import torch:
`lower` and `compile` import it when called.
"""

from __future__ import annotations

from typing import Any

from . import ops  # noqa: F401  (registers every op's facets in the registry of ir/op.py)
from .options import CompileOptions


def lower(model: Any, example_inputs: Any, dynamic_shapes: Any = None, options: CompileOptions | None = None) -> Any:
    """torch.export -> IR -> passes: see pipeline.lower."""
    from .pipeline import lower as _lower

    return _lower(model, example_inputs, dynamic_shapes, options)


def compile(model: Any, example_inputs: Any, out_dir: Any, **kwargs: Any) -> Any:
    """Compile a torch.nn.Module to a verified wasm artifact folder: see pipeline.compile."""
    from .pipeline import compile as _compile

    return _compile(model, example_inputs, out_dir, **kwargs)


__all__ = ["CompileOptions", "compile", "lower"]
