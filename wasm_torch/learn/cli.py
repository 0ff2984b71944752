"""`wasm-torch tune | memory`: parsing for the learning commands (the work is in tuner.py and
memory.py). Importing this module is cheap: nothing heavy until a command runs. `wasm-torch deploy`
(deploy/cli.py) reuses `load_model` and `model_args` from here.

wasm-torch tune pkg.mod:make [--input-shape 1,64 ...] [--budget 20] [--memory DIR | --no-memory] [-o OUT]
wasm-torch tune zoo:resnet --budget 30 --json tune.json
wasm-torch memory [--memory DIR] [--consolidate]

MODEL is pkg.module:factory (an nn.Module, or (module, inputs) or (module, inputs, dynamic_shapes))
or zoo:NAME for a model of wasm_torch.zoo.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
MAX_INPUT_ELEMENTS = 100_000_000


def non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return v


def load_model(a: argparse.Namespace) -> tuple[Any, tuple, Any]:
    """(model, example inputs, dynamic_shapes) from MODEL and the --input-shape/--dtype/--dynamic flags."""
    import torch

    spec: str = a.model
    if spec.startswith("zoo:"):
        from ..zoo.models import ZOO, build

        if spec[4:] not in ZOO:
            raise SystemExit(f"unknown zoo model {spec[4:]!r}; the zoo has {sorted(ZOO)}")
        model, inputs, dynamic = build(spec[4:])
    else:
        if ":" not in spec:
            raise SystemExit(f"expected pkg.module:factory or zoo:NAME, got {spec!r}")
        mod_name, attr = spec.split(":", 1)
        sys.path.insert(0, str(Path.cwd()))
        try:
            obj = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise SystemExit(f"cannot import {spec!r}: {e}") from e
        made = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
        parts = made if isinstance(made, tuple) else (made,)
        if not parts or not isinstance(parts[0], torch.nn.Module) or len(parts) > 3:
            raise SystemExit(f"{spec} must give an nn.Module, (module, inputs) or (module, inputs, dynamic_shapes)")
        model, inputs, dynamic = parts[0], parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None
    if a.input_shape:
        inputs = _example_inputs(a.input_shape, a.dtype or [])
    if inputs is None:
        raise SystemExit("give --input-shape (one per input), or make the factory return (module, inputs)")
    if a.dynamic:
        dynamic = _dynamic(a.dynamic, len(inputs))
    return model.eval(), tuple(inputs) if isinstance(inputs, tuple | list) else (inputs,), dynamic


def _example_inputs(shapes: list[str], dtypes: list[str]) -> tuple:
    import torch

    if len(dtypes) > 1 and len(dtypes) != len(shapes):
        raise SystemExit(f"give one --dtype, or one per --input-shape ({len(shapes)}), not {len(dtypes)}")
    dts = dtypes * len(shapes) if len(dtypes) == 1 else dtypes or ["float32"] * len(shapes)
    out = []
    for shape_s, dt in zip(shapes, dts, strict=True):
        try:
            shape = [int(s) for s in shape_s.split(",")]
        except ValueError:
            raise SystemExit(f"--input-shape {shape_s!r}: expected comma-separated whole numbers, e.g. 1,128") from None
        if not shape or any(s < 1 for s in shape) or math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise SystemExit(f"--input-shape {shape_s!r}: every size must be >= 1, at most {MAX_INPUT_ELEMENTS:,} elements")
        if dt not in DTYPES:
            raise SystemExit(f"--dtype {dt!r}: expected one of {list(DTYPES)}")
        dtype = getattr(torch, dt)
        g = torch.Generator().manual_seed(0)
        out.append(torch.randn(shape, generator=g).to(dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype))
    return tuple(out)


def _dynamic(specs: list[str], n_inputs: int) -> tuple:
    from torch.export import Dim

    dims: dict[str, Any] = {}
    dynamic: list[Any] = [None] * n_inputs
    for spec in specs:
        parts = spec.split(":")
        try:
            i, axis, name, hi = int(parts[0]), int(parts[1]), parts[2], int(parts[3])
            if len(parts) != 4 or not name.isidentifier() or not 0 <= i < n_inputs or axis < 0 or hi < 2:
                raise ValueError
        except (ValueError, IndexError):
            raise SystemExit(
                f"--dynamic {spec!r}: expected INPUT:AXIS:NAME:MAX with INPUT < {n_inputs}, AXIS >= 0, "
                "NAME an identifier and MAX >= 2, e.g. 0:1:seq:512"
            ) from None
        d = dims.setdefault(name, Dim(name, min=1, max=hi))
        dynamic[i] = {**(dynamic[i] or {}), axis: d}
    return tuple(dynamic)


def _memory(a: argparse.Namespace) -> Any:
    from .memory import PatternMemory

    if getattr(a, "no_memory", False):
        return False
    return PatternMemory(a.memory) if a.memory else PatternMemory()


def cmd_tune(a: argparse.Namespace) -> int:
    from .tuner import compile_tuned, tune

    model, inputs, dynamic = load_model(a)
    mem = _memory(a)
    r = tune(model, inputs, budget=a.budget, dynamic_shapes=dynamic, memory=mem, seed=a.seed, confirm=a.confirm,
             rounds=a.rounds, progress=not a.quiet)
    rec = r.manifest_record()
    changed = {k: v for k, v in r.config.items() if v != r.space.default()[k]}
    print(f"tuned {a.model}: {r.measured} trials ({rec['pruned']} pruned, {rec['failed']} failed) in {r.seconds:.0f} s")
    print(f"  best found by the search: {r.search_best_gain:.3f}x the default's speed")
    if r.significant and r.confirm is not None:
        print(f"  confirmed: {r.gain:.3f}x ({r.confirm.baseline_s * 1e3:.4f} ms -> {r.confirm.latency_s * 1e3:.4f} ms; "
              f"ratio upper 95% bound {r.confirm.upper():.3f} over {len(r.confirm.ratios)} interleaved rounds)")
        print(f"  options changed from the default: {json.dumps(changed)}")
    else:
        print("  no configuration was confirmed faster than the default: keeping the default options")
    if a.json:
        Path(a.json).write_text(json.dumps(r.to_json(), indent=1))
        print(f"  wrote {a.json}")
    if a.output:
        art = compile_tuned(model, inputs, a.output, r, dynamic)
        print(f"  wrote {art.path} (manifest field `tuning` records the choice and its measured gain)")
    return 0


def cmd_memory(a: argparse.Namespace) -> int:
    mem = _memory(a)
    if a.consolidate:
        print(json.dumps(mem.background_learn()))
    print(f"{mem.folder}: {len(mem)} trajectories ({mem.buffer.total} recorded in all), "
          f"{len(mem.patterns())} patterns, index {'built' if mem.index is not None else 'not built yet'}")
    return 0


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="pkg.module:factory or zoo:NAME")
    p.add_argument("--input-shape", action="append", help="comma-separated shape of one input (repeat per input)")
    p.add_argument("--dtype", action="append", help=f"dtype per input, one of {', '.join(DTYPES)} (default float32)")
    p.add_argument("--dynamic", action="append", help="INPUT:AXIS:NAME:MAX, e.g. 0:1:seq:512")
    p.add_argument("--memory", help="pattern-memory folder (default: the cache folder's learn/)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parsers(sub: Any) -> None:
    t = sub.add_parser("tune", help="search the compile options for a model by measured trials on this machine")
    model_args(t)
    t.add_argument("--budget", type=non_negative_int, default=20, help="measured trials (default 20)")
    t.add_argument("--rounds", type=non_negative_int, default=41, help="interleaved timing rounds per trial (default 41)")
    t.add_argument("--confirm", type=non_negative_int, default=3, help="re-measurements of the winner (default 3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-memory", action="store_true", help="no warm start and nothing recorded")
    t.add_argument("--json", help="write every trial and the result to this JSON file")
    t.add_argument("-o", "--output", help="also compile the tuned artifact into this folder")
    t.set_defaults(fn=cmd_tune)
    m = sub.add_parser("memory", help="show (or consolidate) the pattern memory the tuner learns in")
    m.add_argument("--memory", help="pattern-memory folder (default: the cache folder's learn/)")
    m.add_argument("--consolidate", action="store_true", help="fold the journal and re-cluster now")
    m.set_defaults(fn=cmd_memory)
