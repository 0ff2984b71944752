"""Manifest dimension expressions ('seq', '(seq * 12)', '((seq) // (2))'), evaluated without eval()."""

from __future__ import annotations

import ast
import operator

from ..errors import ArtifactError

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def eval_dim(expr: int | str, symbols: dict[str, int]) -> int:
    """Evaluate a manifest dimension ('seq', '(seq * 12)', '((seq) // (2))') without eval()."""
    if isinstance(expr, int):
        return expr

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in symbols:
            return int(symbols[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("max", "min"):
            vals = [ev(a) for a in node.args]
            return max(vals) if node.func.id == "max" else min(vals)
        raise ArtifactError(f"bad dimension expression {expr!r} in manifest")

    return ev(ast.parse(expr, mode="eval"))
