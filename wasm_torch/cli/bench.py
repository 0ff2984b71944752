"""`wasm-torch bench`: ours vs ONNX Runtime Web (Node), ONNX Runtime and PyTorch, each at 1 and 2
threads (`--threads`), GFLOP/s against this machine's SIMD128 peak (wasm_torch/benchmark/,
docs/benchmarks.md).

Needs the 'compile' extra plus the benchmark peers of requirements-dev.txt (onnx, onnxscript,
onnxruntime, matplotlib) and, for ONNX Runtime Web, Node with `make bench-setup`.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from ..errors import DependencyError
from .common import non_negative_int, positive_float, positive_int, require_extra

PEERS = ("onnx", "onnxscript", "onnxruntime", "matplotlib")
DEFAULT_OUT = "bench/results/latest.json"


def cmd_bench(a: argparse.Namespace) -> int:
    require_extra("compile", "bench")
    missing = [m for m in PEERS if importlib.util.find_spec(m) is None]
    if missing:
        raise DependencyError(
            f"`wasm-torch bench` needs the benchmark peers {list(PEERS)} (missing: {', '.join(missing)}): "
            "pip install -r requirements-dev.txt (a checkout's pinned set)"
        )
    from ..benchmark import bench

    models = [m for spec in a.models or [] for m in spec.split(",") if m]
    if a.quant:  # reduced-precision weights: ours f32 / fp16 / int8 vs ONNX Runtime's int8 (docs/quantization.md)
        from ..benchmark.quant import bench_quant

        out = Path("bench/results/quant.json") if a.out == DEFAULT_OUT else Path(a.out)
        quick = {"warmup": 1, "repeat": 3} if a.quick else {}
        bench_quant(models or None, out, warmup=quick.get("warmup", a.warmup if a.warmup is not None else 3),
                    repeat=quick.get("repeat", a.repeat or 20), max_seconds=a.max_seconds or 20.0, node_dir=a.node_dir,
                    work_dir=a.work_dir, command="wasm-torch bench --quant" + (f" --models {','.join(models)}" if models else ""))
        return 0
    options = {"warmup": a.warmup, "repeat": a.repeat, "max_seconds": a.max_seconds, "threads": a.threads}
    options = {k: v for k, v in options.items() if v is not None}
    given = {
        k: v for k, v in vars(a).items() if k not in ("cmd", "fn", "parser") and v not in (None, False, [])
    }
    given["models"] = ",".join(models) or None
    command = "wasm-torch bench" + "".join(
        f" --{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in given.items() if v is not None
    )
    _, found = bench(
        models,
        Path(a.out),
        a.png,
        quick=a.quick,
        node_dir=a.node_dir,
        work_dir=a.work_dir,
        command=command,
        peak=not a.no_peak,
        **options,
    )
    return 1 if found else 0


def _thread_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        counts = ()
    if not counts or counts[0] != 1 or any(not 1 <= t <= 64 for t in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(
            f"--threads {text!r}: give distinct thread counts from 1 to 64, starting with 1 (e.g. 1,2 or 1,2,4)"
        )
    return counts


def add_parsers(sub: Any) -> None:
    b = sub.add_parser("bench", help="ours vs ONNX Runtime Web / ONNX Runtime / PyTorch at 1 and 2 threads")
    b.add_argument("--models", action="append", help="comma-separated suite names (repeatable; default: all)")
    b.add_argument("--out", default=DEFAULT_OUT, help="JSON to write (the PNG goes beside it; with --quant: "
                   "bench/results/quant.json)")
    b.add_argument("--png", type=Path, help="chart path (default: --out with .png)")
    b.add_argument("--repeat", type=positive_int, help="timed rounds per model (default 20)")
    b.add_argument("--warmup", type=non_negative_int, help="untimed rounds first (default 3)")
    b.add_argument("--max-seconds", type=positive_float, help="timed seconds per model at most (default 20)")
    b.add_argument("--quick", action="store_true", help="1 warm-up, 3 rounds: a smoke run, not a measurement")
    b.add_argument("--threads", type=_thread_counts, help="comma-separated thread counts every system runs at (default 1,2)")
    b.add_argument("--no-peak", action="store_true", help="skip measuring the SIMD128 peak (no %% of peak column)")
    b.add_argument("--node-dir", type=Path, help="folder with node_modules/onnxruntime-web (default bench/node)")
    b.add_argument("--work-dir", type=Path, help="keep the compiled artifacts and ONNX files here (default: a temp dir)")
    b.add_argument("--quant", action="store_true", help="the reduced-precision suite instead: ours f32 / fp16 / int8 vs "
                   "ONNX Runtime (Web and native) f32 and quantize_dynamic int8, one thread, with accuracy columns")
    b.set_defaults(fn=cmd_bench, parser=b)
