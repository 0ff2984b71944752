"""`wasm-torch compile | run | info`: an artifact's life — make it from a PyTorch model, run it on
.npy inputs, show and verify its manifest.

`compile` needs the 'compile' extra (torch, sympy, ziglang); `run` and `info` need only the runtime
(numpy + wasmtime). Example inputs: `--example FILE.npy` per input, or `--input-shape`/`--dtype`,
from which floats are drawn from N(0, 1) and integers at random within the range the model accepts
(the size of the table an integer input indexes, found by tracing; {0, 1} for other integers, such
as attention masks). The compiler's check against PyTorch runs on these inputs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from ..analyze import cli as analyze_cli
from ..errors import CompileError, InputError
from .common import (
    dtype_name,
    dynamic_dim,
    existing_dir,
    existing_file,
    fail,
    load_npy,
    non_negative_float,
    positive_float,
    positive_int,
    require_extra,
    shape,
)

# dtypes whose arithmetic the compiler does not do (yet): refused by name instead of becoming float32
NOT_YET = {"float16", "half", "bfloat16", "float64", "double", "complex64", "complex128"}


# ---- compile -------------------------------------------------------------------------------------
def _import_factory(spec: str) -> Any:
    """pkg.module:name or path/to/file.py:name -> the object `name`."""
    if ":" not in spec:
        raise CompileError(
            f"expected MODULE:FACTORY (e.g. mypkg.models:make or models.py:make), got {spec!r}"
        )
    mod_name, attr = spec.rsplit(":", 1)
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise CompileError(f"{mod_name}: no such file")
            sys.path.insert(0, str(path.resolve().parent))
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            if loader_spec is None or loader_spec.loader is None:
                raise CompileError(f"{mod_name}: cannot be imported as a Python file")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(mod_name)
    except CompileError:
        raise
    except Exception as e:  # the user's module failed to import: say so, with its own error
        raise CompileError(f"cannot import {mod_name!r}: {type(e).__name__}: {e}") from e
    if not hasattr(module, attr):
        raise CompileError(f"{mod_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def _make_model(spec: str) -> tuple[Any, tuple | None]:
    """Call the factory (or instantiate the class) -> (module, example inputs or None)."""
    import torch

    obj = _import_factory(spec)
    try:
        made = obj if isinstance(obj, torch.nn.Module) else obj()
    except Exception as e:
        raise CompileError(f"{spec} raised {type(e).__name__}: {e}") from e
    model, example = (made if isinstance(made, tuple) and len(made) == 2 else (made, None))
    if not isinstance(model, torch.nn.Module):
        raise CompileError(
            f"{spec} gave a {type(model).__name__}; expected a torch.nn.Module or (module, example_inputs)"
        )
    if example is not None:
        example = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    return model, example


def _torch_dtype(name: str) -> Any:
    import torch

    from ..compiler.ir.graph import DTYPES

    allowed = sorted(str(dt) for k, dt in DTYPES.items() if k != "f16")  # numpy names == torch names
    if name in NOT_YET:
        raise CompileError(
            f"--dtype {name}: not supported yet — the compiler computes in float32 and the integer "
            f"types; it will not quietly turn {name} into float32. Use one of {allowed} "
            "(for a float model: --dtype float32, and model.float() in the factory)"
        )
    if name not in allowed:
        raise CompileError(f"--dtype {name}: unknown or unsupported dtype; use one of {allowed}")
    return getattr(torch, name)


def _dynamic_shapes(a: argparse.Namespace, example: tuple) -> tuple | None:
    from torch.export import Dim

    if not a.dynamic:
        return None
    dims: dict[str, Any] = {}
    maxes: dict[str, int] = {}
    spec: list[dict[int, Any] | None] = [None] * len(example)
    for d in a.dynamic:
        if d.input >= len(example):
            fail(a, f"--dynamic {d.input}:...: the model has {len(example)} input(s), numbered from 0")
        rank = example[d.input].dim()
        if not -rank <= d.axis < rank:
            fail(a, f"--dynamic {d.input}:{d.axis}:...: input {d.input} has {rank} axes (0..{rank - 1})")
        axis = d.axis % rank
        size = int(example[d.input].shape[axis])
        if maxes.setdefault(d.name, d.max) != d.max:
            fail(a, f"--dynamic: dimension {d.name!r} is given two maxima, {maxes[d.name]} and {d.max}")
        if size < 2 or size > d.max:
            fail(
                a,
                f"--dynamic {d.input}:{d.axis}:{d.name}:{d.max}: the example input's size on that axis is "
                f"{size}; it must be between 2 and {d.max} (torch.export fixes sizes 0 and 1 as constants)",
            )
        dim = dims.setdefault(d.name, Dim(d.name, min=1, max=d.max))
        spec[d.input] = {**(spec[d.input] or {}), axis: dim}
    return tuple(spec)


def _example_inputs(a: argparse.Namespace, model: Any) -> tuple[tuple, list[str]]:
    """(tensors, one line per generated input saying what it holds)."""
    import torch

    if a.example:
        if a.input_shape or a.dtype:
            fail(a, "give either --example files or --input-shape/--dtype, not both")
        return tuple(torch.from_numpy(load_npy(p, "example")) for p in a.example), []
    if not a.input_shape:
        fail(a, "give --input-shape (one per input) or --example FILE.npy, or make the factory return "
             "(model, example_inputs)")
    names = a.dtype or ["float32"]
    if len(names) not in (1, len(a.input_shape)):
        fail(a, f"give one --dtype for all inputs or one per input ({len(a.input_shape)}), not {len(names)}")
    dtypes = [_torch_dtype(n) for n in (names * len(a.input_shape) if len(names) == 1 else names)]
    gen = torch.Generator().manual_seed(a.seed)
    tensors: list[Any] = []
    for s, dt in zip(a.input_shape, dtypes, strict=True):
        if dt.is_floating_point:
            tensors.append(torch.randn(s, generator=gen, dtype=dt))
        else:
            tensors.append(torch.zeros(s, dtype=dt))  # placeholders: filled below, once ranges are known
    ints = [k for k, t in enumerate(tensors) if not t.is_floating_point()]
    notes = [f"input {k}: {_name(dtypes[k])} {list(a.input_shape[k])}, drawn from N(0, 1)"
             for k in range(len(tensors)) if k not in ints]
    if ints:
        rows = _index_rows(model, tuple(tensors), a)
        for k in ints:
            t = tensors[k]
            hi = rows.get(k, 2)
            if t.dtype == torch.bool:
                tensors[k] = torch.randint(0, 2, t.shape, generator=gen).bool()
                notes.append(f"input {k}: bool {list(t.shape)}, random")
                continue
            hi = min(hi, int(torch.iinfo(t.dtype).max) + 1)
            tensors[k] = torch.randint(0, hi, t.shape, generator=gen, dtype=torch.int64).to(t.dtype)
            why = f"it indexes a table of {hi} rows" if k in rows else "not used as an index: 0 or 1"
            notes.append(f"input {k}: {_name(t.dtype)} {list(t.shape)}, random integers in [0, {hi}) ({why})")
    return tuple(tensors), notes


def _name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _index_rows(model: Any, example: tuple, a: argparse.Namespace) -> dict[int, int]:
    """Trace once with placeholder inputs to find which integer inputs index tables, and their sizes."""
    from ..compiler.frontend import from_torch
    from ..compiler.ir.index_inputs import index_inputs

    training = [(m, m.training) for m in model.modules()]
    try:
        g = from_torch(model, example, _dynamic_shapes(a, example))
    finally:
        for m, t in training:
            m.training = t
    rows = index_inputs(g)
    return {k: rows[name] for k, name in enumerate(g.inputs) if name in rows}


def cmd_compile(a: argparse.Namespace) -> int:
    require_extra("compile", "compile")
    from .. import compile as wt_compile
    from ..compiler.check import VacuousCheckWarning

    with warnings.catch_warnings(record=True) as caught:  # printed after the progress bar, not into it
        warnings.simplefilter("always")
        model, example = _make_model(a.model)
        notes: list[str] = []
        if example is None:
            example, notes = _example_inputs(a, model)
        elif a.example or a.input_shape:
            fail(a, f"{a.model} returns its own example inputs; drop --example/--input-shape")
        for line in notes:
            print(f"example {line}")
        art = wt_compile(
            model,
            example,
            a.output,
            dynamic_shapes=_dynamic_shapes(a, example),
            progress=a.progress,
            atol=a.atol,
            rtol=a.rtol,
            stages=analyze_cli.stage_options(a),
            **_quantize_kwargs(a, example),
        )
    if a.stages:  # a pipeline folder: analyze/cli.py prints it
        return analyze_cli.report_pipeline(art)
    ours = [w for w in caught if issubclass(w.category, VacuousCheckWarning)]
    others = {f"{w.category.__name__}: {w.message}" for w in caught if w not in ours}
    if a.verbose:  # PyTorch's own (mostly deprecation notes from tracing), after the progress bar
        for text in sorted(others):
            print(f"note: {text}", file=sys.stderr)
    v = art.report.get("validation", {})
    print(
        f"wrote {art.path}: model.wasm {art.code_bytes:,} B, weights {art.weights_bytes:,} B, "
        f"arena {art.manifest.arena_bytes:,} B"
    )
    if v and a.quantize:
        top1 = "n/a" if v.get("top1") is None else format(v["top1"], ".4f")
        print(
            f"checked against PyTorch float32 ({a.quantize} weights): cosine {v['cosine']:.6f} (bar "
            f"{v['bar']['min_cosine']}), argmax agreement {top1}, max abs error {v['max_abs_err']:.3g} at output "
            f"scale {v['scale']:.3g}"
        )
    elif v:
        print(
            f"checked against PyTorch: max abs error {v['max_abs_err']:.3g} at output scale {v['scale']:.3g} "
            f"(relative to scale {'n/a' if v.get('rel_err') is None else format(v['rel_err'], '.3g')}; "
            f"tolerance atol={a.atol:g} + rtol={a.rtol:g}·|value|)"
        )
    for w in ours:
        print(f"warning: {w.message}", file=sys.stderr)
    return 0


def _quantize_kwargs(a: argparse.Namespace, example: tuple) -> dict[str, Any]:
    """--quantize / --calibration / --min-cosine / --min-top1 as compile() keywords, checked here."""
    import torch

    if not a.quantize:
        extra = [f for f, v in (("--calibration", a.calibration), ("--min-cosine", a.min_cosine),
                                ("--min-top1", a.min_top1)) if v is not None]
        if extra:
            fail(a, f"{', '.join(extra)} only make sense with --quantize")
        return {}
    kw: dict[str, Any] = {"quantize": a.quantize, "min_cosine": a.min_cosine, "min_top1": a.min_top1}
    if a.calibration:
        if a.quantize != "int8-static":
            fail(a, "--calibration is used by --quantize int8-static only")
        if len(a.calibration) != len(example):
            fail(a, f"--calibration: the model has {len(example)} input(s); give one .npy per input, in order "
                    f"(got {len(a.calibration)})")
        batches = [load_npy(p, "calibration") for p in a.calibration]
        counts = {b.shape[0] if b.ndim else 0 for b in batches}
        if len(counts) != 1 or 0 in counts:
            fail(a, "--calibration: every file must stack the same number (>= 1) of samples on its first axis, "
                    f"got {[list(b.shape) for b in batches]}")
        kw["calibration"] = [tuple(torch.from_numpy(b[i].copy()) for b in batches) for i in range(counts.pop())]
    elif a.quantize == "int8-static":
        fail(a, "--quantize int8-static needs --calibration FILE.npy (a batch of real inputs per model input)")
    return kw


# ---- run -----------------------------------------------------------------------------------------
def cmd_run(a: argparse.Namespace) -> int:
    import numpy as np

    from ..runtime import load

    m = load(a.artifact, deadline=a.deadline, fuel=a.fuel)
    if len(a.inputs) != len(m.inputs):
        raise InputError(
            f"{a.artifact} takes {len(m.inputs)} input(s) {[s.name for s in m.inputs]}; "
            f"got {len(a.inputs)} .npy file(s)"
        )
    inputs = [load_npy(Path(p)) for p in a.inputs]
    t0 = time.perf_counter()
    out = m(*inputs)
    ms = (time.perf_counter() - t0) * 1e3
    outs = out if isinstance(out, tuple) else (out,)
    for spec, y in zip(m.outputs, outs, strict=True):
        print(f"{spec.name}: {y.dtype}{list(y.shape)}\n{np.array2string(y, threshold=20, precision=5)}")
    print(f"({ms:.2f} ms)")
    if a.save:
        np.save(a.save, outs[0], allow_pickle=False)
        print(f"wrote {a.save}")
    return 0


# ---- info ----------------------------------------------------------------------------------------
def cmd_info(a: argparse.Namespace) -> int:
    from ..artifact import ENCRYPTED_WEIGHTS, WEIGHTS, read_manifest, verify_files

    m = read_manifest(a.artifact)
    enc = (Path(a.artifact) / ENCRYPTED_WEIGHTS).exists()  # checked when decrypted at load
    verify_files(a.artifact, m, skip=(WEIGHTS,) if enc else ())
    r = m.raw
    if a.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"{r['name']}  ({r['format']}, wasm-torch {r['compiler']['wasm_torch']}, torch {r['compiler']['torch']})")
    for s in r.get("symbols", []):
        print(f"  dim {s['name']} in [{s['min']}, {s['max']}]")
    index = r.get("index_inputs") if isinstance(r.get("index_inputs"), dict) else {}
    for kind in ("inputs", "outputs"):
        for t in r[kind]:
            rows = index.get(t["name"]) if kind == "inputs" else None
            extra = f"  (indices 0..{rows - 1})" if isinstance(rows, int) else ""
            print(f"  {kind[:-1]:6} {t['name']}: {t['dtype']}{t['shape']}{extra}")
    for f, e in r["files"].items():
        state = f"encrypted as {ENCRYPTED_WEIGHTS}" if enc and f == WEIGHTS else "verified"
        print(f"  {f}: {e['bytes']:,} B  sha256 {e['sha256'][:16]}… ({state})")
    mem = r["memory"]
    print(f"  arena {mem['arena_bytes']:,} B (without reuse {mem['arena_unplanned_bytes']:,} B)")
    print(f"  ops {r['ops']}")
    v = r.get("validation")
    if isinstance(v, dict) and "max_abs_err" in v:
        scale = f" at output scale {v['scale']:.3g}" if "scale" in v else ""
        fmt = f" ({v['format']} weights: cosine {v['cosine']})" if isinstance(v.get("format"), str) else ""
        print(f"  checked against PyTorch: max abs error {v['max_abs_err']:.3g}{scale}{fmt}")
    return 0


def add_parsers(sub: Any) -> None:
    c = sub.add_parser(
        "compile",
        help="compile a PyTorch model to a wasm artifact folder (needs the 'compile' extra)",
        description=__doc__.split("\n\n", 1)[1],
    )
    c.add_argument(
        "model",
        help="MODULE:FACTORY (mypkg.models:make, or models.py:make): an nn.Module, a class, or a function "
        "returning an nn.Module or (module, example_inputs)",
    )
    c.add_argument("-o", "--output", required=True, help="artifact folder to write (replaced if it exists)")
    c.add_argument(
        "--input-shape",
        action="append",
        type=shape,
        metavar="SIZES",
        help="comma-separated shape of one example input, e.g. 1,128 (repeat per input, in order)",
    )
    c.add_argument(
        "--dtype",
        action="append",
        type=dtype_name,
        help="dtype of the inputs given by --input-shape: one for all, or one per input "
        "(float32, int64, int32, int8, uint8, bool; default float32)",
    )
    c.add_argument(
        "--example",
        action="append",
        type=existing_file,
        metavar="FILE.npy",
        help="an example input from a .npy file (repeat per input, in order) instead of --input-shape",
    )
    c.add_argument(
        "--dynamic",
        action="append",
        type=dynamic_dim,
        metavar="INPUT:AXIS:NAME:MAX",
        help="make an axis dynamic up to MAX, e.g. 0:1:seq:512 (repeat; the same NAME ties axes together)",
    )
    c.add_argument("--atol", type=non_negative_float, default=1e-4, help="absolute tolerance of the check against PyTorch")
    c.add_argument("--rtol", type=non_negative_float, default=1e-3, help="relative tolerance of the check against PyTorch")
    c.add_argument("--seed", type=int, default=0, help="seed of the random example inputs")
    c.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show a progress bar of the compile stages on stderr",
    )
    c.add_argument(
        "-v", "--verbose", action="store_true", help="also print PyTorch's warnings from tracing (hidden otherwise)"
    )
    c.add_argument(
        "--quantize",
        choices=("fp16", "int8", "int8-static"),
        help="weights in reduced precision (docs/quantization.md): fp16 halves, int8 with dynamic activation "
        "ranges, or int8-static (convolution ranges calibrated from --calibration); checked against PyTorch "
        "float32 by cosine instead of --atol/--rtol",
    )
    c.add_argument(
        "--calibration",
        action="append",
        type=existing_file,
        metavar="FILE.npy",
        help="int8-static calibration inputs: per model input (repeat, in order) a .npy holding a batch of samples "
        "stacked on a new first axis, each shaped like that example input",
    )
    c.add_argument("--min-cosine", type=float, metavar="C", help="with --quantize: the least cosine with PyTorch "
                   "float32 to accept (default: 0.999 fp16, 0.97 int8)")
    c.add_argument("--min-top1", type=float, metavar="F", help="with --quantize: the least fraction of rows whose "
                   "argmax agrees with PyTorch (default: not checked)")
    analyze_cli.add_stage_flags(c)  # --stages K, --tolerance, --memory-cap
    c.set_defaults(fn=cmd_compile, parser=c)

    r = sub.add_parser("run", help="run an artifact on .npy inputs and print the outputs")
    r.add_argument("artifact", type=existing_dir, help="artifact folder (from wasm-torch compile)")
    r.add_argument("inputs", nargs="+", type=existing_file, metavar="INPUT.npy", help=".npy files, one per input, in order")
    r.add_argument("--save", metavar="OUT.npy", help="also write the first output to this .npy file")
    r.add_argument("--deadline", type=positive_float, metavar="SECONDS", help="wall-clock limit of the call (default: none)")
    r.add_argument("--fuel", type=positive_int, help="fuel budget, roughly wasm instructions (default: unlimited)")
    r.set_defaults(fn=cmd_run, parser=r)

    i = sub.add_parser("info", help="show an artifact's manifest and verify its files' hashes")
    i.add_argument("artifact", type=existing_dir, help="artifact folder")
    i.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    i.set_defaults(fn=cmd_info, parser=i)
