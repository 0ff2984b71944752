"""Text generation: prefill ms and decode ms/token (tokens/s) of a GPT-2-small-width decoder —
our generator (KV cache in wasm linear memory) vs PyTorch eager with transformers' KV cache vs ONNX
Runtime Web (Node, wasm backend) running the same decoder exported with past key/values — on 1 and 2
threads; and the decode step time at every position (our step is O(1) in the weights: the curve is flat
but for the attention over the cache, which grows linearly and is a small share).

    python bench/generate.py [--layers 12] [--max-context 512] [--prompt 128] [--rounds 7]
                             [--threads 1,2] [--positions 16,128,256,384,500] [--curve-threads 1]
                             [--out bench/results/generate.json]   (+ generate.png beside it)

The model is transformers' GPT2LMHeadModel at GPT-2 small's widths (768 wide, 12 heads, vocabulary
50257, 1024 positions; --layers of them, 12 = GPT-2 small) with random weights (seed 0): timing does
not depend on the values. Every measurement interleaves the systems call by call (round robin, wall
clock, median over rounds; ratios are medians of per-round ratios), so load from other jobs hits all of
them alike. Decode at position P: each system holds a P-token cache and runs one step on it, then
rewinds to P (ours `Generator.truncate`, torch `DynamicCache.crop`; ORT-Web is stateless: it is fed
the P-position past tensors each run and returns the P+1 ones, which is how it generates). ORT-Web
runs static-P sessions of one ONNX export with a dynamic past axis (torch.onnx dynamo exporter,
eager attention); prefill uses a second export without past inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from torch.export import Dim
from transformers import DynamicCache

from wasm_torch.benchmark.peers import OrtWeb, _quiet_loggers, node_version, ortweb_package
from wasm_torch.compiler import CompileOptions
from wasm_torch.generate import compile_generator, load_generator

ROOT = Path(__file__).resolve().parents[1]


class Prefill(torch.nn.Module):
    """input_ids [1, T] -> (logits of the last token, present k_0, v_0, ...): the ONNX prefill model."""

    def __init__(self, hf: torch.nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.hf(input_ids=input_ids, use_cache=True, logits_to_keep=1)
        return (out.logits[:, -1], *[t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)])


class PastStep(torch.nn.Module):
    """(input_ids [1, 1], past k_0, v_0, ... [1, 12, P, 64]) -> (logits, present k_0, v_0, ... [1, 12, P+1, 64])."""

    def __init__(self, hf: torch.nn.Module):
        super().__init__()
        self.hf, self.layers = hf, hf.config.n_layer

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = DynamicCache(config=self.hf.config)
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        pos = (torch.arange(input_ids.shape[1]) + past[0].shape[2]).unsqueeze(0)
        out = self.hf(input_ids=input_ids, past_key_values=cache, position_ids=pos, use_cache=True, logits_to_keep=1)
        return (out.logits[:, -1], *[t for layer in cache.layers for t in (layer.keys, layer.values)])


def export_onnx(hf: torch.nn.Module, work: Path, max_context: int) -> dict[str, Path]:
    hf.set_attn_implementation("eager")
    L, H, D = hf.config.n_layer, hf.config.n_head, hf.config.n_embd // hf.config.n_head
    paths = {"prefill": work / "prefill.onnx", "step": work / "step.onnx"}
    with _quiet_loggers(), torch.no_grad():
        T, P = Dim("T", min=2, max=max_context), Dim("past", min=1, max=max_context - 1)
        torch.onnx.export(Prefill(hf).eval(), (torch.zeros(1, 4, dtype=torch.int64),), dynamo=True, verbose=False,
                          dynamic_shapes=({1: T},)).save(str(paths["prefill"]))  # fmt: skip
        past = tuple(torch.zeros(1, H, 4, D) for _ in range(2 * L))
        torch.onnx.export(PastStep(hf).eval(), (torch.zeros(1, 1, dtype=torch.int64), *past), dynamo=True,
                          verbose=False, dynamic_shapes=(None, tuple({2: P} for _ in past))).save(str(paths["step"]))  # fmt: skip
    return paths


def median_ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1e3, 3)


def ratio(a: list[float], b: list[float]) -> float:
    """Median of per-round ratios a/b (both seconds, same rounds)."""
    return round(statistics.median(x / y for x, y in zip(a, b, strict=True)), 3)


def torch_step(hf: torch.nn.Module, cache: DynamicCache, token: int, threads: int) -> tuple[float, float, torch.Tensor]:
    """One decode step of PyTorch eager with transformers' cache: (wall s, this thread's CPU s, logits)."""
    torch.set_num_threads(threads)
    t0, c0 = time.perf_counter(), time.thread_time()
    with torch.no_grad():
        out = hf(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True)
    return time.perf_counter() - t0, time.thread_time() - c0, out.logits[0, -1]


def our_step(gen, token: int) -> tuple[float, float, np.ndarray]:
    t0, c0 = time.perf_counter(), time.thread_time()
    logits = gen.step(token)
    return time.perf_counter() - t0, time.thread_time() - c0, logits


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=args.layers, bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    work = Path(args.work or tempfile.mkdtemp(prefix="wt_bench_gen_"))
    t0 = time.perf_counter()
    art = compile_generator(hf, work / "gen", max_context=args.max_context, check_steps=4,
                            options=CompileOptions(threads=True, relaxed=False))  # fmt: skip
    compile_s = time.perf_counter() - t0
    hf.set_attn_implementation("sdpa")  # torch's fastest CPU attention for the eager baseline
    t0 = time.perf_counter()
    onnx = export_onnx(hf, work, args.max_context)
    hf.set_attn_implementation("sdpa")
    export_s = time.perf_counter() - t0
    pkg = ortweb_package()
    rng = np.random.default_rng(0)
    prompt = [int(x) for x in rng.integers(0, cfg.vocab_size, args.prompt)]
    L, H, _D = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
    res: dict = {
        "model": {"family": "gpt2", "layers": L, "width": cfg.n_embd, "heads": H, "vocab": cfg.vocab_size,
                  "params_M": round(sum(p.numel() for p in hf.parameters()) / 1e6, 1),
                  "weights_bytes": art.manifest.raw["memory"]["weights_bytes"]},
        "max_context": args.max_context, "prompt_tokens": args.prompt, "rounds": args.rounds,
        "compile_s": round(compile_s, 1), "onnx_export_s": round(export_s, 1), "validation": art.report["validation"],
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_avg_start": os.getloadavg(), "torch": torch.__version__, "node": node_version()},
        "prefill": {}, "decode": {}, "curve": {},
    }
    for threads in args.threads:
        gen = load_generator(art.path, threads=threads)
        # ---- prefill: the prompt, interleaved round robin ----------------------------------------------
        ort = OrtWeb(onnx["prefill"], [np.array([prompt], np.int64)], work / f"ort_prefill_{threads}", pkg,
                     warmup=1, threads=threads)  # fmt: skip
        times: dict[str, list[float]] = {"ours": [], "torch": [], "ortweb": []}
        try:
            gen.prefill(prompt)
            torch.set_num_threads(threads)
            with torch.no_grad():
                hf(input_ids=torch.tensor([prompt]), use_cache=True)
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                ours = gen.prefill(prompt)
                times["ours"].append(time.perf_counter() - t0)
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                with torch.no_grad():
                    want = hf(input_ids=torch.tensor([prompt]), use_cache=True).logits[0, -1]
                times["torch"].append(time.perf_counter() - t0)
                times["ortweb"].append(ort.run_once() / 1e3)
            ort_out = ort.close()
        except BaseException:
            ort.kill()
            raise
        res["prefill"][str(threads)] = {
            **{f"{k}_ms": median_ms(v) for k, v in times.items()},
            "ours_over_torch": ratio(times["ours"], times["torch"]),
            "ours_over_ortweb": ratio(times["ours"], times["ortweb"]),
            "max_abs_err_vs_torch": float(np.abs(ours - want.numpy()).max()),
            "ortweb_max_abs_err_vs_torch": float(np.abs(ort_out["outputs"][0][0] - want.numpy()).max()),
        }
        print(f"prefill {args.prompt} tokens, {threads} thread(s): {res['prefill'][str(threads)]}", flush=True)
        # ---- decode at fixed positions -------------------------------------------------------------
        res["decode"][str(threads)] = {}
        for P in args.positions:
            ids = [int(x) for x in rng.integers(0, cfg.vocab_size, P)]
            gen.prefill(ids)
            torch.set_num_threads(threads)
            with torch.no_grad():
                cache = hf(input_ids=torch.tensor([ids]), use_cache=True).past_key_values
            past = [np.ascontiguousarray(t.numpy()) for layer in cache.layers for t in (layer.keys, layer.values)]
            ort = OrtWeb(onnx["step"], [np.array([[7]], np.int64), *past], work / f"ort_step_{threads}_{P}", pkg,
                         warmup=2, threads=threads)  # fmt: skip
            times = {"ours": [], "torch": [], "ortweb": []}
            cpu: dict[str, list[float]] = {"ours": [], "torch": []}
            try:
                for _ in range(args.rounds + 2):  # the first two are warm-up
                    dt, dc, ours = our_step(gen, 7)
                    times["ours"].append(dt)
                    cpu["ours"].append(dc)
                    gen.truncate(P)
                    dt, dc, want = torch_step(hf, cache, 7, threads)
                    cache.crop(-1)  # back to P tokens
                    times["torch"].append(dt)
                    cpu["torch"].append(dc)
                    times["ortweb"].append(ort.run_once() / 1e3)
                ort_out = ort.close()
            except BaseException:
                ort.kill()
                raise
            times = {k: v[2:] for k, v in times.items()}
            cpu = {k: v[2:] for k, v in cpu.items()}
            row = {
                **{f"{k}_ms": median_ms(v) for k, v in times.items()},
                **{f"{k}_tokens_per_s": round(1 / statistics.median(v), 2) for k, v in times.items()},
                "ours_over_torch": ratio(times["ours"], times["torch"]),
                "ours_over_ortweb": ratio(times["ours"], times["ortweb"]),
                **({f"{k}_cpu_ms": median_ms(v) for k, v in cpu.items()} if threads == 1 else {}),
                **({"ours_over_torch_cpu": ratio(cpu["ours"], cpu["torch"])} if threads == 1 else {}),
                "max_abs_err_vs_torch": float(np.abs(ours - want.numpy()).max()),
                "ortweb_max_abs_err_vs_torch": float(np.abs(ort_out["outputs"][0][0] - want.numpy()).max()),
            }
            res["decode"][str(threads)][str(P)] = row
            print(f"decode at position {P}, {threads} thread(s): {row}", flush=True)
        # ---- the per-position curve: one generation to the end of the context, steps interleaved ----
        if threads in args.curve_threads:
            gen.prefill(prompt[:1])
            torch.set_num_threads(threads)
            with torch.no_grad():
                cache = hf(input_ids=torch.tensor([prompt[:1]]), use_cache=True).past_key_values
            # 1 thread: this thread's CPU time (both compute on the calling thread), which other jobs
            # on a shared machine disturb far less than the wall clock; more threads: wall clock
            clock = "thread_cpu" if threads == 1 else "wall"
            curve: dict[str, list[float]] = {"ours": [], "torch": []}
            for _p in range(1, args.max_context):
                dt, dc, _ = our_step(gen, 11)
                curve["ours"].append(round((dc if threads == 1 else dt) * 1e3, 3))
                dt, dc, _ = torch_step(hf, cache, 11, threads)
                curve["torch"].append(round((dc if threads == 1 else dt) * 1e3, 3))
            res["curve"][str(threads)] = {"clock": clock, "positions": list(range(1, args.max_context)), **curve}
            q = len(curve["ours"]) // 4
            res["curve"][str(threads)]["ours_last_quarter_over_first_quarter"] = round(
                statistics.median(curve["ours"][-q:]) / statistics.median(curve["ours"][:q]), 3)
            res["curve"][str(threads)]["torch_last_quarter_over_first_quarter"] = round(
                statistics.median(curve["torch"][-q:]) / statistics.median(curve["torch"][:q]), 3)
            print(f"curve, {threads} thread(s): ours last/first quarter "
                  f"{res['curve'][str(threads)]['ours_last_quarter_over_first_quarter']}", flush=True)
        gen.close()
    res["machine"]["load_avg_end"] = os.getloadavg()
    return res


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2, 1]})
    for t, c in res["curve"].items():
        clock = "thread CPU time" if c["clock"] == "thread_cpu" else "wall clock"
        a.plot(c["positions"], c["ours"], lw=0.8, label=f"ours, {t} thread(s), one generation ({clock})")
        a.plot(c["positions"], c["torch"], lw=0.8, alpha=0.7,
               label=f"PyTorch eager + KV cache, {t} thread(s), one generation ({clock})")  # fmt: skip
    for t, rows in res["decode"].items():
        ps = [int(p) for p in rows]
        a.plot(ps, [rows[p]["ortweb_ms"] for p in rows], "o--", label=f"ONNX Runtime Web, {t} thread(s) (wall clock)")
        a.plot(ps, [rows[p]["ours_ms"] for p in rows], "s", ms=4, label=f"ours at fixed positions, {t} thread(s) (wall clock)")
    a.set(xlabel="position (tokens already in the cache)", ylabel="ms per decode step",
          title=f"decode step time, GPT-2 widths x {res['model']['layers']} layers")  # fmt: skip
    a.set_ylim(bottom=0)
    a.legend(fontsize=7)
    names = ["ours", "torch", "ortweb"]
    ts = list(res["prefill"])
    for i, t in enumerate(ts):
        b.bar([j + i * 0.35 for j in range(3)], [res["prefill"][t][f"{n}_ms"] for n in names], 0.35,
              label=f"{t} thread(s)")  # fmt: skip
    b.set_xticks([j + 0.175 for j in range(3)], ["ours", "PyTorch", "ORT-Web"])
    b.set(ylabel="ms", title=f"prefill, {res['prompt_tokens']}-token prompt")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--max-context", type=int, default=512)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--positions", default="16,128,256,384,500")
    ap.add_argument("--curve-threads", default="1")
    ap.add_argument("--work", default=None, help="folder for the artifact and ONNX files (default: a temp folder)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "generate.json"))
    a = ap.parse_args()
    a.threads = [int(x) for x in a.threads.split(",")]
    a.positions = [int(x) for x in a.positions.split(",") if int(x) < a.max_context]
    a.curve_threads = [int(x) for x in a.curve_threads.split(",") if x]
    res = run(a)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    plot(res, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
