"""The public surface and the import rules (docs/layout.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import wasm_torch

PKG = Path(wasm_torch.__file__).parent


def test_public_names_are_exactly_these():
    assert sorted(wasm_torch.__all__) == sorted(
        [
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
    )
    assert callable(wasm_torch.compile) and callable(wasm_torch.load) and callable(wasm_torch.lower)
    assert wasm_torch.CompileOptions().elementwise == "simd"
    for name in wasm_torch.__all__:
        assert hasattr(wasm_torch, name), name


def test_load_without_torch_in_a_fresh_interpreter():
    code = (
        "import sys, wasm_torch; assert wasm_torch.load; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_supported_ops_documented():
    doc = (PKG.parent / "docs" / "ops.md").read_text()
    missing = [op for op in wasm_torch.supported_ops() if f"`{op}`" not in doc]
    assert not missing, f"docs/ops.md lacks {missing}; regenerate with `python scripts/gen_ops_doc.py`"
