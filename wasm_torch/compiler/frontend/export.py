"""torch.export -> core ATen -> our IR.

`from_torch` traces the model with torch.export (non-strict), runs the core-ATen decompositions,
then walks the fx graph once, lowering each node through the table in `aten.py`. Parameters,
buffers and lifted constants become IR constants; dynamic dimensions become IR symbols named
after the user's `torch.export.Dim`s.
"""

from __future__ import annotations

import operator
from typing import Any

import sympy
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from ...errors import ExportError, GraphError, UnsupportedOpError
from ..ir.graph import Graph, Symbol, TensorType
from .aten import IGNORED, TABLE, supported_ops
from .context import Lowering, ir_dtype, source_line
from .problems import Problems

SUPPORTED_OPS_DOC = "docs/ops.md (or wasm_torch.supported_ops())"


def export(model: torch.nn.Module, example_inputs: tuple, dynamic_shapes: Any = None) -> ExportedProgram:
    model = model.eval()
    try:
        with torch.no_grad():
            ep = torch.export.export(
                model, tuple(example_inputs), dynamic_shapes=dynamic_shapes, strict=False
            )
            return ep.run_decompositions()
    except Exception as e:  # torch raises many types here; the message is what matters
        msg = str(e).strip().splitlines()
        hint = ""
        if "data-dependent" in str(e) or "GuardOnDataDependentSymNode" in type(e).__name__:
            hint = (
                "\nThe model branches on tensor values (e.g. `if x.sum() > 0:`), which a compiled graph cannot: "
                "compute both branches and select with torch.where(cond, a, b)."
            )
        raise ExportError(
            f"torch.export could not trace {type(model).__name__}: {type(e).__name__}: "
            + "\n".join(msg[:12])
            + hint
            + "\nFix the model so torch.export.export(model, example_inputs) works, then compile again."
        ) from e


def _user_dim_names(
    ep: ExportedProgram, user_inputs: list[str], dynamic_shapes: Any
) -> dict[tuple[str, int], str]:
    """Map (input name, axis) -> the Dim name the user gave, so manifests say 'seq', not 's77'."""
    names: dict[tuple[str, int], str] = {}
    if dynamic_shapes is None:
        return names
    specs: list[Any]
    if isinstance(dynamic_shapes, dict):
        specs = [dynamic_shapes.get(n) for n in user_inputs]
    else:
        specs = list(dynamic_shapes)
    for name, spec in zip(user_inputs, specs, strict=False):
        items = spec.items() if isinstance(spec, dict) else enumerate(spec or [])
        for axis, d in items:
            dname = getattr(d, "__name__", None)
            if isinstance(dname, str):
                names[(name, int(axis))] = dname
    return names


def _symbols(ep: ExportedProgram, user_inputs: list[str], dynamic_shapes: Any, placeholders: dict):
    """Our symbols (name, bounds, where to read them) and the torch-symbol -> our-symbol map."""
    user_names = _user_dim_names(ep, user_inputs, dynamic_shapes)
    symbols: dict[str, Symbol] = {}
    mapping: dict[sympy.Symbol, sympy.Symbol] = {}
    for name in user_inputs:
        val = placeholders[name].meta["val"]
        for axis, d in enumerate(val.shape):
            if not isinstance(d, torch.SymInt):
                continue
            expr = d.node.expr
            if not isinstance(expr, sympy.Symbol) or expr in mapping:
                continue
            rng = ep.range_constraints.get(expr)
            lo = int(rng.lower) if rng is not None else 1
            hi = rng.upper if rng is not None else None
            sname = user_names.get((name, axis), str(expr))
            hi = _finite_int(hi)
            if hi is None or hi > 2**30:
                raise ExportError(
                    f"dynamic dimension {sname!r} (input {name!r}, axis {axis}) has no upper bound; give it one, "
                    f"e.g. Dim({sname!r}, max=512): the static memory plan is sized for the maximum."
                )
            mapping[expr] = sympy.Symbol(sname, integer=True, positive=True)
            symbols[sname] = Symbol(sname, max(lo, 1), int(hi), name, axis)
    return symbols, mapping


def _finite_int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and bool(getattr(v, "is_finite", True)) else None
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None


def from_torch(model: torch.nn.Module, example_inputs: tuple, dynamic_shapes: Any = None) -> Graph:
    ep = export(model, example_inputs, dynamic_shapes)
    return from_exported(ep, dynamic_shapes, type(model).__name__)


MISSING = object()  # env value of an fx node that could not be lowered (or depends on one that could not)
_FLOATS = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float64: "float64"}


def _lift_constant(L: Lowering, spec: Any, tensor: torch.Tensor, users: list[torch.fx.Node], problems: Problems) -> Any:
    """A parameter, buffer or lifted constant as an IR constant. float16/bfloat16/float64 ones are
    taken only when every use casts them to float32 first (then the float32 values are exactly what
    torch computes with); otherwise the model is refused with the fix."""
    t = tensor.detach().cpu()
    if t.dtype in _FLOATS:
        users = [u for u in users if str(u.target) not in IGNORED]  # dtype assertions compute nothing
        casts = all(
            u.target == torch.ops.aten._to_copy.default and u.kwargs.get("dtype") == torch.float32 for u in users
        )
        if not casts or not users:
            problems.add(
                f"{_FLOATS[t.dtype]} {spec.kind.name.lower()}",
                str(spec.target),
                f"{spec.target!r} is {_FLOATS[t.dtype]}: wasm-torch computes in float32; compile a float32 model "
                "(model.float())",
            )
            return MISSING
        t = t.to(torch.float32)
    return L.const(t.contiguous().numpy().copy(), _safe(spec.target))


