"""End-to-end effect of vector math + elementwise fusion on real models: IR node count, model.wasm
bytes, and wasm latency beside PyTorch eager (1 thread, medians of interleaved repeats, in CPU time of
the calling thread so other processes on a shared machine do not inflate it).

    python bench/fusion.py [--models minilm_seq128,gpt2,...] [--variants simd,pragma,scalar,unfused]
                           [--save DIR] [--against DIR]

Each model is compiled once per variant in this process, then all are timed interleaved. Variants:
how the compiler (CompileOptions.elementwise, codegen/fused.py) emits the innermost loop of all-f32 elementwise code (simd: explicit f32x4, the
default; pragma: scalar C under `#pragma clang loop vectorize(enable)`; scalar: plain loops; o3:
plain loops with the model code compiled at -O3 instead of -Os, as a separate -O3 unit would be);
unfused: scalar loops without the fuse_elementwise pass (the codegen before this work, with today's
kernels); default: the pipeline as it is.
--save keeps the first variant's artifacts; --against DIR adds artifacts saved earlier (e.g. from
the previous commit with --variants default --save DIR) as one more timed column, "before".
Models: the zoo, all-MiniLM-L6-v2 at seq 128, a 768-wide 2-layer GPT-2 at seq 128
(zoo/bench_models.py) and, alone, a bias add and GPT-2's spelled-out GELU on (128, 3072)
(gelu_chain), the same with a dynamic row count (_dyn), and on (128, 1001) (_odd).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn
from torch.export import Dim

import wasm_torch
from wasm_torch.artifact import Artifact
from wasm_torch.benchmark.timing import median_ms
from wasm_torch.compiler import CompileOptions
from wasm_torch.compiler.check import compare, reference_outputs
from wasm_torch.runtime import WasmModule
from wasm_torch.zoo import ZOO, build, minilm

warnings.filterwarnings("ignore")


class GeluChain(nn.Module):
    """GPT-2's NewGELUActivation as written in transformers (eight elementwise ops), after a bias add."""

    def forward(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = x + b
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def case(name: str) -> tuple:
    """(model, example inputs, timed inputs, dynamic_shapes)."""
    if name.startswith("gelu_chain"):  # the MLP activation of a 768-wide GPT-2 at seq 128 (or odd width)
        cols = 1001 if name.endswith("odd") else 3072
        g = torch.Generator().manual_seed(0)
        x, b = torch.randn(128, cols, generator=g), torch.randn(cols, generator=g)
        dyn = {"x": {0: Dim("rows", min=1, max=128)}, "b": None} if name.endswith("dyn") else None
        return GeluChain(), (x, b), (x, b), dyn
    if name == "gpt2_768_seq128":  # bench_models' 2-layer GPT-2 (768 wide), a small vocabulary
        from wasm_torch.zoo.bench_models import gpt2_2layer

        ids = torch.randint(0, 1000, (1, 128), generator=torch.Generator().manual_seed(0))
        return gpt2_2layer(vocab=1000).eval(), (ids,), (ids,), None
    if name == "minilm_seq128":
        model, tok = minilm()
        enc = tok(["an example"], return_tensors="pt")
        ids = torch.randint(1000, 20000, (1, 128), generator=torch.Generator().manual_seed(0))
        seq = Dim("seq", min=2, max=512)
        dyn = {"input_ids": {1: seq}, "attention_mask": {1: seq}}
        return model, (enc["input_ids"], enc["attention_mask"]), (ids, torch.ones_like(ids)), dyn
    model, example, dyn = build(name)
    return model, example, ZOO[name].inputs(torch.Generator().manual_seed(99)), dyn




VARIANTS = {  # variant -> (CompileOptions.elementwise, run the fusion pass, model code -O); default: as is
    "default": None,
    "simd": ("simd", True, "-Os"),
    "pragma": ("pragma", True, "-Os"),
    "scalar": ("scalar", True, "-Os"),
    "o3": ("scalar", True, "-O3"),
    "unfused": ("scalar", False, "-Os"),
}


def compile_variant(variant: str, model, example, dyn, out: Path) -> Artifact:
    if VARIANTS[variant] is None:
        return wasm_torch.compile(model, example, out, dynamic_shapes=dyn)
    mode, fuse, opt = VARIANTS[variant]
    options = CompileOptions(elementwise=mode, model_opt=opt)
    if not fuse:
        options = options.without("fuse_elementwise")
    return wasm_torch.compile(model, example, out, dynamic_shapes=dyn, options=options)


def measure(name: str, variants: list[str], a: argparse.Namespace, tmp: Path) -> dict:
    model, example, fresh, dyn = case(name)
    arrays = [x.numpy() for x in fresh]
    want = reference_outputs(model, fresh)
    r: dict = {"model": name}
    runs = {"torch": lambda f=model, x=fresh: f(*x)}
    for v in variants:
        art = compile_variant(v, model, example, dyn, tmp / name / v)
        if a.save and v == variants[0]:
            shutil.copytree(art.path, Path(a.save) / name, dirs_exist_ok=True)
        m = wasm_torch.load(art)
        got = m(*arrays)
        err = compare(list(got) if isinstance(got, tuple) else [got], want, 1e-4, 1e-3)
        r[v] = {"nodes": sum(art.manifest.raw["ops"].values()), "code_bytes": art.code_bytes}
        r[v]["max_abs_err"] = err["max_abs_err"]
        runs[v] = lambda m=m, x=arrays: m(*x)
    if a.against and (Path(a.against) / name).exists():
        old = WasmModule(Path(a.against) / name)
        r["before"] = {
            "nodes": sum(old.manifest.raw["ops"].values()),
            "code_bytes": int(old.manifest.raw["files"]["model.wasm"]["bytes"]),
        }
        runs["before"] = lambda m=old, x=arrays: m(*x)
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for _ in range(a.rounds):  # interleaved
            for k, fn in runs.items():
                times[k].append(median_ms(fn, a.repeat, clock="cpu"))
    for k, ts in times.items():
        if k == "torch":
            r["torch_ms"] = round(statistics.median(ts), 3)
        else:
            r[k]["ms"] = round(statistics.median(ts), 3)
    print(r, flush=True)
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--models",
        default=",".join(
            [*ZOO, "minilm_seq128", "gpt2_768_seq128", "gelu_chain", "gelu_chain_dyn", "gelu_chain_odd"]
        ),
    )
    ap.add_argument("--variants", default="simd,pragma,scalar,unfused")
    ap.add_argument("--save", help="keep the first variant's compiled artifacts in this folder")
    ap.add_argument("--against", help="folder of artifacts saved earlier with --save")
    ap.add_argument("--out", default="bench/results/fusion.json")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    variants = a.variants.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="fusion_"))
    rows = []
    for name in a.models.split(","):
        try:
            rows.append(measure(name, variants, a, tmp))
        except Exception as e:  # report and go on: one model's failure should not hide the others
            print(f"{name}: {type(e).__name__}: {str(e)[:300]}", flush=True)
            rows.append({"model": name, "error": f"{type(e).__name__}: {str(e)[:300]}"})
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = f"python bench/fusion.py --variants {a.variants}" + (" --against DIR" if a.against else "")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": cmd, "rows": rows}, indent=1))
    print(f"\n{'model':<22}" + "".join(f"{k:>22}" for k in [*variants, *(["before"] if a.against else [])]))
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<22}{r['error'][:80]}")
            continue
        cells = [r[k] for k in [*variants, "before"] if k in r]
        line = "".join(f"{c['nodes']:>5} {c['code_bytes']:>7,}B {c.get('ms', 0):>7.3f}ms" for c in cells)
        print(f"{r['model']:<22}{line}   torch {r['torch_ms']:.3f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
