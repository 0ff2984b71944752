"""Fused attention before/after: all-MiniLM-L6-v2 at seq 128 and one MiniLM-shaped attention block alone,
each compiled with and without the `fuse_attention` pass; arena bytes, IR nodes, code bytes and wasm
latency beside PyTorch eager (1 thread; calls interleaved one by one; medians of CPU and wall time).

    python bench/attention.py [--calls 60] [--out bench/results/attention.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

import wasm_torch
from wasm_torch.compiler import CompileOptions
from wasm_torch.zoo import minilm


class Block(nn.Module):
    """MiniLM's attention core: 12 heads x 32 over (1, L, 384) projections, SDPA with a key-padding mask."""

    def forward(self, q, k, v, mask):
        b, n, _ = q.shape
        split = lambda t: t.view(b, n, 12, 32).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=mask[:, None, None, :].bool()
        )
        return o.transpose(1, 2).reshape(b, n, 384)


def compile_pair(name: str, model, example, dyn, tmp: Path) -> dict:
    out = {}
    for variant in ("fused", "unfused"):
        t0 = time.perf_counter()
        options = CompileOptions() if variant == "fused" else CompileOptions().without("fuse_attention")
        art = wasm_torch.compile(model, example, tmp / f"{name}_{variant}", dynamic_shapes=dyn, options=options)
        ops = art.manifest.raw["ops"]
        out[variant] = {
            "art": art,
            "arena_bytes": art.manifest.raw["memory"]["arena_bytes"],
            "ir_nodes": sum(ops.values()),
            "ir_nodes_without_reshape": sum(v for k, v in ops.items() if k != "reshape"),
            "attention_nodes": ops.get("attention", 0),
            "permute_nodes": ops.get("permute", 0),
            "code_bytes": art.code_bytes,
            "max_abs_err": art.report["validation"]["max_abs_err"],
            "compile_s": round(time.perf_counter() - t0, 1),
        }
    return out


def timed(pair: dict, model, inputs, calls: int) -> dict:
    """Per-call interleaving (fused, unfused, torch, then the reverse order, ...) so load spikes hit every
    variant alike. Reports medians of the calling thread's CPU time (stable while other processes share
    the cores) and of wall time, and unfused / fused for both."""
    arrays = [x.numpy() for x in inputs]
    mods = {v: wasm_torch.load(pair[v]["art"]) for v in ("fused", "unfused")}

    def eager() -> None:
        with torch.no_grad():
            model(*inputs)

    fns: dict[str, Callable[[], object]] = {
        "fused": lambda: mods["fused"](*arrays),
        "unfused": lambda: mods["unfused"](*arrays),
        "torch": eager,
    }
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for i in range(calls):
        for k in list(fns)[:: 1 if i % 2 == 0 else -1]:
            c0, w0 = time.thread_time(), time.perf_counter()
            fns[k]()
            cpu[k].append((time.thread_time() - c0) * 1e3)
            wall[k].append((time.perf_counter() - w0) * 1e3)
    out: dict[str, float] = {}
    for k in fns:
        out[f"{k}_cpu_ms"] = round(statistics.median(cpu[k]), 3)
        out[f"{k}_wall_ms"] = round(statistics.median(wall[k]), 3)
    out["unfused_over_fused_cpu"] = round(out["unfused_cpu_ms"] / out["fused_cpu_ms"], 2)
    out["unfused_over_fused_wall"] = round(out["unfused_wall_ms"] / out["fused_wall_ms"], 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--calls", type=int, default=60, help="timed calls per variant (MiniLM; x10 for the block)"
    )
    ap.add_argument("--out", default="bench/results/attention.json")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="attention_"))
    g = torch.Generator().manual_seed(0)
    results: dict[str, dict] = {}

    model, _ = minilm()
    ids = torch.randint(1000, 20000, (1, 128), generator=g)
    mask = torch.ones_like(ids)
    seq = Dim("seq", min=2, max=512)
    cases = {
        "minilm_seq128": (model, (ids, mask), None),
        "minilm_dynamic_max512": (model, (ids, mask), {"input_ids": {1: seq}, "attention_mask": {1: seq}}),
        "attention_block_seq128": (
            Block().eval(),
            (
                *(torch.randn(1, 128, 384, generator=g) for _ in range(3)),
                torch.ones(1, 128, dtype=torch.long),
            ),
            None,
        ),
    }
    for name, (m, inputs, dyn) in cases.items():
        pair = compile_pair(name, m, inputs, dyn, tmp)
        row = {v: {k: x for k, x in pair[v].items() if k != "art"} for v in pair}
        if dyn is None:
            row["timing"] = timed(pair, m, inputs, a.calls * (10 if name.startswith("attention") else 1))
        results[name] = row
        print(name, json.dumps(row, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
