"""Import rules of the learning side: runtime/, net/ and serve/ never import learn/ (serve/learning.py
is the one bridge, and imports it only when learning is switched on); the CLI stays cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import wasm_torch

PKG = Path(wasm_torch.__file__).parent


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(("." * node.level) + node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_runtime_net_and_serve_do_not_import_learn():
    for folder in ("runtime", "net", "serve"):
        for f in (PKG / folder).rglob("*.py"):
            if f == PKG / "serve" / "learning.py":
                continue
            bad = [m for m in _imports(f) if "learn" in m.lstrip(".").split(".")]
            assert not bad, f"{f.relative_to(PKG)} imports {bad}"


def test_learn_does_not_import_serve_or_net():
    for f in (PKG / "learn").rglob("*.py"):
        bad = [m for m in _imports(f) if {"serve", "net"} & set(m.lstrip(".").split("."))]
        assert not bad, f"{f.relative_to(PKG)} imports {bad}"


def test_cli_and_server_imports_stay_cheap():
    code = (
        "import sys, wasm_torch.cli, wasm_torch.serve.app; "
        "heavy = [m for m in ('torch', 'optuna', 'sklearn', 'wasm_torch.learn.tuner') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