def from_exported(ep: ExportedProgram, dynamic_shapes: Any = None, model_name: str = "the model") -> Graph:
    """Lower an exported program to IR. Every op that cannot be lowered is collected; if there are
    any, one UnsupportedOpError lists them all (op, count, first source line, suggested rewrite)."""
    sig = ep.graph_signature
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    user_inputs = [s.arg.name for s in sig.input_specs if s.kind == InputKind.USER_INPUT]
    symbols, mapping = _symbols(ep, user_inputs, dynamic_shapes, placeholders)
    L = Lowering(mapping)
    problems = Problems()

    for spec in sig.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            val = placeholders[name].meta.get("val")
            if not isinstance(val, torch.Tensor):
                raise ExportError(f"input {name!r} is not a tensor ({type(val).__name__}); pass tensors only")
            if val.dtype in _FLOATS:
                problems.add(
                    f"{_FLOATS[val.dtype]} input",
                    name,
                    f"input {name!r} is {_FLOATS[val.dtype]}: wasm-torch computes in float32; trace and call with "
                    "float32 inputs (x.float())",
                )
                L.env[name] = MISSING
                continue
            L.types[name] = TensorType(
                ir_dtype(val.dtype, f" (input {name!r})"), L.shape_of(placeholders[name])
            )
            L.env[name] = name
        else:
            tensor = (
                ep.state_dict.get(spec.target)
                if spec.target in ep.state_dict
                else ep.constants.get(spec.target)
            )
            if not isinstance(tensor, torch.Tensor):
                raise ExportError(f"{spec.kind.name.lower()} {spec.target!r} is not a tensor")
            L.env[name] = _lift_constant(L, spec, tensor, list(placeholders[name].users), problems)

    outputs: list[str] = []
    for fx in ep.graph.nodes:
        if fx.op in ("placeholder",):
            continue
        L.current = fx
        if fx.op == "output":
            for o in fx.args[0]:
                v = L.env.get(o.name) if isinstance(o, torch.fx.Node) else None
                if v is MISSING:
                    continue
                if not isinstance(v, str):
                    raise UnsupportedOpError(f"model output {o} is not a tensor; return tensors only")
                outputs.append(v)
            continue
        if fx.op == "get_attr":  # a sub-graph: torch.cond / while_loop branches
            L.env[fx.name] = MISSING
            continue
        if fx.op != "call_function":
            problems.add(f"fx {fx.op} node", source_line(fx), f"fx node kind {fx.op!r} ({fx.target})")
            L.env[fx.name] = MISSING
            continue
        target = str(fx.target)
        if fx.target is operator.getitem:
            parts = L.env[fx.args[0].name]
            L.env[fx.name] = MISSING if parts is MISSING else parts[fx.args[1]]
            continue
        val = fx.meta.get("val")
        if isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool) and target not in _DATA_DEPENDENT:
            L.env[fx.name] = L.dim(val)  # sym_size and Python arithmetic on sizes
            continue
        if target in IGNORED:
            continue
        lower = TABLE.get(target)
        blocked = any(L.env.get(a.name) is MISSING for a in fx.all_input_nodes)
        if lower is None:
            problems.add(target, source_line(fx))
            L.env[fx.name] = MISSING
            continue
        if blocked:  # its input could not be lowered: that op is already reported
            L.env[fx.name] = MISSING
            continue
        try:
            L.env[fx.name] = lower(L, fx)
        except UnsupportedOpError as e:
            problems.add(target, source_line(fx), str(e))
            L.env[fx.name] = MISSING
        except GraphError as e:
            raise GraphError(f"lowering {target} at {source_line(fx)}: {e}") from e

    if problems:
        raise problems.error(model_name, len(supported_ops()), SUPPORTED_OPS_DOC)
    return _finish(L, user_inputs, outputs, symbols)


# ops whose value is a Python number computed from tensor data (not from shapes)
_DATA_DEPENDENT = {"aten._local_scalar_dense.default", "aten.item.default"}


def _finish(L: Lowering, inputs: list[str], outputs: list[str], symbols: dict[str, Symbol]) -> Graph:
    """Outputs must be distinct values computed by the graph: copy inputs/constants/duplicates."""
    seen: set[str] = set()
    final = []
    for o in outputs:
        if o in seen or o in L.consts or o in inputs:
            o = L.emit("copy", [o])
        seen.add(o)
        final.append(o)
    return Graph(tuple(inputs), tuple(final), tuple(L.nodes), dict(L.types), dict(L.consts), symbols)


def _safe(name: str) -> str:
    return "w_" + "".join(c if c.isalnum() else "_" for c in name)
