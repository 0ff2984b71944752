"""Manifest dimension expressions ('seq', '(seq * 12)', '((seq) // (2))'), checked and evaluated without eval().

The grammar is what the compiler prints (compiler/codegen/dims.py): integers, symbol names,
+ - * // %, unary minus, max(a, b, ...) and min(...). `parse_dim` checks an expression once (length,
node count, nesting, only known names); `eval_dim` evaluates it with every intermediate value
bounded, so a hostile expression cannot raise RecursionError, ZeroDivisionError or build a
bignum: every problem is an ArtifactError naming the expression.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from functools import lru_cache

from ..errors import ArtifactError
from .layout import MAX_EXPR_CHARS

MAX_NODES = 2048
MAX_DEPTH = 64
LIMIT = 1 << 62  # every intermediate value stays below this in magnitude

_OPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def _bad(expr: object, why: str) -> ArtifactError:
    return ArtifactError(f"bad dimension expression {str(expr)[:120]!r} in manifest: {why}; recompile the model")


@lru_cache(maxsize=4096)
def _parse(expr: str) -> tuple[ast.expr, frozenset[str]]:
    """The checked syntax tree of `expr` and the names it uses."""
    if len(expr) > MAX_EXPR_CHARS:
        raise _bad(expr, f"{len(expr)} characters (at most {MAX_EXPR_CHARS})")
    try:
        tree = ast.parse(expr, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise _bad(expr, f"not an expression ({type(e).__name__})") from None
    names: set[str] = set()
    count = 0

    def check(node: ast.AST, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            raise _bad(expr, f"more than {MAX_NODES} terms or {MAX_DEPTH} levels of nesting")
        if isinstance(node, ast.Constant):
            if type(node.value) is not int or not 0 <= node.value < LIMIT:
                raise _bad(expr, f"constant {node.value!r} is not a non-negative integer")
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            check(node.left, depth + 1)
            check(node.right, depth + 1)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            check(node.operand, depth + 1)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("max", "min")
            and node.args
            and not node.keywords
        ):
            for a in node.args:
                check(a, depth + 1)
        else:
            raise _bad(expr, f"{type(node).__name__} is not allowed (only + - * // % max min)")

    check(tree, 0)
    return tree, frozenset(names)


def parse_dim(expr: int | str, symbols: Collection[str]) -> None:
    """Refuse an expression the runtime could not evaluate over `symbols` (called by the manifest schema)."""
    if isinstance(expr, bool) or not isinstance(expr, int | str):
        raise _bad(expr, f"a dimension is an integer or an expression string, not {type(expr).__name__}")
    if isinstance(expr, int):
        return
    unknown = sorted(_parse(expr)[1] - set(symbols))
    if unknown:
        raise _bad(expr, f"unknown symbols {unknown} (the manifest declares {sorted(symbols)})")


def eval_dim(expr: int | str, symbols: Mapping[str, int]) -> int:
    """Evaluate a manifest dimension ('seq', '(seq * 12)', '((seq) // (2))') without eval()."""
    if isinstance(expr, int) and not isinstance(expr, bool):
        return expr
    if not isinstance(expr, str):
        raise _bad(expr, f"not an integer or expression ({type(expr).__name__})")
    tree, _ = _parse(expr)

    def ev(node: ast.expr) -> int:
        if isinstance(node, ast.Constant):
            v = int(node.value)  # type: ignore[arg-type]
        elif isinstance(node, ast.Name):
            if node.id not in symbols:
                raise _bad(expr, f"unknown symbol {node.id!r}")
            v = int(symbols[node.id])
        elif isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.FloorDiv | ast.Mod) and b == 0:
                raise _bad(expr, "division by zero")
            v = _OPS[type(node.op)](a, b)
        elif isinstance(node, ast.UnaryOp):
            v = -ev(node.operand)
        else:  # max / min, checked by _parse
            vals = [ev(a) for a in node.args]  # type: ignore[attr-defined]
            v = max(vals) if node.func.id == "max" else min(vals)  # type: ignore[attr-defined]
        if not -LIMIT < v < LIMIT:
            raise _bad(expr, "a value is out of range")
        return v

    return ev(tree)
