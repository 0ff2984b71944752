"""Convolution kernels layer by layer, in wasmtime, against PyTorch eager and against the packed GEMM.

    .venv/bin/python bench/conv_kernels.py [--layers l1_3x3,dw3x3_144@56,...] [--rounds 5]

Builds a small wasm module that exports the conv kernels (kernels/*.h, same flags as the kernel
library), checks each layer's output against torch (conv + ReLU), then times, interleaved, CPU time
of the calling thread, best of `rounds` (each round runs the kernel in a loop inside wasm, so the
Python -> wasm call overhead is amortised):
  - ours: wt_conv2d_packed_f32 (packed weights, blocked im2col) or wt_dwconv2d_f32 (depthwise);
  - gemm: wt_gemm_packed_f32 on the same FLOPs (M = pixels, N = out channels, K = C*KH*KW) with the
    operands already laid out, i.e. what an im2col + GEMM design would cost before its im2col and
    its NHWC -> NCHW transpose (dense convs only);
  - torch: the same Conv2d + ReLU, one thread.
Pooling rows (wt_pool2d_f32) count one "FLOP" per window element.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import wasmtime

from wasm_torch.compiler.build.zig import COMMON, LINK_FLAGS, kernel_dir, zig_command
from wasm_torch.compiler.passes.pack_weights import pack

pc = importlib.import_module("wasm_torch.compiler.passes.pack_conv")

HARNESS = r"""
#include "kernels.c"
extern unsigned char __heap_base;
WT_EXPORT int heap_base(void) { return (int)(size_t)&__heap_base; }
WT_EXPORT void conv(float* out, const float* x, const float* wp, const float* b, float* s, int sl, int N, int C,
                    int H, int W, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw, int reps) {
    for (int r = 0; r < reps; r++)
        wt_conv2d_packed_f32(out, x, wp, b, s, sl, N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, 1, 1, 1, 0.0f,
                             __builtin_inff());
}
WT_EXPORT void dwconv(float* out, const float* x, const float* w, const float* b, float* s, int sl, int N, int C,
                      int H, int W, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw, int reps) {
    for (int r = 0; r < reps; r++)
        wt_dwconv2d_f32(out, x, w, b, s, sl, N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, 1, 1, 0.0f,
                        __builtin_inff());
}
WT_EXPORT void pool(float* out, const float* x, int C, int H, int OH, int k, int s, int p, int is_max, int reps) {
    for (int r = 0; r < reps; r++) wt_pool2d_f32(out, x, C, H, H, OH, OH, k, k, s, s, p, p, 1, 1, is_max, 1, 0);
}
WT_EXPORT void gemm(float* out, const float* a, const float* wp, int M, int N, int K, int reps) {
    for (int r = 0; r < reps; r++) wt_gemm_packed_f32(out, a, wp, 0, 1, M, N, K, 0);
}
"""

# name: (cin, cout, kernel, stride, padding, groups, H) -- ResNet-18 and MobileNetV2 layers at 224x224
LAYERS = {
    "stem7x7s2": (3, 64, 7, 2, 3, 1, 224),
    "l1_3x3": (64, 64, 3, 1, 1, 1, 56),
    "l2_3x3": (128, 128, 3, 1, 1, 1, 28),
    "l3_3x3": (256, 256, 3, 1, 1, 1, 14),
    "l4_3x3": (512, 512, 3, 1, 1, 1, 7),
    "ds1x1s2": (64, 128, 1, 2, 0, 1, 56),
    "pw_32_192@56": (32, 192, 1, 1, 0, 1, 56),
    "pw_192_32@28": (192, 32, 1, 1, 0, 1, 28),
    "pw_960_160@7": (960, 160, 1, 1, 0, 1, 7),
    "dw3x3_144@56": (144, 144, 3, 1, 1, 144, 56),
    "dw3x3s2_144@56": (144, 144, 3, 2, 1, 144, 56),
    "dw3x3_576@14": (576, 576, 3, 1, 1, 576, 14),
}
# name: (channels, H, kernel, stride, padding, is_max) -- pooling, one image
POOLS = {
    "maxpool3x3s2@112": (64, 112, 3, 2, 1, 1),
    "maxpool2x2s2@56": (64, 56, 2, 2, 0, 1),
    "avgpool3x3s1@28": (64, 28, 3, 1, 1, 0),
}


class Module:
    def __init__(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "harness.c", Path(tmp) / "harness.wasm"
            src.write_text(HARNESS)
            flags = [*COMMON, "-O3", "-I", str(kernel_dir()), str(src), *LINK_FLAGS, "-o", str(out)]
            subprocess.run([*zig_command(), *flags], check=True)
            data = out.read_bytes()
        cfg = wasmtime.Config()
        cfg.cranelift_opt_level = "speed"
        self.store = wasmtime.Store(wasmtime.Engine(cfg))
        inst = wasmtime.Instance(self.store, wasmtime.Module(self.store.engine, data), [])
        names = ("memory", "heap_base", "conv", "dwconv", "pool", "gemm")
        self.ex = {k: inst.exports(self.store)[k] for k in names}
        self.base = (self.ex["heap_base"](self.store) + 63) // 64 * 64
        self.top = self.base
        self.digest = hashlib.sha256(data).hexdigest()[:12]

    def alloc(self, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a, np.float32)
        mem = self.ex["memory"]
        while mem.data_len(self.store) < self.top + a.nbytes + 64:
            mem.grow(self.store, 64)
        off, self.top = self.top, (self.top + a.nbytes + 127) // 64 * 64
        self.view(off, a.size)[:] = a.ravel()
        return off

    def view(self, off: int, n: int) -> np.ndarray:
        mem = self.ex["memory"]
        buf = np.ctypeslib.as_array(mem.data_ptr(self.store), (mem.data_len(self.store),))
        return buf[off : off + 4 * n].view(np.float32)

    def call(self, name: str, *args: int) -> None:
        self.ex[name](self.store, *args)


def pool_layer(m: Module, name: str) -> dict:
    c, h, k, s, p, is_max = POOLS[name]
    m.top = m.base
    x = torch.randn(1, c, h, h, generator=torch.Generator().manual_seed(0))
    fn = (
        (lambda: torch.nn.functional.max_pool2d(x, k, s, p))
        if is_max
        else (lambda: torch.nn.functional.avg_pool2d(x, k, s, p))
    )
    ref = fn().numpy()
    oh = ref.shape[2]
    xo, oo = m.alloc(x.numpy()), m.alloc(np.zeros(ref.size))
    m.call("pool", oo, xo, c, h, oh, k, s, p, is_max, 1)
    assert np.allclose(m.view(oo, ref.size).reshape(ref.shape), ref, atol=1e-6), name
    reps = 20

    def torch_run() -> None:
        for _ in range(reps):
            fn()

    return {
        "name": name,
        "flops": c * oh * oh * k * k,
        "reps": reps,
        "runs": {"ours": lambda: m.call("pool", oo, xo, c, h, oh, k, s, p, is_max, reps), "torch": torch_run},
    }


def layer(m: Module, name: str) -> dict:
    ci, co, k, s, p, g, h = LAYERS[name]
    m.top = m.base
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(ci, co, k, s, p, groups=g)
    x = torch.randn(1, ci, h, h)
    with torch.no_grad():
        ref = torch.relu(conv(x)).numpy()
    oh = ref.shape[2]
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    xo, bo, oo = m.alloc(x.numpy()), m.alloc(b), m.alloc(np.zeros(ref.size))
    dims = (1, ci, h, h, co, k, k, oh, oh, s, s, p, p)
    depthwise = g == ci and w.shape[1] == 1
    if depthwise:
        sl = (h + 2 * p) ** 2 + pc.DW_SLACK
        args = ("dwconv", oo, xo, m.alloc(w), bo, m.alloc(np.zeros(sl)), sl, *dims)
    else:
        sl = pc.scratch_floats(ci * k * k, oh * oh, k == 1 and s == 1 and p == 0)
        wo, so = m.alloc(pc.pack_conv_weights(w, g)), m.alloc(np.zeros(max(sl, 1)))
        args = ("conv", oo, xo, wo, bo, so, sl, *dims)
    m.call(*args, 1)
    err = float(np.abs(m.view(oo, ref.size).reshape(ref.shape) - ref).max())
    assert err < 1e-3 * max(1.0, float(np.abs(ref).max())), (name, err)
    flops = 2 * co * (ci // g) * k * k * oh * oh
    reps = max(1, int(3e9 / flops))
    runs = {"ours": lambda: m.call(*args, reps)}
    if not depthwise:
        mm, nn, kk = oh * oh, co, ci * k * k
        a = m.alloc(np.random.randn(mm, kk))
        wp = m.alloc(pack(np.random.randn(kk, nn).astype(np.float32)))
        o = m.alloc(np.zeros(mm * nn))
        runs["gemm"] = lambda: m.call("gemm", o, a, wp, mm, nn, kk, reps)

    def torch_run() -> None:
        with torch.no_grad():
            for _ in range(reps):
                torch.relu(conv(x))

    runs["torch"] = torch_run
    return {"name": name, "flops": flops, "reps": reps, "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default=",".join([*LAYERS, *POOLS]))
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    m = Module()
    print(
        f"{'layer':<16}{'ours ms':>9}{'GF/s':>7}{'gemm ms':>9}{'GF/s':>7}{'torch ms':>10}{'GF/s':>7}{'ours/torch':>11}"
    )
    for name in a.layers.split(","):
        case = pool_layer(m, name) if name in POOLS else layer(m, name)
        best = {k: float("inf") for k in case["runs"]}
        for _ in range(a.rounds):
            for k, fn in case["runs"].items():
                t0 = time.thread_time()
                fn()
                best[k] = min(best[k], (time.thread_time() - t0) / case["reps"])
        gf = {k: case["flops"] / t / 1e9 for k, t in best.items()}
        g_ms = f"{best['gemm'] * 1e3:>9.2f}{gf['gemm']:>7.1f}" if "gemm" in best else f"{'-':>9}{'-':>7}"
        print(
            f"{name:<16}{best['ours'] * 1e3:>9.2f}{gf['ours']:>7.1f}{g_ms}"
            f"{best['torch'] * 1e3:>10.2f}{gf['torch']:>7.1f}{best['ours'] / best['torch']:>11.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
