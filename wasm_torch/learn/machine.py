"""What about *this machine* decides which compile configuration is fastest, as a few numbers.

Cores, whether wasmtime accepts SIMD128 and relaxed-SIMD code (validated on a tiny module, not
assumed), the host's vector ISA flags, the wasmtime version and a hash of the CPU model string.
Tuning results are only comparable between machines with equal features, so the pattern memory
keeps them in every embedding and in the pattern key.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

MACHINE_DIMS = 8

_SIMD_WAT = "(module (func (param v128 v128) (result v128) local.get 0 local.get 1 f32x4.add))"
_RELAXED_WAT = (
    "(module (func (param v128 v128 v128) (result v128) "
    "local.get 0 local.get 1 local.get 2 f32x4.relaxed_madd))"
)


@dataclass(frozen=True)
class Machine:
    cores: int
    simd128: bool
    relaxed_simd: bool
    fma: bool  # the host has fused multiply-add, which makes relaxed_madd a single instruction
    avx2: bool
    wasmtime: str
    cpu_model: str

    @property
    def key(self) -> str:
        """Short stable id: results measured under equal keys are comparable."""
        text = "|".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def vector(self) -> np.ndarray:
        h = hashlib.sha256(self.cpu_model.encode()).digest()
        major = float(self.wasmtime.split(".")[0]) if self.wasmtime.split(".")[0].isdigit() else 0.0
        return np.array(
            [
                np.log2(max(1, self.cores)) / 6.0,
                float(self.simd128),
                float(self.relaxed_simd),
                float(self.fma),
                float(self.avx2),
                major / 100.0,
                h[0] / 255.0 - 0.5,
                h[1] / 255.0 - 0.5,
            ],
            dtype=np.float32,
        )


def _cpu_model() -> tuple[str, set[str]]:
    info = Path("/proc/cpuinfo")
    model, flags = platform.processor() or platform.machine(), set()
    if info.exists():
        for line in info.read_text(errors="replace").splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key in ("model name", "Hardware", "CPU part") and model in ("", platform.machine()):
                model = val.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(val.split())
    if platform.machine().lower() in ("arm64", "aarch64"):
        flags |= {"fma", "neon"}  # both are baseline on 64-bit ARM
    return model or "unknown", flags


def _validates(wat: str, relaxed: bool) -> bool:
    import wasmtime

    cfg = wasmtime.Config()
    cfg.wasm_simd = True
    if relaxed:
        cfg.wasm_relaxed_simd = True
    try:
        wasmtime.Module.validate(wasmtime.Engine(cfg), wasmtime.wat2wasm(wat))
        return True
    except (wasmtime.WasmtimeError, AttributeError):
        return False


@functools.cache
def current_machine() -> Machine:
    model, flags = _cpu_model()
    try:
        wt = version("wasmtime")
    except PackageNotFoundError:
        wt = "0"
    return Machine(
        cores=os.cpu_count() or 1,
        simd128=_validates(_SIMD_WAT, relaxed=False),
        relaxed_simd=_validates(_RELAXED_WAT, relaxed=True),
        fma="fma" in flags,
        avx2="avx2" in flags,
        wasmtime=wt,
        cpu_model=model,
    )
