"""`wasm-torch deploy`: parsing for the deploy command (the work is in deploy.py). It reuses the
model-loading flags of `wasm-torch tune` (learn/cli.py), so the two commands read MODEL the same
way; deploy may import learn, never the other way round. Importing this module is cheap: nothing
heavy until the command runs.

wasm-torch deploy pkg.mod:make --target web|serve|edge -o OUT --key keys/release.key
                  [--max-latency-ms X] [--max-size-mb Y] [--budget 12]
"""

from __future__ import annotations

import argparse
from typing import Any

from ..learn.cli import load_model, model_args, non_negative_int, positive_float
from .deploy import QUANTIZE_CHOICES


def cmd_deploy(a: argparse.Namespace) -> int:
    from .deploy import Requirements, deploy

    model, inputs, dynamic = load_model(a)
    rep = deploy(
        model, inputs, a.output, target=a.target, keys=a.key, dynamic_shapes=dynamic,
        requirements=Requirements(a.max_latency_ms, a.max_size_mb), budget=a.budget,
        memory=a.memory, progress=not a.quiet, quantize=a.quantize,
    )  # fmt: skip
    t = rep.tuning
    print(f"deployed {a.model} -> {rep.out} ({rep.target}) in {rep.seconds:.0f} s")
    print(f"  latency here: {rep.latency_ms['p50']:.4f} ms median, {rep.latency_ms['p90']:.4f} ms p90")
    print(f"  size: {rep.size_bytes['total']:,} B (model.wasm {rep.size_bytes['wasm']:,}, weights {rep.size_bytes['weights']:,}"
          f" as {rep.quantize or 'float32'})")
    if "gain" in t:
        print(f"  tuning: {t['gain']:.3f}x over the default ({t['trials']} trials, significant: {t['significant']})")
    print(f"  validated against PyTorch: max abs err {rep.validation.get('max_abs_err', float('nan')):.3g}")
    print(f"  signed by {', '.join(rep.signed_by)}")
    for s in rep.next_steps:
        print(f"  next: {s}")
    return 0


def add_parsers(sub: Any) -> None:
    d = sub.add_parser("deploy", help="tune, compile, validate, bench, check requirements, sign and package")
    model_args(d)
    d.add_argument("--target", required=True, choices=["web", "serve", "edge"])
    d.add_argument("-o", "--output", required=True, help="a new (or empty) folder to write")
    d.add_argument("--key", action="append", default=[], help="private key to sign with (repeat for hybrid)")
    d.add_argument("--max-latency-ms", type=positive_float, help="refuse if one call is slower here")
    d.add_argument("--max-size-mb", type=positive_float, help="refuse if model.wasm + weights.bin is larger (MB = 1e6 B)")
    d.add_argument("--budget", type=non_negative_int, default=12, help="tuning trials (0 = default options)")
    d.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto",
                   help="weights' format; auto: float32 if it fits --max-size-mb, else fp16, else int8")  # fmt: skip
    d.set_defaults(fn=cmd_deploy)
