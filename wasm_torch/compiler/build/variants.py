"""Build variants: the same generated C compiled for several engine feature sets, one chosen at load.

A variant is a set of zig cc flags plus the engine features a host needs to run the result. Every
artifact has the plain build, `simd128` (model.wasm: SIMD128 only, single-threaded, freestanding,
what every engine with SIMD128 runs). `CompileOptions` add, beside it:

    simd128-threads   model.threads.wasm          shared memory + atomics: N instances share one
                                                  memory (weights once) and split each op (threads)
    relaxed           model.relaxed.wasm          relaxed SIMD: f32x4.relaxed_madd (fused multiply-add)
                                                  in the GEMM / conv / attention register tiles
    relaxed-threads   model.relaxed-threads.wasm  both

The runtimes (wasm_torch/runtime/variants.py, wasm_torch/js/wasm-torch.mjs) pick the fastest one
the engine supports and fall back to model.wasm. `deterministic`: the variant's results are
bit-identical to model.wasm on every host. Threads never change results (wt_threads.h); relaxed
SIMD does (a fused multiply-add rounds once), and whether it fuses depends on the host, so the edge
network pins `simd128` and a relaxed build is only checked against PyTorch's tolerance.

Adding a variant (e.g. an int8 dot-product build) = one `Variant` below with its flags and the
engine feature it needs, and that feature's probe in the runtimes (runtime/variants.py FEATURES,
wasm-torch.mjs FEATURE_PROBES).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A shared memory needs a declared maximum; the host imports one sized exactly to the model (plus
# the worker stacks), so this only bounds what the module accepts: 65535 pages, the most wasm-ld
# takes (4 GiB - 64 KiB).
MAX_MEMORY_BYTES = 65535 * 65536
SHARED_MEMORY_LINK = (
    "-Wl,--import-memory",
    "-Wl,--shared-memory",
    f"-Wl,--max-memory={MAX_MEMORY_BYTES}",
)
MAX_THREADS = 64  # = WT_MAX_THREADS in kernels/wt_threads.h


@dataclass(frozen=True)
class Variant:
    name: str
    file: str
    features: tuple[str, ...]  # engine features it needs: "simd128", "relaxed_simd", "threads"
    cflags: tuple[str, ...] = ()  # added to every zig cc compile (kernels and model code)
    lflags: tuple[str, ...] = ()  # added to the link
    deterministic: bool = True  # bit-identical to the simd128 build on every host

    @property
    def threads(self) -> bool:
        return "threads" in self.features

    def to_json(self, stack_bytes: int) -> dict[str, Any]:
        """The manifest's record of this variant (`variants` in docs/artifact-format.md)."""
        d: dict[str, Any] = {
            "name": self.name,
            "file": self.file,
            "features": list(self.features),
            "threads": self.threads,
            "deterministic": self.deterministic,
            "flags": {"compile": list(self.cflags), "link": list(self.lflags)},
        }
        if self.threads:
            d.update(stack_bytes=stack_bytes, max_threads=MAX_THREADS)
        return d


SIMD128 = Variant("simd128", "model.wasm", ("simd128",))
SIMD128_THREADS = Variant(
    "simd128-threads", "model.threads.wasm", ("simd128", "threads"), ("-matomics",), SHARED_MEMORY_LINK
)
# Relaxed builds fuse only where a kernel says so (WT_MADD in the register tiles, kernels/wt_base.h):
# -ffp-contract=off stops clang from contracting every fast-math a*b+c, which would make vector lanes
# round differently from their scalar tails.
RELAXED_FLAGS = ("-mrelaxed-simd", "-ffp-contract=off")
RELAXED = Variant("relaxed", "model.relaxed.wasm", ("simd128", "relaxed_simd"), RELAXED_FLAGS, (), False)
RELAXED_THREADS = Variant(
    "relaxed-threads",
    "model.relaxed-threads.wasm",
    ("simd128", "relaxed_simd", "threads"),
    (*RELAXED_FLAGS, "-matomics"),
    SHARED_MEMORY_LINK,
    False,
)
VARIANTS: tuple[Variant, ...] = (SIMD128, SIMD128_THREADS, RELAXED, RELAXED_THREADS)


def selected(threads: bool, relaxed: bool) -> tuple[Variant, ...]:
    """The variants an artifact gets: always simd128, plus what the options ask for."""
    return tuple(
        v
        for v in VARIANTS
        if (threads or not v.threads) and (relaxed or "relaxed_simd" not in v.features)
    )
