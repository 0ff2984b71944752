"""Latency of each wasm_torch.nn mechanism at 100 tokens, wasm (wasmtime, 1 thread) vs torch
eager (1 thread), in one run. Uses wasm_torch.zoo.mechanisms.mechanism_cases with batch 1 and
T = 100 (graph mechanisms: 100 nodes). Median of repeated calls after warm-up.

    .venv/bin/python bench/mechanisms.py [--out bench/results/mechanisms.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

import wasm_torch
from wasm_torch.benchmark.timing import median_ms
from wasm_torch.zoo.mechanisms import mechanism_cases


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/mechanisms.json")
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--only", help="comma-separated mechanism names (default: all)")
    ap.add_argument(
        "--ablate",
        help="also time each case compiled without this pass (e.g. fuse_elementwise), in the same run",
    )
    a = ap.parse_args()
    only = set(a.only.split(",")) if a.only else None
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # 100 tokens, batch 1, 100 graph nodes; the library's own tile and chunk sizes
        all_cases = mechanism_cases(batch=1, tokens=100, nodes=100, library_defaults=True)
        for name, (model, args) in sorted(all_cases.items()):
            if only is not None and name not in only:
                continue
            model.eval()
            try:
                art = wasm_torch.compile(model, args, Path(tmp) / name)
            except wasm_torch.WasmTorchError as e:
                rows.append({"mechanism": name, "error": str(e).splitlines()[0][:200]})
                print(rows[-1], flush=True)
                continue
            m = wasm_torch.load(art, threads=1)
            arrays = [x.numpy() for x in args]
            with torch.no_grad():
                t_torch = median_ms(lambda: model(*args), a.repeat)  # noqa: B023
            t_wasm = median_ms(lambda: m(*arrays), a.repeat)  # noqa: B023
            rows.append(
                {
                    "mechanism": name,
                    "ours_ms": round(t_wasm, 4),
                    "torch_ms": round(t_torch, 4),
                    "code_bytes": art.code_bytes,
                    "max_abs_err": art.report["validation"]["max_abs_err"],
                    "input_shapes": [list(x.shape) for x in args],
                }
            )
            if a.ablate:  # the same case without one pass, timed right after: a like-for-like A/B
                opts = wasm_torch.CompileOptions().without(a.ablate)
                art2 = wasm_torch.compile(model, args, Path(tmp) / f"{name}-ablate", options=opts)
                m2 = wasm_torch.load(art2, threads=1)
                rows[-1][f"ours_without_{a.ablate}_ms"] = round(median_ms(lambda: m2(*arrays), a.repeat), 4)  # noqa: B023
                rows[-1]["ours_again_ms"] = round(median_ms(lambda: m(*arrays), a.repeat), 4)  # noqa: B023
            print(rows[-1], flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(
        json.dumps({"command": "python bench/mechanisms.py " + " ".join(sys.argv[1:]), "tokens": 100, "rows": rows}, indent=1)
    )
    print(f"\n{'mechanism':<20}{'ours ms':>10}{'torch ms':>10}{'ratio':>8}{'code B':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['mechanism']:<20}  failed: {r['error'][:60]}")
        else:
            print(
                f"{r['mechanism']:<20}{r['ours_ms']:>10.3f}{r['torch_ms']:>10.3f}"
                f"{r['ours_ms'] / r['torch_ms']:>8.2f}{r['code_bytes']:>9,}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
