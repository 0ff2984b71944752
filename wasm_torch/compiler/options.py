"""`CompileOptions`: every choice the compiler makes that is not dictated by the model.

One frozen value passed from `compile()` down to the passes, the C emitter and the build, never a
module global that callers flip. It is recorded in the manifest (`compiler.options`), keys the
build cache (through the C source and the flags it produces), and is exactly the space the
autotuner searches (`search_space()`).

    opts = CompileOptions()                             # the defaults: what we measured to be best
    opts = CompileOptions().without("fuse_elementwise")  # one pass left out (for a benchmark)
    opts = replace(opts, elementwise="pragma", model_opt="-O3")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import CompileError
from .passes import PASSES

PASS_NAMES: tuple[str, ...] = tuple(name for name, _ in PASSES)
# Passes the later stages rely on: codegen needs fresh types and no dead nodes.
REQUIRED_PASSES = ("eliminate_dead_code", "propagate_shapes")
ELEMENTWISE_MODES = ("simd", "pragma", "scalar")
MODEL_OPT = ("-Os", "-O2", "-O3")
KERNEL_OPT = ("-O2", "-O3")
# Reduced-precision weights (passes/quantize.py, docs/quantization.md); None keeps float32.
QUANTIZE = (None, "fp16", "int8", "int8-static")


@dataclass(frozen=True)
class CompileOptions:
    # The graph passes to run, in the pipeline's fixed order (leaving one out is allowed, reordering
    # is not: later passes rely on what earlier ones produce).
    passes: tuple[str, ...] = PASS_NAMES
    # How elementwise loops are emitted: explicit f32x4 SIMD ("simd"), scalar C with a vectorize
    # pragma for clang ("pragma"), or plain scalar C ("scalar"). docs/compiler.md, "Vector math".
    elementwise: Literal["simd", "pragma", "scalar"] = "simd"
    # clang optimisation level of the generated model code (hundreds of small loops: -Os keeps
    # them ~10x smaller than -O3 while the time is spent in kernels) and of the kernel library.
    model_opt: Literal["-Os", "-O2", "-O3"] = "-Os"
    kernel_opt: Literal["-O2", "-O3"] = "-O3"
    # Build variants beside the plain SIMD128 model.wasm (build/variants.py), chosen at load time by
    # the engine's features. threads: a shared-memory build for intra-op threads (results
    # bit-identical to model.wasm). relaxed: a relaxed-SIMD build (fused multiply-add in the register
    # tiles; results within the validation tolerance, not bit-identical) — off by default because on
    # the machines measured (AMD Zen: FMA and mul + add have the same peak) it ran 5-30% SLOWER in
    # wasmtime and Chromium than plain SIMD128 (docs/compiler.md "Relaxed SIMD"); the autotuner tries it.
    threads: bool = True
    relaxed: bool = False
    # Weights in reduced precision: "fp16" (halves, float32 compute), "int8" (int8 weights, int8 GEMMs
    # and convolutions with per-row / per-image dynamic activation ranges), "int8-static" (int8 with
    # convolution activation ranges calibrated from inputs given to compile()). Validation then checks
    # agreement with PyTorch float32 against a per-format bar (compiler/quant_check.py). Not in
    # search_space(): it changes the accuracy contract, so it is the user's choice, not the tuner's.
    quantize: Literal[None, "fp16", "int8", "int8-static"] = None

    def __post_init__(self) -> None:
        passes = tuple(self.passes)
        object.__setattr__(self, "passes", passes)
        unknown = [p for p in passes if p not in PASS_NAMES]
        if unknown:
            raise CompileError(f"unknown passes {unknown}; the passes are {list(PASS_NAMES)}")
        if list(passes) != [p for p in PASS_NAMES if p in passes]:
            raise CompileError(f"passes must keep the pipeline's order {list(PASS_NAMES)}, got {list(passes)}")
        missing = [p for p in REQUIRED_PASSES if p not in passes]
        if missing:
            raise CompileError(f"passes {missing} cannot be left out: code generation relies on them")
        for name, allowed in (
            ("elementwise", ELEMENTWISE_MODES),
            ("model_opt", MODEL_OPT),
            ("kernel_opt", KERNEL_OPT),
        ):
            if getattr(self, name) not in allowed:
                raise CompileError(f"CompileOptions.{name}={getattr(self, name)!r}: expected one of {allowed}")
        for name in ("threads", "relaxed"):
            if not isinstance(getattr(self, name), bool):
                raise CompileError(f"CompileOptions.{name}={getattr(self, name)!r}: expected True or False")
        if self.quantize not in QUANTIZE:
            raise CompileError(f"CompileOptions.quantize={self.quantize!r}: expected one of {list(QUANTIZE)}")
        if self.quantize and not {"pack_weights", "pack_conv"} <= set(passes):
            raise CompileError(
                f"CompileOptions.quantize={self.quantize!r} rewrites the packed GEMMs and convolutions: "
                "keep the pack_weights and pack_conv passes"
            )

    def without(self, *passes: str) -> CompileOptions:
        """These options with the named passes left out."""
        unknown = [p for p in passes if p not in PASS_NAMES]
        if unknown:
            raise CompileError(f"unknown passes {unknown}; the passes are {list(PASS_NAMES)}")
        return dataclasses.replace(self, passes=tuple(p for p in self.passes if p not in passes))

    @staticmethod
    def from_choices(choices: dict[str, Any]) -> CompileOptions:
        """Options from one point of `search_space()` (missing keys keep their defaults)."""
        passes = tuple(p for p in PASS_NAMES if choices.get(f"pass:{p}", True))
        fields = {k: v for k, v in choices.items() if not k.startswith("pass:")}
        return dataclasses.replace(CompileOptions(passes=passes), **fields)

    def to_json(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in dataclasses.fields(self)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> CompileOptions:
        names = {f.name for f in dataclasses.fields(CompileOptions)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise CompileError(f"unknown compile options {unknown}; known: {sorted(names)}")
        return CompileOptions(**{k: tuple(v) if k == "passes" else v for k, v in d.items()})


def search_space() -> dict[str, tuple[Any, ...]]:
    """The choices the autotuner may make, per field (passes: each optional pass on or off)."""
    optional = tuple(p for p in PASS_NAMES if p not in REQUIRED_PASSES)
    return {
        **{f"pass:{p}": (True, False) for p in optional},
        "elementwise": ELEMENTWISE_MODES,
        "model_opt": MODEL_OPT,
        "kernel_opt": KERNEL_OPT,
        # whether the relaxed-SIMD build exists decides what `load` picks on hosts that have it
        "relaxed": (True, False),
    }
