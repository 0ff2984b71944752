"""`wasm-torch pipeline info | run`: parsing for partitioned models (the work is in runner.py and
pipeline_manifest.py). Compiling one is `wasm-torch compile ... --stages K` (or
`wasm_torch.compile(..., stages=k)`). Importing this module is cheap: numpy + wasmtime at most.

    wasm-torch pipeline info out/vit4                    # stages, weights, crossing bytes; verifies hashes
    wasm-torch pipeline run out/vit4 x.npy [--threads 2] [--repeat 8] [--save y.npy]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..errors import InputError


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {v}")
    return v


def _npy(path: str) -> Any:
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as e:  # pickled object arrays and other non-npy content
        raise InputError(f"{path} is not a plain .npy array ({e}); pickled files are refused") from e


def cmd_info(a: argparse.Namespace) -> int:
    from .pipeline_manifest import read_pipeline

    pm = read_pipeline(a.pipeline)
    if a.json:
        print(json.dumps(pm.raw, indent=1))
        return 0
    part = pm.raw.get("partition", {}) if isinstance(pm.raw.get("partition"), dict) else {}
    print(f"{pm.name}: {len(pm.stages)} stages, inputs {pm.input_names}, outputs {[n for n, _ in pm.outputs]}")
    total = sum(s.weights_bytes for s in pm.stages) or 1
    for j, (s, m) in enumerate(zip(pm.stages, pm.stage_manifests, strict=True)):
        srcs = ", ".join(f"{n}<-{'input' if src.stage is None else f'stage {src.stage}'}" for n, src in s.inputs)
        print(f"  stage {j} ({s.dir}): {s.nodes} nodes, weights {s.weights_bytes:,} B "
              f"({s.weights_bytes / total:.1%}), cost {s.cost:.4g}; reads {srcs}; {len(m.outputs)} outputs")
    if part:
        print(f"  crossing {part.get('crossing_bytes', 0):,} B per call (boundaries {part.get('boundary_bytes')}), "
              f"tension {part.get('tension')}, imbalance {part.get('imbalance')}, "
              f"{'proven optimal' if part.get('optimal') else 'not proven optimal'}")
    print("  every stage manifest matches pipeline.json")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    import numpy as np

    from .runner import Pipeline

    pipe = Pipeline(a.pipeline)
    if len(a.inputs) != len(pipe.inputs):
        raise InputError(f"{a.pipeline} takes {len(pipe.inputs)} input(s) {pipe.inputs}; got {len(a.inputs)} .npy file(s)")
    xs = [_npy(p) for p in a.inputs]
    t0 = time.perf_counter()
    outs = pipe.run_many([xs] * a.repeat, threads=a.threads)
    dt = time.perf_counter() - t0
    first = outs[0] if isinstance(outs[0], tuple) else (outs[0],)
    for name, y in zip(pipe.outputs, first, strict=True):
        print(f"{name}: {y.dtype}{list(y.shape)}\n{np.array2string(y, threshold=20, precision=5)}")
    print(f"({a.repeat} call(s) on {a.threads} thread(s): {dt * 1e3:.1f} ms, {a.repeat / dt:.3g} calls/s; "
          f"stage means {[round(v, 2) for v in pipe.stats()['stage_mean_ms']]} ms)")
    if a.save:
        np.save(a.save, first[0], allow_pickle=False)
        print(f"wrote {a.save}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("pipeline", help="inspect or run a model compiled into pipeline stages (--stages K)",
                       description=__doc__.split("\n\n", 1)[1])
    cmds = p.add_subparsers(dest="pipeline_cmd", required=True, metavar="COMMAND")
    i = cmds.add_parser("info", help="stages, weights and crossing bytes of a pipeline folder; verifies it")
    i.add_argument("pipeline", help="folder holding pipeline.json and the stage folders")
    i.add_argument("--json", action="store_true", help="print pipeline.json itself")
    i.set_defaults(fn=cmd_info, parser=i)
    r = cmds.add_parser("run", help="run a pipeline on .npy inputs, stages on worker threads")
    r.add_argument("pipeline", help="folder holding pipeline.json and the stage folders")
    r.add_argument("inputs", nargs="+", help="one .npy file per model input, in order")
    r.add_argument("--threads", type=_positive_int, default=1, help="worker threads running stages")
    r.add_argument("--repeat", type=_positive_int, default=1, help="calls in flight (micro-batches), to time throughput")
    r.add_argument("--save", help="write the first output of the first call to this .npy file")
    r.set_defaults(fn=cmd_run, parser=r)


# ---- `wasm-torch compile --stages K` (the flags live here; cli/compile.py calls these) ---------------
def add_stage_flags(c: argparse.ArgumentParser) -> None:
    c.add_argument("--stages", type=_positive_int, default=None, metavar="K",
                   help="split the model into K pipeline stages (one artifact each plus pipeline.json), "
                   "cutting where the fewest bytes cross; docs/partitioning.md")
    c.add_argument("--tolerance", type=_fraction, default=0.1,
                   help="with --stages: each stage's compute within this fraction of total/K")
    c.add_argument("--memory-cap", type=_positive_int, default=None, metavar="BYTES",
                   help="with --stages: most bytes a stage may hold (its weights + inputs + outputs)")


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= v <= 10:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 10], got {text!r}")
    return v


def stage_options(a: argparse.Namespace) -> Any:
    """The `stages=` argument of wasm_torch.compile for these flags (None without --stages)."""
    if getattr(a, "stages", None) is None:
        if getattr(a, "memory_cap", None) is not None:
            raise InputError("--memory-cap needs --stages K")
        return None
    from .partition import PartitionOptions

    return PartitionOptions(a.stages, a.tolerance, memory_cap=a.memory_cap)


def report_pipeline(art: Any) -> int:
    part = art.partition
    total = sum(s.weight_bytes for s in part.stages) or 1
    print(f"wrote {art.path}: {len(part.stages)} stages + pipeline.json; {part.crossing_bytes:,} B cross per call "
          f"(tension {part.tension:.4f}, {'proven optimal' if part.optimal else 'not proven optimal'})")
    for s, st in zip(part.stages, art.stages, strict=True):
        print(f"  {st.path.name}: {len(s.keys)} nodes, weights {s.weight_bytes:,} B ({s.weight_bytes / total:.1%}), "
              f"cost {s.cost / part.total_cost:.1%}")
    if part.duplicated_weights:
        print(f"  weights stored in more than one stage: {len(part.duplicated_weights)}")
    v = art.report.get("validation", {})
    if v:
        print(f"checked against PyTorch: max abs error {v['max_abs_err']:.3g} at output scale {v['scale']:.3g}")
    return 0
