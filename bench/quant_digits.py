"""Accuracy kept by reduced-precision weights on a trained model: the digits CNN of the cascade example
(bench/serve_cascade.py: scikit-learn's digits, 50/25/25 split, trained in torch), test accuracy in
PyTorch and in wasm as float32, fp16, int8 and int8-static (convolution ranges calibrated on 256
images of the calibration split), over several seeds (split, training and calibration all change).

    .venv/bin/python bench/quant_digits.py [--seeds 5] [--out bench/results/quant_digits.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from serve_cascade import DigitsCNN, digits_split, train

import wasm_torch

FORMATS = (None, "fp16", "int8", "int8-static")


def accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    m = wasm_torch.load(path)
    logits = np.concatenate([m(x[i : i + 256]) for i in range(0, len(x), 256)])
    return float((logits.argmax(1) == y).mean())


def one_seed(seed: int, tmp: Path) -> dict:
    data = digits_split(seed)
    torch.manual_seed(seed)
    cnn = train(DigitsCNN(), *data["train"], epochs=30, lr=0.003, seed=seed)
    xt, yt = data["test"]
    with torch.no_grad():
        row = {"seed": seed, "torch": float((cnn(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())}
    batch = torch.export.Dim("batch", min=1, max=512)
    example = (torch.from_numpy(data["train"][0][:8]),)
    calib = [(torch.from_numpy(data["calibration"][0][i : i + 64]),) for i in range(0, 256, 64)]
    for fmt in FORMATS:
        kw = {"calibration": calib} if fmt == "int8-static" else {}
        art = wasm_torch.compile(cnn, example, tmp / f"{seed}_{fmt}", dynamic_shapes=({0: batch},), quantize=fmt, **kw)
        row[str(fmt or "float32")] = accuracy(art.path, xt, yt)
        row[f"{fmt or 'float32'}_weights_bytes"] = art.weights_bytes
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="bench/results/quant_digits.json")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_seed(s, Path(tmp)) for s in range(a.seeds)]
    for r in rows:
        print(f"seed {r['seed']}: torch {r['torch']:.4f} " + " ".join(
            f"{k} {r[k]:.4f} ({100 * (r[k] - r['torch']):+.2f} pt)" for k in ("float32", "fp16", "int8", "int8-static")))
    summary = {k: {"mean_drop_points": statistics.mean(100 * (r["torch"] - r[k]) for r in rows),
                   "worst_drop_points": max(100 * (r["torch"] - r[k]) for r in rows)}
               for k in ("float32", "fp16", "int8", "int8-static")}
    print(json.dumps(summary, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": f"python bench/quant_digits.py --seeds {a.seeds}", "rows": rows,
                                       "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
