"""`wasm-torch` command line: parsing only; the work is delegated to the library.

wasm-torch compile pkg.module:factory --input-shape 1,128 [--dtype int64] [--dynamic 0:1:seq:512] -o out/
wasm-torch run out/ input.npy [more.npy ...] [--save y.npy]
wasm-torch info out/
wasm-torch serve out/ --port 8000 [--ray --replicas 2 --policy peak_ewma]
wasm-torch package out/minilm --web site/
wasm-torch keygen | sign | verify | encrypt | rotate-key   (integrity, see wasm_torch/integrity/cli.py)
wasm-torch bench [--models mlp,resnet18] [--quick] [--out bench/results/latest.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WasmTorchError
from .integrity import cli as integrity_cli


def _factory(spec: str) -> Any:
    if ":" not in spec:
        raise SystemExit(f"expected pkg.module:factory, got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    sys.path.insert(0, str(Path.cwd()))
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"cannot import {spec!r}: {e}") from e
    return obj() if callable(obj) and not hasattr(obj, "forward") else obj


def cmd_compile(a: argparse.Namespace) -> int:
    import torch
    from torch.export import Dim

    from . import compile as wt_compile

    made = _factory(a.model)
    model, example = made if isinstance(made, tuple) else (made, None)
    if example is None:
        if not a.input_shape:
            raise SystemExit("give --input-shape (one per input), or make the factory return (model, inputs)")
        dtypes = (a.dtype or ["float32"]) * len(a.input_shape) if len(a.dtype or []) <= 1 else a.dtype
        example = []
        for shape_s, dt in zip(a.input_shape, dtypes, strict=False):
            shape = [int(s) for s in shape_s.split(",")]
            dtype = getattr(torch, dt)
            example.append(torch.randn(shape) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype))
        example = tuple(example)
    dynamic = None
    if a.dynamic:
        dims: dict[str, Any] = {}
        dynamic = [None] * len(example)
        for spec in a.dynamic:  # INPUT:AXIS:NAME:MAX
            i, axis, name, hi = spec.split(":")
            d = dims.setdefault(name, Dim(name, min=1, max=int(hi)))
            dynamic[int(i)] = {**(dynamic[int(i)] or {}), int(axis): d}
        dynamic = tuple(dynamic)
    art = wt_compile(
        model, example, a.output, dynamic_shapes=dynamic, progress=True, atol=a.atol, rtol=a.rtol
    )
    v = art.report.get("validation", {})
    print(
        f"wrote {art.path}: model.wasm {art.code_bytes:,} B, weights {art.weights_bytes:,} B, "
        f"arena {art.manifest.arena_bytes:,} B; max abs err vs torch {v.get('max_abs_err', float('nan')):.3g}"
    )
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from .runtime import load

    m = load(a.artifact, deadline=a.deadline, fuel=a.fuel)
    inputs = [np.load(p, allow_pickle=False) for p in a.inputs]
    t0 = time.perf_counter()
    out = m(*inputs)
    ms = (time.perf_counter() - t0) * 1e3
    outs = out if isinstance(out, tuple) else (out,)
    for spec, y in zip(m.outputs, outs, strict=True):
        print(f"{spec.name}: {y.dtype}{list(y.shape)}\n{np.array2string(y, threshold=20, precision=5)}")
    print(f"({ms:.2f} ms)")
    if a.save:
        np.save(a.save, outs[0], allow_pickle=False)
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .artifact import ENCRYPTED_WEIGHTS, WEIGHTS, read_manifest, verify_files

    m = read_manifest(a.artifact)
    enc = (Path(a.artifact) / ENCRYPTED_WEIGHTS).exists()  # checked when decrypted at load
    verify_files(a.artifact, m, skip=(WEIGHTS,) if enc else ())
    r = m.raw
    if a.json:
        print(json.dumps(r, indent=1))
        return 0
    print(
        f"{r['name']}  ({r['format']}, wasm-torch {r['compiler']['wasm_torch']}, torch {r['compiler']['torch']})"
    )
    for s in r.get("symbols", []):
        print(f"  dim {s['name']} in [{s['min']}, {s['max']}]")
    for kind in ("inputs", "outputs"):
        for t in r[kind]:
            print(f"  {kind[:-1]:6} {t['name']}: {t['dtype']}{t['shape']}")
    for f, e in r["files"].items():
        state = f"encrypted as {ENCRYPTED_WEIGHTS}" if enc and f == WEIGHTS else "verified"
        print(f"  {f}: {e['bytes']:,} B  sha256 {e['sha256'][:16]}… ({state})")
    mem = r["memory"]
    print(f"  arena {mem['arena_bytes']:,} B (without reuse {mem['arena_unplanned_bytes']:,} B)")
    print(f"  ops {r['ops']}")
    if "validation" in r:
        print(f"  validated against torch: max abs err {r['validation']['max_abs_err']:.3g}")
    return 0


def cmd_package(a: argparse.Namespace) -> int:
    from .deploy.web import package_site

    site = package_site(a.artifact, a.web, vocab=a.vocab)
    print(f"wrote {site}/  ->  python {site}/serve.py 8000  then open http://127.0.0.1:8000/")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from .serve import ServeSettings, serve

    settings = ServeSettings(
        replicas=1 if a.ray else a.replicas,  # --ray: --replicas Ray replicas, one wasm worker each
        max_batch_size=a.max_batch,
        max_queue_delay_s=a.batch_delay_ms / 1e3,
        cache_size=a.cache,
        deadline_s=a.deadline,
        fuel=a.fuel,
        auth_tokens=frozenset(a.token),
        rate_limit_per_s=a.rate_limit,
        balancer=a.balancer,
        audit_log=Path(a.audit_log) if a.audit_log else None,
        require_signature=a.require_signed,
        trusted_keys=tuple(Path(k) for k in a.trust),
        keyring=Path(a.keyring) if a.keyring else None,
    )
    if a.ray:  # raises MissingDependency (a clear "pip install 'wasm-torch[ray]'") without Ray
        from .serve.ray.app import run as run_on_ray

        run_on_ray(a.models, settings, host=a.host, port=a.port, num_replicas=a.replicas, policy=a.balancer)
        return 0
    serve(a.models, host=a.host, port=a.port, settings=settings)
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from .benchmark import bench

    models = [m for spec in a.models or [] for m in spec.split(",") if m]
    options = {"warmup": a.warmup, "repeat": a.repeat, "max_seconds": a.max_seconds}
    options = {k: v for k, v in options.items() if v is not None}
    given = {k: v for k, v in vars(a).items() if k not in ("cmd", "fn") and v not in (None, False, [])}
    given["models"] = ",".join(models) or None
    command = "wasm-torch bench" + "".join(
        f" --{k.replace('_', '-')}" + ("" if v is True else f"={v}")
        for k, v in given.items()
        if v is not None
    )
    _, found = bench(
        models,
        Path(a.out),
        a.png,
        quick=a.quick,
        node_dir=a.node_dir,
        work_dir=a.work_dir,
        command=command,
        **options,
    )
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="wasm-torch", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="compile a PyTorch model to a wasm artifact folder")
    c.add_argument("model", help="pkg.module:factory returning an nn.Module or (module, example_inputs)")
    c.add_argument(
        "--input-shape", action="append", help="comma-separated shape of one input (repeat per input)"
    )
    c.add_argument("--dtype", action="append", help="torch dtype name per input (default float32)")
    c.add_argument("--dynamic", action="append", help="INPUT:AXIS:NAME:MAX, e.g. 0:1:seq:512")
    c.add_argument("-o", "--output", required=True, help="artifact folder to write")
    c.add_argument("--atol", type=float, default=1e-4)
    c.add_argument("--rtol", type=float, default=1e-3)
    c.set_defaults(fn=cmd_compile)
    r = sub.add_parser("run", help="run an artifact on .npy inputs")
    r.add_argument("artifact")
    r.add_argument("inputs", nargs="+", help=".npy files, one per input, in order")
    r.add_argument("--save", help="write the first output to this .npy file")
    r.add_argument("--deadline", type=float, help="wall-clock limit in seconds")
    r.add_argument("--fuel", type=int, help="fuel budget (instructions, roughly)")
    r.set_defaults(fn=cmd_run)
    i = sub.add_parser("info", help="show and verify an artifact's manifest")
    i.add_argument("artifact")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_info)
    k = sub.add_parser("package", help="write a static web site that runs an artifact in the browser")
    k.add_argument("artifact")
    k.add_argument("--web", required=True, metavar="SITE", help="output folder for the site")
    k.add_argument("--vocab", help="WordPiece vocab.txt (default: MiniLM's, if the artifact is minilm)")
    k.set_defaults(fn=cmd_package)
    s = sub.add_parser("serve", help="serve artifact folders over HTTP (KServe v2)")
    s.add_argument("models", help="artifact folder, or a folder of artifact folders")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--replicas", type=int, default=2, help="workers per model (with --ray: Ray replicas)")
    s.add_argument("--max-batch", type=int, default=8)
    s.add_argument("--batch-delay-ms", type=float, default=2.0)
    s.add_argument("--cache", type=int, default=0, help="LRU result cache entries per model")
    s.add_argument("--deadline", type=float, default=10.0, help="seconds per call")
    s.add_argument("--fuel", type=int)
    s.add_argument("--token", action="append", default=[], help="bearer token (repeat); none = auth off")
    s.add_argument("--rate-limit", type=float, default=0.0, help="requests/s per client (0 = off)")
    s.add_argument("--audit-log")
    s.add_argument(
        "--balancer",
        "--policy",
        dest="balancer",
        default="peak_ewma",
        choices=["round_robin", "least_outstanding", "p2c", "peak_ewma", "weighted"],
        help="balancing policy (with --ray: the Ray Serve request router's policy)",
    )
    s.add_argument("--ray", action="store_true", help="scale out on Ray Serve (local, or RAY_ADDRESS)")
    s.add_argument("--require-signed", action="store_true", help="refuse artifacts unsigned by --trust keys")
    s.add_argument("--trust", action="append", default=[], help="trusted public key file (repeat)")
    s.add_argument("--keyring", help="keyring file for encrypted weights (default: WASM_TORCH_KEYRING)")
    s.set_defaults(fn=cmd_serve)
    integrity_cli.add_parsers(sub)
    b = sub.add_parser("bench", help="ours vs ONNX Runtime Web / ONNX Runtime / PyTorch, one thread each")
    b.add_argument("--models", action="append", help="comma-separated suite names (default: all)")
    b.add_argument("--out", default="bench/results/latest.json", help="JSON to write (PNG beside it)")
    b.add_argument("--png", type=Path, help="chart path (default: --out with .png)")
    b.add_argument("--repeat", type=int, help="timed rounds per model (default 20)")
    b.add_argument("--warmup", type=int, help="untimed rounds first (default 3)")
    b.add_argument("--max-seconds", type=float, help="timed seconds per model at most (default 20)")
    b.add_argument("--quick", action="store_true", help="1 warm-up, 3 rounds: a smoke run, not a measurement")
    b.add_argument("--node-dir", type=Path, help="has node_modules/onnxruntime-web (default bench/node)")
    b.add_argument("--work-dir", type=Path, help="keep the compiled artifacts and ONNX files here")
    b.set_defaults(fn=cmd_bench)
    a = p.parse_args(argv)
    try:
        return a.fn(a)
    except WasmTorchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
