"""Print symbolic dimensions (sympy) as C expressions and as Python expressions for manifests.

Dims are integer expressions over the graph's symbols built from + - * and floor/ceil division.
The manifest form is evaluated by the runtime with a tiny safe evaluator (artifact.eval_dim).
"""

from __future__ import annotations

import sympy

from ...errors import GraphError


def _parts(e: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    num, den = sympy.fraction(sympy.together(e))
    return num, den


def _print(e: object, c: bool) -> str:
    if isinstance(e, int) or (isinstance(e, sympy.Expr) and e.is_Integer):
        return str(int(e))
    if not isinstance(e, sympy.Expr):
        raise GraphError(f"not a dimension: {e!r}")
    if e.is_Symbol:
        return f"S_{e.name}" if c else e.name
    if e.is_Add:
        return "(" + " + ".join(_print(a, c) for a in e.args) + ")"
    if e.is_Mul:
        num, den = _parts(e)
        if den != 1:
            raise GraphError(f"dimension {e} is not an integer expression")
        return "(" + " * ".join(_print(a, c) for a in num.as_ordered_factors()) + ")"
    if e.is_Pow and e.exp.is_Integer and int(e.exp) > 0:
        return "(" + " * ".join([_print(e.base, c)] * int(e.exp)) + ")"
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        num, den = _parts(e.args[0])
        a, b = _print(sympy.expand(num), c), _print(den, c)
        if isinstance(e, sympy.floor):
            return f"wt_floordiv({a}, {b})" if c else f"(({a}) // ({b}))"
        return f"wt_ceildiv({a}, {b})" if c else f"(-((-({a})) // ({b})))"
    if isinstance(e, sympy.Mod):
        a, b = (_print(x, c) for x in e.args)
        return f"wt_mod({a}, {b})" if c else f"(({a}) % ({b}))"
    if isinstance(e, (sympy.Max, sympy.Min)):
        fn = ("WT_MAX" if c else "max") if isinstance(e, sympy.Max) else ("WT_MIN" if c else "min")
        out = _print(e.args[0], c)
        for a in e.args[1:]:
            out = f"{fn}({out}, {_print(a, c)})"
        return out
    raise GraphError(f"cannot print dimension {e} ({type(e).__name__})")


def c_dim(e: object) -> str:
    return _print(e, True)


def py_dim(e: object) -> int | str:
    if isinstance(e, int) or (isinstance(e, sympy.Expr) and e.is_Integer):
        return int(e)
    return _print(e, False)
