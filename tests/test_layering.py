"""The import rules of docs/layout.md, held against the code: which room may import which, who may
import torch, and no import cycles between modules."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import wasm_torch

PKG = Path(wasm_torch.__file__).parent

# room -> the rooms it may import (a room is a folder or file under wasm_torch; inside compiler/,
# each folder or file is a room). A room may always import itself and the leaves errors, version.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "version": set(),
    "config": set(),
    "artifact": {"errors"},
    "integrity": {"artifact", "config", "errors"},
    "runtime": {"artifact", "config", "errors", "integrity"},
    "compiler.ir": set(),
    "compiler.ops": {"compiler.ir", "compiler.codegen"},
    "compiler.passes": {"compiler.ir", "compiler.ops"},
    "compiler.codegen": {"compiler.ir", "compiler.options", "artifact"},
    "compiler.frontend": {"compiler.ir"},
    "compiler.build": {"compiler.options", "config"},
    "compiler.kernels": set(),
    "compiler.options": {"compiler.passes"},
    "compiler.check": set(),
    "compiler.quant_check": {"compiler.check"},  # the agreement bar of fp16 / int8 weights
    "compiler.calibration": {"compiler.ir"},  # int8-static calibration inputs, checked
    "compiler.cost": {"compiler.ir", "compiler.codegen"},
    "compiler.write": {"compiler.*", "artifact"},  # planned graph + wasm -> artifact folder
    # the stages, top to bottom (and compile(..., stages=k), which splits with analyze/)
    "compiler.pipeline": {"compiler.*", "artifact", "runtime", "config", "analyze"},
    "compiler.multibuild": {"compiler.*", "artifact", "config", "runtime"},  # builds + checks the variants
    "compiler.partition": {"compiler.*", "artifact", "analyze", "config", "runtime"},
    "compiler": {"compiler.*"},
    "nn": set(),
    "zoo": {"nn"},
    "serve": {"runtime", "artifact", "config", "errors", "integrity", "learn", "generate"},
    # text generation: the compile side (compile.py, trace.py, validate.py) and the runtime side
    # (generator.py, sampling.py, tokenizer.py: numpy + wasmtime only, what serve imports)
    "generate": {"compiler", "compiler.*", "artifact", "runtime", "config", "deploy"},
    "net": {"runtime", "artifact", "config", "errors", "integrity", "collective", "analyze"},
    "collective": {"errors"},
    "analyze": {"compiler.*", "artifact", "runtime"},  # runtime: runner.py runs the stage artifacts
    "learn": {"compiler", "compiler.*", "analyze", "runtime", "artifact", "config", "errors", "integrity", "zoo"},
    "deploy": {"*"},
    "benchmark": {"*"},
    "cli": {"*"},
    "__init__": {"runtime", "compiler", "compiler.*", "generate"},
    # kept so code written for 0.1 still imports (docs/layout.md, "Moved")
    "web": {"deploy"},
    "encryption": {"integrity"},
}
# Rooms a server or edge node runs: they never import torch, sympy or the compiler.
NO_COMPILER = ("artifact", "integrity", "runtime", "serve", "net", "collective", "config", "errors")


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _room(module: str) -> str:
    parts = module.split(".")[1:]  # drop "wasm_torch"
    if not parts:
        return "__init__"
    if parts[0] == "compiler" and len(parts) > 1:
        return f"compiler.{parts[1]}"
    if parts[0] == "cli" or parts[0].startswith("cli"):
        return "cli"
    return parts[0]


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = parts if is_pkg else parts[:-1]
        keep = keep[: len(keep) - (node.level - 1)]
        base = ".".join(keep + ([node.module] if node.module else []))
    if node.module is None or (node.level and not node.module):
        return [f"{base}.{a.name}" for a in node.names]
    return [base]


def _imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in PKG.rglob("*.py"):
        mod = _module(f)
        found: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                found.update(_resolve(mod, f.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        out[mod] = found
    return out


def _allowed(src_room: str, dst_room: str) -> bool:
    if src_room == dst_room or dst_room in ("errors", "version"):
        return True
    rule = ALLOWED.get(src_room)
    assert rule is not None, f"room {src_room!r} is not in the layering table (tests/test_layering.py)"
    if "*" in rule or dst_room in rule:
        return True
    return any(r.endswith(".*") and dst_room.startswith(r[:-1]) for r in rule)


def test_every_room_imports_only_what_it_may():
    bad = []
    for mod, imports in _imports().items():
        src = _room(mod)
        for imp in imports:
            if imp.split(".")[0] != "wasm_torch" or imp == "wasm_torch":
                continue
            dst = _room(imp)
            if not _allowed(src, dst):
                bad.append(f"{mod} imports {imp} ({src} -> {dst})")
    assert not bad, "\n".join(bad)


def test_server_side_rooms_never_import_torch_sympy_or_the_compiler():
    bad = []
    for mod, imports in _imports().items():
        if _room(mod) not in NO_COMPILER:
            continue
        for imp in imports:
            top = imp.split(".")
            if top[0] in ("torch", "sympy") or (top[0] == "wasm_torch" and len(top) > 1 and top[1] == "compiler"):
                bad.append(f"{mod} imports {imp}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    """Module-level imports only (a function-level import is a deliberate late binding)."""
    g = nx.DiGraph()
    for f in PKG.rglob("*.py"):
        mod = _module(f)
        g.add_node(mod)
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(mod, f.name == "__init__.py", node)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in g and t.count("."):
                    if (PKG.parent / t.replace(".", "/")).with_suffix(".py").exists():
                        break
                    t = t.rsplit(".", 1)[0]
                if t.startswith("wasm_torch.") and t != mod and not mod.startswith(t + "."):
                    g.add_edge(mod, t)
    cycles = [c for c in nx.simple_cycles(g) if len(c) > 1]
    assert not cycles, cycles[:5]
