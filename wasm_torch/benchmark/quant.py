"""`wasm-torch bench --quant`: reduced-precision weights, ours against ONNX Runtime's (docs/quantization.md).

Per model, one thread everywhere, timed interleaved (suite.interleaved_ms: one run of every system per
round, the order rotating), medians:

    ours_f32, ours_fp16, ours_int8      wasm_torch.compile(..., quantize=None | "fp16" | "int8"), wasmtime
    ortweb_f32, ortweb_int8             ONNX Runtime Web (Node) on the exported model, and on the model
                                        ONNX Runtime's own `quantize_dynamic` makes of it (int8 weights,
                                        per tensor; uint8 activations quantized on the fly)
    ort_f32, ort_int8                   ONNX Runtime native (Python), the same two files

and beside every latency the accuracy of that system's output against PyTorch float32 on the same
fresh inputs: cosine of the whole output, argmax agreement over rows of the last axis (the top-1
of classifier logits), error relative to the output's scale. And the weights bytes of each format.
The JSON goes to bench/results/quant.json; the Markdown table is printed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compiler import CompileOptions
from ..compiler.check import compare
from ..compiler.quant_check import output_agreement
from .models import CASES, build
from .peers import OrtWeb, ort_native_runner, ort_native_session, ortweb_package, to_onnx
from .suite import _torch_threads, interleaved_ms, machine, wall_ms

MODELS = ("minilm_seq16", "minilm_seq128", "gpt2_2layer", "resnet50", "mobilenet_v2")
OURS = {"ours_f32": None, "ours_fp16": "fp16", "ours_int8": "int8"}
SYSTEMS = ("ours_f32", "ours_fp16", "ours_int8", "ortweb_f32", "ortweb_int8", "ort_f32", "ort_int8")


def _leaves(y: Any) -> list[np.ndarray]:
    leaves, _ = torch.utils._pytree.tree_flatten(y)
    return [np.asarray(x.detach().numpy() if isinstance(x, torch.Tensor) else x) for x in leaves]


def accuracy(got: list[np.ndarray], want: list[np.ndarray]) -> dict[str, Any]:
    """cosine / top1 / rel_err of the first output (every model here has one) against PyTorch."""
    a, w = np.asarray(got[0]), want[0]
    agree = output_agreement(a.astype(w.dtype), w)
    c = compare([a.astype(w.dtype)], [w], 0.0, 0.0)
    return {"cosine": agree["cosine"], "top1": agree["top1"], "rel_err": c["rel_err"]}


def quantize_onnx(src: Path, dst: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization, its defaults (QInt8 weights per tensor). The exporter's
    value_info is dropped first: onnx's shape inference (which quantize_dynamic runs) recomputes it,
    and refused some of the dynamo exporter's (ResNet-50's fc: "existing shape differ")."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    m = onnx.load(str(src))
    del m.graph.value_info[:]
    plain = src.with_suffix(".noinfo.onnx")
    onnx.save(m, str(plain))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(plain), str(dst), weight_type=QuantType.QInt8)


def run_model(name: str, work: Path, package: Path, opts: dict[str, Any]) -> dict[str, Any]:
    import wasm_torch

    case = CASES[name]
    model, example, fresh = build(case)
    arrays = [x.numpy() for x in fresh]
    with torch.no_grad():
        want = _leaves(model(*fresh))
    row: dict[str, Any] = {"model": name, "description": case.description, "errors": {}}
    timers: dict[str, Any] = {}
    outs: dict[str, list[np.ndarray]] = {}
    for system, fmt in OURS.items():
        try:
            art = wasm_torch.compile(model, example, work / system, name=name,
                                     options=CompileOptions(threads=False, quantize=fmt), min_cosine=-1.0)
            m = wasm_torch.load(art.path)
            row[f"{system}_weights_bytes"] = art.weights_bytes
            outs[system] = [np.asarray(o) for o in (lambda y: y if isinstance(y, tuple) else (y,))(m(*arrays))]
            timers[system] = wall_ms(lambda m=m: m(*arrays))
        except Exception as e:  # one failing system does not stop the others
            row["errors"][system] = f"{type(e).__name__}: {str(e)[:300]}"
    onnx = {"f32": work / "model.onnx", "int8": work / "model.int8.onnx"}
    webs: dict[str, OrtWeb] = {}
    try:
        row.update(to_onnx(model, example, onnx["f32"]))
        try:
            quantize_onnx(onnx["f32"], onnx["int8"])
        except Exception as e:  # ONNX Runtime's quantizer failed: its int8 systems are left out, not the rest
            row["errors"]["quantize_dynamic"] = f"{type(e).__name__}: {str(e)[:300]}"
            del onnx["int8"]
        for kind, path in onnx.items():
            row[f"onnx_{kind}_bytes"] = path.stat().st_size + sum(
                p.stat().st_size for p in work.glob(f"{path.name}.data"))
            try:
                run = ort_native_runner(ort_native_session(path, 1), arrays)
                outs[f"ort_{kind}"] = run()
                timers[f"ort_{kind}"] = wall_ms(run)
            except Exception as e:
                row["errors"][f"ort_{kind}"] = f"{type(e).__name__}: {str(e)[:300]}"
            try:
                webs[kind] = OrtWeb(path, arrays, work / f"ortweb_{kind}", package, opts["warmup"], 2.0, threads=1)
                timers[f"ortweb_{kind}"] = webs[kind].run_once
            except Exception as e:
                row["errors"][f"ortweb_{kind}"] = f"{type(e).__name__}: {str(e)[:300]}"
        with _torch_threads(1):
            ms, rounds = interleaved_ms(timers, opts["warmup"], opts["repeat"], opts["max_seconds"])
        row["rounds"] = rounds
        for system, t in ms.items():
            row[f"{system}_ms"] = t
    finally:
        for kind, w in webs.items():
            try:
                outs[f"ortweb_{kind}"] = w.close()["outputs"]
            except Exception as e:
                row["errors"].setdefault(f"ortweb_{kind}", f"{type(e).__name__}: {str(e)[:300]}")
                w.kill()
    for system, got in outs.items():
        for k, v in accuracy(got, want).items():
            row[f"{system}_{k}"] = v
    for base in ("ortweb_int8", "ortweb_f32"):
        if row.get("ours_int8_ms") and row.get(f"{base}_ms"):
            row[f"ours_int8_vs_{base}"] = row["ours_int8_ms"] / row[f"{base}_ms"]
    if row.get("ours_int8_ms") and row.get("ours_f32_ms"):
        row["ours_int8_speedup"] = row["ours_f32_ms"] / row["ours_int8_ms"]
    return row


def _f(x: Any, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def markdown_table(result: dict[str, Any]) -> str:
    head = ("| model | " + " | ".join(f"{s} ms" for s in SYSTEMS) + " | int8 / ORT-Web int8 | int8 / ORT-Web f32 |"
            " weights MB f32 / fp16 / int8 / ORT int8 |")
    lines = [head, "|" + "---|" * (len(SYSTEMS) + 4)]
    acc = ["| model (accuracy vs PyTorch f32: cosine; top-1 agreement) | " + " | ".join(SYSTEMS) + " |",
           "|" + "---|" * (len(SYSTEMS) + 1)]
    for r in result["rows"]:
        mb = " / ".join(_f(r.get(k) and r[k] / 1e6, ".1f") for k in (
            "ours_f32_weights_bytes", "ours_fp16_weights_bytes", "ours_int8_weights_bytes", "onnx_int8_bytes"))
        lines.append(f"| {r['model']} | " + " | ".join(_f(r.get(f"{s}_ms"), ".2f") for s in SYSTEMS)
                     + f" | {_f(r.get('ours_int8_vs_ortweb_int8'), '.2f')} | {_f(r.get('ours_int8_vs_ortweb_f32'), '.2f')}"
                     f" | {mb} |")
        cells = []
        for s in SYSTEMS:
            c, t = r.get(f"{s}_cosine"), r.get(f"{s}_top1")
            cells.append("—" if c is None else f"{c:.5f}" + ("" if t is None else f"; {t:.2f}"))
        acc.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(acc) + "\n"


def bench_quant(models: list[str] | None, out: Path, *, warmup: int = 3, repeat: int = 20, max_seconds: float = 20.0,
                node_dir: Path | None = None, work_dir: Path | None = None, command: str | None = None) -> dict[str, Any]:
    package = ortweb_package(node_dir)
    names = models or list(MODELS)
    opts = {"warmup": warmup, "repeat": repeat, "max_seconds": max_seconds}
    result = {"machine": machine(package, command), "settings": {**opts, "threads": 1, "models": names}, "rows": []}
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="wasm_torch_quant_bench_"))
    try:
        for n in names:
            d = work / n
            d.mkdir(parents=True, exist_ok=True)
            try:
                result["rows"].append(run_model(n, d, package, opts))
            except Exception as e:  # a model that cannot run at all is a row with its error, not the end
                result["rows"].append({"model": n, "errors": {"model": f"{type(e).__name__}: {str(e)[:300]}"}})
            print(f"{n}: " + ", ".join(f"{s} {_f(result['rows'][-1].get(f'{s}_ms'), '.1f')} ms" for s in SYSTEMS), flush=True)
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    import os

    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(markdown_table(result))
    return result
