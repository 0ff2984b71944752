"""GEMM microkernel shoot-out: register-tile variants of the packed f32 GEMM, timed through wasmtime.

Builds one standalone wasm per SIMD flavour (`add`: plain SIMD128 mul + add; `fma`: relaxed-SIMD
`f32x4.relaxed_madd`, built with -mrelaxed-simd) exporting every variant, with `zig cc` and the
kernel flags of wasm_torch/compiler/build/zig.py; the `add` module also exports the shipped kernel
(kernels/wt_gemm_packed.h, row `shipped`). Calls them on MiniLM's GEMM shapes and 512^3,
interleaved round by round, and prints the median GFLOP/s per variant and shape. Every variant is
checked against NumPy before it is timed. The C of each variant is generated below as straight-line
code, so what is measured does not depend on clang's unroller.

Variant names: `<style><MR>x<NR>u<U>[k<kc>]`: an MR x NR register tile (weights packed in NR-column
panels), U k steps per loop iteration with an exit test after each step, kc the K block (none =
whole K). Styles, by how a row's A element is broadcast:
  ls  wasm v128.load32_splat per row per k (the pre-study kernel is ls4x8u1)
  lb  f32.load + f32x4.splat per row per k (kept apart by an empty asm: vmovss + vbroadcastss)
  sp  "splat": one v128 load of 4 A elements per row per 4 k, lanes broadcast with i32x4.shuffle
  sx  sp without the per-step exit tests (4 steps per loop block)
  ps  sp with A pre-splatted into a buffer per row block (plain v128 loads, no shuffles)

    .venv/bin/python bench/gemm_variants.py [--repeat 21] [--only sp2x16u4,shipped] [--flavours add,fma]
        [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import wasmtime

from wasm_torch.compiler import CompileOptions
from wasm_torch.compiler.build.zig import COMMON, flags, kernel_dir, zig_command
from wasm_torch.compiler.passes.pack_weights import PANEL

SHAPES = [(128, 384, 384), (128, 384, 1536), (128, 1536, 384), (512, 512, 512)]
# (style, MR, NR, U, kc): see the module docstring. U = k steps per loop iteration (exit test after each).
VARIANTS = [
    ("ls", 4, 8, 1, 0),  # the kernel before this study (wt_gemm_packed.h at 0c3a3e3)
    ("ls", 4, 8, 4, 0),
    ("lb", 4, 8, 4, 0),
    ("ls", 6, 8, 4, 0),
    ("lb", 6, 8, 4, 0),
    ("ls", 4, 16, 4, 0),
    ("sp", 4, 8, 4, 0),
    ("sp", 6, 8, 4, 0),
    ("sp", 3, 8, 4, 0),
    ("sp", 2, 12, 4, 0),
    ("sx", 2, 16, 4, 0),
    ("sp", 2, 16, 4, 0),
    ("sp", 2, 16, 4, 256),
    ("ps", 2, 16, 4, 256),
]


def vname(style: str, mr: int, nr: int, u: int, kc: int) -> str:
    return f"{style}{mr}x{nr}u{u}" + (f"k{kc}" if kc else "")


PRELUDE = r"""
#include <stddef.h>
#include <wasm_simd128.h>
#define INL static inline __attribute__((always_inline))
#define EXPORT __attribute__((visibility("default")))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
/* An empty asm makes a value opaque to clang: pointers stay bases with folded constant offsets,
 * and a scalar A element stays an f32.load + f32x4.splat (vbroadcastss) instead of load32_splat. */
#define OPQ(x) __asm__("" : "+r"(x))
#ifdef RELAXED
#define MADD(c, x, w) wasm_f32x4_relaxed_madd(x, w, c)
#else
#define MADD(c, x, w) wasm_f32x4_add(c, wasm_f32x4_mul(x, w))
#endif
INL v128_t splat_opq(float v) { OPQ(v); return wasm_f32x4_splat(v); }
INL v128_t tail4(const float* p, int n) { /* p[0..n) for n < 4, zeros after: never reads past p[n-1] */
    return wasm_f32x4_make(p[0], n > 1 ? p[1] : 0.0f, n > 2 ? p[2] : 0.0f, 0.0f);
}

extern unsigned char __heap_base;
static size_t top;
EXPORT float* alloc_f32(int n) {
    if (!top) top = (size_t)&__heap_base;
    top = (top + 63) & ~(size_t)63;
    size_t need = top + (size_t)n * 4, have = __builtin_wasm_memory_size(0) * 65536;
    if (need > have) __builtin_wasm_memory_grow(0, (need - have + 65535) / 65536);
    float* p = (float*)top;
    top = need;
    return p;
}

