"""Compile the whole zoo (and all-MiniLM-L6-v2) and report, per model: code bytes, weight bytes,
arena bytes with/without buffer reuse, max abs error vs PyTorch on fresh inputs, and latency of
wasm vs PyTorch eager (median of repeated runs after warm-up, one thread, same process).

    .venv/bin/python bench/zoo_report.py [--out bench/results/zoo.json]

Timing figures are for comparison within one run only; this machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch.export import Dim

import wasm_torch
from wasm_torch.benchmark.timing import median_ms
from wasm_torch.compiler.check import compare, reference_outputs
from wasm_torch.zoo import ZOO, build, minilm


def row(name, model, example, fresh, dyn, root: Path, repeat: int) -> dict:
    art = wasm_torch.compile(model, example, root / name, dynamic_shapes=dyn)
    m = wasm_torch.load(art)
    got = m(*[x.numpy() for x in fresh])
    got = list(got) if isinstance(got, tuple) else [got]
    err = compare(got, reference_outputs(model, fresh), 1e-4, 1e-3)
    with torch.no_grad():
        t_torch = median_ms(lambda: model(*fresh), repeat)
    arrays = [x.numpy() for x in fresh]
    t_wasm = median_ms(lambda: m(*arrays), repeat)
    mem = art.manifest.raw["memory"]
    return {
        "model": name,
        "code_bytes": art.code_bytes,
        "weights_bytes": art.weights_bytes,
        "arena_bytes": mem["arena_bytes"],
        "arena_unplanned_bytes": mem["arena_unplanned_bytes"],
        "max_abs_err": err["max_abs_err"],
        "ok": err["ok"],
        "ours_ms": round(t_wasm, 3),
        "torch_ms": round(t_torch, 3),
        "input_shapes": [list(x.shape) for x in fresh],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/zoo.json")
    ap.add_argument("--repeat", type=int, default=9)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ZOO:
            model, example, dyn = build(name)
            fresh = ZOO[name].inputs(torch.Generator().manual_seed(99))
            rows.append(row(name, model, example, fresh, dyn, root, a.repeat))
            print(rows[-1], flush=True)
        model, tok = minilm()
        seq = Dim("seq", min=2, max=512)
        enc = tok(["an example"], return_tensors="pt")
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(1000, 20000, (1, 128), generator=g)
        fresh = (ids, torch.ones_like(ids))
        rows.append(
            row(
                "minilm_seq128",
                model,
                (enc["input_ids"], enc["attention_mask"]),
                fresh,
                {"input_ids": {1: seq}, "attention_mask": {1: seq}},
                root,
                a.repeat,
            )
        )
        print(rows[-1], flush=True)
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
        "command": "python bench/zoo_report.py",
        "torch_threads": 1,
        "repeat": a.repeat,
        "rows": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(
        f"\n{'model':<22}{'code B':>9}{'weights B':>12}{'max err':>10}{'ours ms':>10}{'torch ms':>10}{'ratio':>7}"
    )
    for r in rows:
        print(
            f"{r['model']:<22}{r['code_bytes']:>9,}{r['weights_bytes']:>12,}{r['max_abs_err']:>10.2e}"
            f"{r['ours_ms']:>10.2f}{r['torch_ms']:>10.2f}{r['ours_ms'] / r['torch_ms']:>7.2f}"
        )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
