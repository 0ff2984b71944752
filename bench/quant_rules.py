"""Why int8 activations are 8-bit and weights 8-bit by default: all-MiniLM-L6-v2 (real weights) through
the reference interpreter with three int8 rules for its GEMMs, token cosine vs PyTorch float32.

    a7w8  7-bit activations, 8-bit weights   (one way to give relaxed SIMD's dot product its 7-bit operand)
    a8w7  8-bit activations, 7-bit weights   (the other way: what CompileOptions(relaxed=True) does)
    a8w8  8-bit activations, 8-bit weights   (the default)

A what-if experiment, not a product path: the 7-bit activation rule exists only here, by running the
reference with quant_format.LEVELS = 127 (restored afterwards). Sentences are padded to 128 tokens;
the cosine is over the real tokens only.

    .venv/bin/python bench/quant_rules.py [--out bench/results/quant_rules.json]
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SENTENCES = ["an example sentence", "The cat sat on the mat.",
             "WebAssembly lets a compiled model run in a browser, an edge device or a sandboxed server."]


@contextmanager
def activation_levels(levels: int):
    from wasm_torch.compiler.ops import quant_format

    saved = quant_format.LEVELS
    quant_format.LEVELS = levels
    try:
        yield
    finally:
        quant_format.LEVELS = saved


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/quant_rules.json")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    from wasm_torch.compiler import lower
    from wasm_torch.compiler.ir.interp import run
    from wasm_torch.compiler.passes.quantize import quantize
    from wasm_torch.zoo import minilm

    model, tok = minilm()
    encs = [tok([s], return_tensors="pt", padding="max_length", max_length=128) for s in SENTENCES]
    g = lower(model, (encs[0]["input_ids"], encs[0]["attention_mask"]))
    rows = {}
    for label, levels, seven in [("a7w8", 127, False), ("a8w7", 255, True), ("a8w8", 255, False)]:
        with activation_levels(levels):
            h = quantize(g, "int8", seven_bit=seven)
            cos = []
            for e in encs:
                want = model(e["input_ids"], e["attention_mask"]).detach().numpy()[0].astype(np.float64)
                got = run(h, {g.inputs[0]: e["input_ids"].numpy(), g.inputs[1]: e["attention_mask"].numpy()})[0][0]
                m = e["attention_mask"].numpy()[0].astype(bool)
                x, y = got[m].ravel().astype(np.float64), want[m].ravel()
                cos.append(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)))
        rows[label] = cos
        print(label, " / ".join(f"{c:.4f}" for c in cos))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": "python bench/quant_rules.py", "token_cosine": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
