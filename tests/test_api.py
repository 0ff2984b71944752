"""The public surface and the import rules (docs/layout.md)."""

from __future__ import annotations

import ast
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
    )
    assert callable(wasm_torch.compile) and callable(wasm_torch.load)


def _imports(folder: str) -> set[str]:
    found = set()
    for f in (PKG / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(("." * node.level) + node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
    return found


def test_runtime_side_never_imports_the_compiler():
    compile_side = ("torch", "sympy", "frontend", "passes", "codegen", "build", "pipeline", "ir")
    for folder in ("runtime",):
        for mod in _imports(folder):
            parts = mod.lstrip(".").split(".")
            assert not any(p in compile_side for p in parts), f"{folder}/ imports {mod}"
    for mod in _imports("ir"):
        assert "torch" not in mod.split("."), f"ir/ imports {mod}"


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