/* Blocking loops shared by every variant: K blocks of kc, row blocks sized for L2, weight panels. */
#define DRIVER(NAME, MR, NR, KC)                                                                     \
EXPORT void NAME(float* out, const float* a, const float* wp, int M, int N, int K) {                  \
    int panels = (N + NR - 1) / NR, kc = KC ? MIN(KC, K) : K;                                         \
    int mc = MAX(MR, MIN(M, (32768 / MAX(kc, 1)) / MR * MR));                                         \
    for (int k0 = 0; k0 < K; k0 += kc) {                                                              \
        int kl = MIN(kc, K - k0);                                                                     \
        for (int m0 = 0; m0 < M; m0 += mc) {                                                          \
            int m1 = MIN(M, m0 + mc);                                                                 \
            for (int p = 0; p < panels; p++) {                                                        \
                const float* B = wp + (size_t)p * K * NR + (size_t)k0 * NR;                           \
                int j = p * NR, nc = MIN(NR, N - j);                                                  \
                for (int i = m0; i < m1; i += MR)                                                     \
                    NAME##_tile(a + (size_t)i * K + k0, K, B, kl, out + (size_t)i * N + j, N,         \
                                MIN(MR, m1 - i), nc, k0 > 0);                                         \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
}

/* "ps" variants: each row block of A is first copied into a buffer with every element splatted to
 * a v128 (MR rows interleaved per k), so the tile loads ready-made broadcasts: no shuffles. */
static v128_t abuf[8192];
#define PSDRIVER(NAME, MR, NR, KC)                                                                   \
EXPORT void NAME(float* out, const float* a, const float* wp, int M, int N, int K) {                  \
    int panels = (N + NR - 1) / NR, kc = KC ? MIN(KC, K) : K;                                         \
    int mc = MAX(MR, MIN(M, (8192 / MAX(kc, 1)) / MR * MR));                                          \
    for (int k0 = 0; k0 < K; k0 += kc) {                                                              \
        int kl = MIN(kc, K - k0);                                                                     \
        for (int m0 = 0; m0 < M; m0 += mc) {                                                          \
            int m1 = MIN(M, m0 + mc);                                                                 \
            for (int i = m0; i < m1; i += MR)                                                         \
                for (int k = 0; k < kl; k++)                                                          \
                    for (int r = 0; r < MR; r++)                                                      \
                        abuf[((i - m0) / MR * kl + k) * MR + r] =                                     \
                            wasm_v128_load32_splat(a + (size_t)MIN(i + r, m1 - 1) * K + k0 + k);      \
            for (int p = 0; p < panels; p++) {                                                        \
                const float* B = wp + (size_t)p * K * NR + (size_t)k0 * NR;                           \
                int j = p * NR, nc = MIN(NR, N - j);                                                  \
                for (int i = m0; i < m1; i += MR)                                                     \
                    NAME##_tile((const float*)(abuf + (i - m0) / MR * kl * MR), 0, B, kl,             \
                                out + (size_t)i * N + j, N, MIN(MR, m1 - i), nc, k0 > 0);             \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
}
"""


def tile_c(name: str, style: str, mr: int, nr: int, u: int) -> str:
    """One MR x NR register tile over kc steps, as straight-line C (no reliance on clang's unroller)."""
    nv = nr // 4
    acc = [f"c{r}_{v}" for r in range(mr) for v in range(nv)]
    out = [
        f"INL void {name}_tile(const float* a, int lda, const float* b, int kc, float* c, int ldc, int mr,",
        "                      int nc, int acc) {",
    ]
    if style == "ps":
        out.append("    const float* a0 = a;")
    else:
        out += [f"    const float* a{r} = a + (size_t)MIN({r}, mr - 1) * lda;" for r in range(mr)]
    out.append(f"    v128_t {', '.join(acc)};")
    out.append(f"    {' = '.join(acc)} = wasm_f32x4_splat(0.0f);")
    out.append("    if (acc) {")
    out.append(f"        float t[{mr}][{nr}];")
    out.append(f"        for (int r = 0; r < {mr}; r++) for (int q = 0; q < {nr}; q++)")
    out.append("            t[r][q] = r < mr && q < nc ? c[(size_t)r * ldc + q] : 0.0f;")
    out += [
        f"        {acc[r * nv + v]} = wasm_v128_load(&t[{r}][{4 * v}]);" for r in range(mr) for v in range(nv)
    ]
    out.append("    }")

    def step(l: int, how: str = style) -> list[str]:
        s = []
        s += [f"v128_t w{v} = wasm_v128_load(b + {l * nr + 4 * v});" for v in range(nv)]
        for r in range(mr):
            if how in ("sp", "sx"):
                src = f"wasm_i32x4_shuffle(v{r}, v{r}, {l}, {l}, {l}, {l})"
            elif how == "ps":
                src = f"wasm_v128_load(a0 + {(l * mr + r) * 4})"
            elif how == "lb":
                src = f"splat_opq(a{r}[{l}])"
            else:
                src = f"wasm_v128_load32_splat(a{r} + {l})"
            s.append(f"v128_t s{r} = {src};")
            s += [f"c{r}_{v} = MADD(c{r}_{v}, s{r}, w{v});" for v in range(nv)]
        return ["        { " + " ".join(s) + " }"]

    ptrs = [f"a{r}" for r in range(1 if style == "ps" else mr)] + ["b"]
    out.append("    int n = kc;")
    if u == 1:
        out.append("    for (; n > 0; n--) {")
        out += step(0)
        out.append(
            "        "
            + " ".join(f"a{r} += {4 * mr if style == 'ps' else 1};" for r in range(len(ptrs) - 1))
            + f" b += {nr};"
        )
        out.append("    }")
    elif style == "sx":  # splat style without the exit tests: groups of 4, then loadsplat steps
        out.append("    for (; n >= 4; n -= 4) {")
        out.append("        " + " ".join(f"OPQ({p});" for p in ptrs))
        out += [f"        v128_t v{r} = wasm_v128_load(a{r});" for r in range(mr)]
        for l in range(4):
            out += step(l)
        out.append("        " + " ".join(f"a{r} += 4;" for r in range(mr)) + f" b += {4 * nr};")
        out.append("    }")
        out.append("    for (; n > 0; n--) {")
        out += step(0, "ls")
        out.append("        " + " ".join(f"a{r} += 1;" for r in range(mr)) + f" b += {nr};")
        out.append("    }")
    else:
        out.append("    while (n > 0) {")
        out.append("        " + " ".join(f"OPQ({p});" for p in ptrs))
        if style == "sp":
            out += [
                f"        v128_t v{r} = n >= 4 ? wasm_v128_load(a{r}) : tail4(a{r}, n);" for r in range(mr)
            ]
        for l in range(u):
            out += step(l)
            out.append("        if (--n == 0) break;")
        step_a = 4 * mr * u if style == "ps" else u
        out.append(
            "        " + " ".join(f"a{r} += {step_a};" for r in range(len(ptrs) - 1)) + f" b += {u * nr};"
        )
        out.append("    }")
    out.append("    for (int r = 0; r < mr; r++) {")
    out.append("        float* o = c + (size_t)r * ldc;")
    out.append(f"        float t[{nr}];")
    for v in range(nv):
        cells = ", ".join(f"c{r}_{v}" for r in range(mr))
        out.append(f"        v128_t x{v} = (v128_t[{mr}]){{{cells}}}[r];")
    out.append(f"        if (nc == {nr}) {{")
    out += [f"            wasm_v128_store(o + {4 * v}, x{v});" for v in range(nv)]
    out.append("        } else {")
    out += [f"            wasm_v128_store(t + {4 * v}, x{v});" for v in range(nv)]
    out.append("            for (int q = 0; q < nc; q++) o[q] = t[q];")
    out.append("        }")
    out.append("    }")
    out.append("}")
    return "\n".join(out)


SHIPPED = r"""
#include "wt_gemm_packed.h"
EXPORT void shipped(float* out, const float* a, const float* wp, int M, int N, int K) {
    wt_gemm_packed_f32(out, a, wp, 0, 1, M, N, K, 0);
}
"""


def c_program(flavour: str) -> str:
    """Every variant for one flavour; the add flavour also holds the shipped kernel (wt_gemm_packed.h)."""
    parts = ["#define RELAXED 1" if flavour == "fma" else "", PRELUDE, SHIPPED if flavour == "add" else ""]
    for style, mr, nr, u, kc in VARIANTS:
        name = f"{vname(style, mr, nr, u, kc)}_{flavour}"
        driver = "PSDRIVER" if style == "ps" else "DRIVER"
        parts += [tile_c(name, style, mr, nr, u), f"{driver}({name}, {mr}, {nr}, {kc})"]
    return "\n".join(parts) + "\n"


def build(flavour: str, tmp: Path) -> bytes:
    src, out = tmp / f"variants_{flavour}.c", tmp / f"variants_{flavour}.wasm"
    src.write_text(c_program(flavour))
    extra = ["-mrelaxed-simd"] if flavour == "fma" else []
    link = ["-Wl,--no-entry", "-Wl,--export-dynamic", "-Wl,--export=__heap_base", "-Wl,--strip-debug"]
    cmd = [
        *zig_command(),
        *COMMON,
        *extra,
        *flags(CompileOptions())["kernels"],
        "-I",
        str(kernel_dir()),
        *link,
        str(src),
        "-o",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"zig cc failed:\n{proc.stderr[-4000:]}")
    return out.read_bytes()


def pack(w: np.ndarray, nr: int) -> np.ndarray:
    k, n = w.shape
    p = -(-n // nr)
    padded = np.zeros((k, p * nr), np.float32)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(k, p, nr).transpose(1, 0, 2))


class Harness:
    def __init__(self, wasm: bytes):
        cfg = wasmtime.Config()
        cfg.wasm_simd = True
        cfg.wasm_relaxed_simd = True
        cfg.cranelift_opt_level = "speed"
        self.store = wasmtime.Store(wasmtime.Engine(cfg))
        self.inst = wasmtime.Instance(self.store, wasmtime.Module(self.store.engine, wasm), [])
        self.mem = self.inst.exports(self.store)["memory"]

    def fn(self, name: str):
        return self.inst.exports(self.store)[name]

    def put(self, arr: np.ndarray) -> int:
        ptr = self.fn("alloc_f32")(self.store, arr.size)
        self.view(ptr, arr.size)[:] = arr.ravel()
        return ptr

    def view(self, ptr: int, n: int) -> np.ndarray:
        raw = self.mem.get_buffer_ptr(self.store)
        base = np.ctypeslib.as_array(raw, shape=(self.mem.data_len(self.store),))
        return base[ptr : ptr + 4 * n].view(np.float32)


def cases(rows: list[tuple[str, str, str, int]], hs: dict[str, Harness]) -> list[tuple]:
    """One (key, harness, fn, args, flops) per row and shape, each checked against NumPy first."""
    rng = np.random.default_rng(0)
    out = []
    for m, k, n in SHAPES:
        x, w = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
        want = x.astype(np.float64) @ w.astype(np.float64)
        ptrs = {}
        for f, h in hs.items():
            nrs = {r[3] for r in rows if r[1] == f}
            ptrs[f] = h.put(x), {nr: h.put(pack(w, nr)) for nr in nrs}, h.put(np.zeros(m * n))
        for label, f, fname, nr in rows:
            h, (pa, packed, po) = hs[f], ptrs[f]
            fn = h.fn(fname)
            args = (po, pa, packed[nr], m, n, k)
            fn(h.store, *args)
            err = np.abs(h.view(po, m * n).reshape(m, n) - want).max()
            assert err < 1e-3 * np.sqrt(k), (label, f, (m, k, n), err)
            out.append(((label, f, (m, k, n)), h, fn, args, 2 * m * k * n))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--only", default="", help="comma-separated variant names")
    ap.add_argument("--flavours", default="add,fma")
    ap.add_argument("--ref", default="", help="also print, per round, time(ref) / time(variant): median")
    ap.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="cpu: this thread's CPU time (robust when other processes share the cores); wall: perf_counter",
    )
    a = ap.parse_args()
    only = set(a.only.split(",")) if a.only else None
    flavours = a.flavours.split(",")
    rows = [(vname(*v), f, f"{vname(*v)}_{f}", v[2]) for v in VARIANTS for f in flavours]
    if "add" in flavours:
        rows.append(("shipped", "add", "shipped", PANEL))
    rows = [r for r in rows if only is None or r[0] in only]
    with tempfile.TemporaryDirectory() as tmp:
        hs = {f: Harness(build(f, Path(tmp))) for f in flavours}
    todo = cases(rows, hs)
    clock = time.thread_time if a.clock == "cpu" else time.perf_counter
    times: dict[tuple, list[float]] = {c[0]: [] for c in todo}
    for _ in range(a.repeat):  # interleaved: every case once per round
        for key, h, fn, args, _ in todo:
            t0 = clock()
            fn(h.store, *args)
            times[key].append(clock() - t0)
    flops = {c[0]: c[4] for c in todo}
    head = f"{'variant':<14}{'flavour':<8}" + "".join(f"{'x'.join(map(str, s)):>14}" for s in SHAPES)
    print("GFLOP/s, median of", a.repeat, "\n" + head)
    for label, f, _, _ in rows:
        cells = [flops[(label, f, s)] / statistics.median(times[(label, f, s)]) / 1e9 for s in SHAPES]
        print(f"{label:<14}{f:<8}" + "".join(f"{g:>14.1f}" for g in cells))
    if a.ref:
        ref = next(r for r in rows if r[0] == a.ref)
        print(f"speed relative to {a.ref} ({ref[1]}), median over rounds of the paired ratio\n" + head)
        for label, f, _, _ in rows:
            cells = []
            for s in SHAPES:
                pairs = zip(times[(ref[0], ref[1], s)], times[(label, f, s)], strict=True)
                cells.append(statistics.median(r / t for r, t in pairs))
            print(f"{label:<14}{f:<8}" + "".join(f"{g:>14.3f}" for g in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
