"""Math-kernel microbenchmark: ns per element of one compiled op (exp, GELU, tanh, sigmoid, softmax,
layer norm) over a 512x512 float32 tensor, timing only the wasm call (median of repeats, thread CPU
time, 1 thread).

    python bench/vmath.py [--save DIR] [--against DIR] [--out bench/results/vmath.json]

--save keeps the compiled artifacts (e.g. before a kernel change: run it in a checkout of the previous
commit); --against DIR loads artifacts saved earlier and times them interleaved with the current
build in the same process, so the ratio is fair on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import wasm_torch
from wasm_torch.runtime import WasmModule

warnings.filterwarnings("ignore")
ROWS, COLS = 512, 512


class Op(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.ln = nn.LayerNorm(COLS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.name
        if n == "layer_norm":
            return self.ln(x)
        if n == "softmax":
            return torch.softmax(x, -1)
        if n == "gelu":
            return F.gelu(x)
        if n == "gelu_tanh":
            return F.gelu(x, approximate="tanh")
        return {"exp": torch.exp, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[n](x)


OPS = ["exp", "gelu", "gelu_tanh", "tanh", "sigmoid", "softmax", "layer_norm"]


def ns_per_element(m: WasmModule, x: np.ndarray, repeat: int) -> float:
    """The wasm call only (inputs copied in once), in CPU time of this thread: other processes on a
    shared machine slow the wall clock, not this."""
    m(x, copy=False)
    ts = []
    for _ in range(repeat):
        t0 = time.thread_time()
        m._invoke()
        ts.append(time.thread_time() - t0)
    return statistics.median(ts) * 1e9 / x.size


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--save", help="keep the compiled artifacts in this folder")
    ap.add_argument("--against", help="folder of artifacts saved earlier with --save")
    ap.add_argument("--out", default="bench/results/vmath.json")
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = (torch.randn(ROWS, COLS) * 3).contiguous()
    xn = x.numpy()
    tmp = Path(tempfile.mkdtemp(prefix="vmath_"))
    mods, base, sizes = {}, {}, {}
    for op in OPS:
        art = wasm_torch.compile(Op(op).eval(), (x,), tmp / op)
        mods[op], sizes[op] = wasm_torch.load(art), art.code_bytes
        if a.save:
            shutil.copytree(tmp / op, Path(a.save) / op, dirs_exist_ok=True)
        if a.against and (Path(a.against) / op).exists():
            base[op] = WasmModule(Path(a.against) / op)
            sizes["before_" + op] = int(base[op].manifest.raw["files"]["model.wasm"]["bytes"])
    now: dict[str, list[float]] = {op: [] for op in OPS}
    before: dict[str, list[float]] = {op: [] for op in base}
    for _ in range(a.rounds):  # interleaved: every op, current then saved, each round
        for op in OPS:
            now[op].append(ns_per_element(mods[op], xn, a.repeat))
            if op in base:
                before[op].append(ns_per_element(base[op], xn, a.repeat))
    rows = []
    for op in OPS:
        r = {"op": op, "ns_per_element": round(statistics.median(now[op]), 3), "code_bytes": sizes[op]}
        if op in before:
            r["before_ns_per_element"] = round(statistics.median(before[op]), 3)
            r["before_code_bytes"] = sizes["before_" + op]
            r["speedup"] = round(r["before_ns_per_element"] / r["ns_per_element"], 2)
        rows.append(r)
        print(r, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = "python bench/vmath.py" + (" --against DIR" if a.against else "")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": cmd, "shape": [ROWS, COLS], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
