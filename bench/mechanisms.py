"""SPEC B6: latency of each wasm_torch.nn mechanism at 100 tokens, wasm (wasmtime, 1 thread) vs torch
eager (1 thread), in one run. Uses the exported cases of tests/nn/test_nn_export.py with batch 1 and
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "nn"))
import test_nn_export as cases
from zoo_report import median_ms  # same folder: timing helper shared by the bench scripts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/mechanisms.json")
    ap.add_argument("--repeat", type=int, default=21)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cases.B, cases.T = 1, 100  # 100 tokens; the workspace case views (B, 4, 25, D)
    orig_inputs = cases._inputs

    def inputs():
        x, q, _, _, _ = orig_inputs()
        g = torch.Generator().manual_seed(1)
        xg = torch.randn(1, 100, cases.D, generator=g)
        adj = (torch.rand(1, 100, 100, generator=g) > 0.9).float()
        return x, q, xg, adj, torch.rand(1, 100, generator=g) * 6.28

    cases._inputs = inputs
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        all_cases = cases._cases()
        # the test cases use tiny tiles/chunks to exercise edges; at 100 tokens use the library defaults
        all_cases["flash_causal"] = (cases.W.FlashAttention(causal=True), all_cases["flash_causal"][1])
        all_cases["mamba"] = (cases.W.Mamba(d_model=cases.D), all_cases["mamba"][1])
        for name, (model, args) in sorted(all_cases.items()):
            if name == "workspace":
                args = (inputs()[0].reshape(1, 4, 25, cases.D),)
            model.eval()
            try:
                art = wasm_torch.compile(model, args, Path(tmp) / name)
            except wasm_torch.WasmTorchError as e:
                rows.append({"mechanism": name, "error": str(e).splitlines()[0][:200]})
                print(rows[-1], flush=True)
                continue
            m = wasm_torch.load(art)
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
            print(rows[-1], flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(
        json.dumps({"command": "python bench/mechanisms.py", "tokens": 100, "rows": rows}, indent=1)
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
