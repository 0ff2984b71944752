"""C -> wasm32 with `zig cc` from the ziglang PyPI package; builds cached by content hash.

No system toolchain, no Emscripten, no WASI: the module is freestanding, imports nothing, and
exports its memory, `__heap_base` (where the host places weights) and the entry function.

Two translation units: the kernel library (kernels.c) at -O3, compiled once and cached, and the
generated model code at -Os. The model code is hundreds of small loops; -O3 unrolls and
vectorises each one into ~1 KB, -Os keeps them ~10x smaller, while the time is spent in kernels.

Each build variant (build/variants.py: threads, relaxed SIMD) adds its flags to both units and to
the link; the default is the plain SIMD128 build, model.wasm.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from importlib import resources
from importlib.metadata import version
from pathlib import Path

from ...config import Settings
from ...errors import BuildError
from ..options import CompileOptions
from .variants import SIMD128, Variant

STACK_BYTES = 1 << 20

COMMON = [
    "-target",
    "wasm32-freestanding",
    "-msimd128",
    "-mbulk-memory",
    "-mnontrapping-fptoint",
    "-msign-ext",
    # fast-math lets clang reassociate (vectorise reductions); -fno-finite-math-only keeps the inf/NaN
    # semantics that attention masks (-inf) and NaN propagation rely on.
    "-ffast-math",
    "-fno-finite-math-only",
    "-fno-math-errno",
    "-nostdlib",
    "-fvisibility=hidden",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wno-unused-function",
    "-Wno-unused-variable",
]
LINK_FLAGS = [
    "-Wl,--no-entry",
    "-Wl,--export-dynamic",
    "-Wl,--export=__heap_base",
    "-Wl,--export=__stack_pointer",
    "-Wl,--gc-sections",
    f"-Wl,-z,stack-size={STACK_BYTES}",
    "-Wl,--strip-debug",
]


def flags(options: CompileOptions, variant: Variant = SIMD128) -> dict[str, list[str]]:
    """The exact zig cc flags of a build with these options (recorded in the manifest)."""
    return {
        "common": [*COMMON, *variant.cflags],
        "kernels": [options.kernel_opt],
        "model": [options.model_opt],
        "link": [*LINK_FLAGS, *variant.lflags],
    }


def kernel_dir() -> Path:
    return Path(str(resources.files("wasm_torch.compiler") / "kernels"))


def zig_command() -> list[str]:
    try:
        import ziglang  # noqa: F401
    except ImportError as e:
        raise BuildError("the `ziglang` package is missing: pip install ziglang (it ships zig cc)") from e
    return [sys.executable, "-m", "ziglang", "cc"]


def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()


def _kernel_sources() -> str:
    return "".join(f"{p.name}\0{p.read_text()}" for p in sorted(kernel_dir().glob("*.[ch]")))


def _run(cmd: list[str], settings: Settings, what: str, keep: Path | None = None) -> None:
    env = dict(os.environ)
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(settings.cache_dir / "zig"))
    env.setdefault("ZIG_LOCAL_CACHE_DIR", str(settings.cache_dir / "zig"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        where = ""
        if keep is not None:
            saved = Path(tempfile.mkdtemp(prefix="wasm_torch_failed_")) / keep.name
            saved.write_text(keep.read_text())
            where = f"; the C source is kept at {saved}"
        raise BuildError(f"zig cc failed while {what} (exit {proc.returncode}){where}\n{proc.stderr[-4000:]}")


def _store(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def kernels_object(settings: Settings, options: CompileOptions, variant: Variant = SIMD128) -> Path:
    """kernels.c compiled at options.kernel_opt for `variant`; one per (kernel sources, flags, zig version)."""
    f = flags(options, variant)
    key = _hash(_kernel_sources(), *f["common"], *f["kernels"], version("ziglang"))
    obj = settings.cache_dir / "build" / f"kernels-{key[:32]}.o"
    if obj.exists() and not settings.no_cache:
        return obj
    with tempfile.TemporaryDirectory(prefix="wasm_torch_k_") as tmp:
        out = Path(tmp) / "kernels.o"
        _run(
            [*zig_command(), *f["common"], *f["kernels"], "-c", str(kernel_dir() / "kernels.c"), "-o", str(out)],
            settings,
            "compiling the kernel library",
        )
        _store(obj, out.read_bytes())
    return obj


def compile_c(c_source: str, settings: Settings, options: CompileOptions, variant: Variant = SIMD128) -> bytes:
    """Compile generated model C (which includes wt_kernels.h) and link it with the kernels."""
    f = flags(options, variant)
    key = _hash(_kernel_sources(), c_source, *(x for v in f.values() for x in v), version("ziglang"))
    cached = settings.cache_dir / "build" / f"{key}.wasm"
    if cached.exists() and not settings.no_cache:
        return cached.read_bytes()
    kobj = kernels_object(settings, options, variant)
    with tempfile.TemporaryDirectory(prefix="wasm_torch_build_") as tmp:
        src, obj, out = Path(tmp) / "model.c", Path(tmp) / "model.o", Path(tmp) / "model.wasm"
        src.write_text(c_source)
        _run(
            [*zig_command(), *f["common"], *f["model"], "-I", str(kernel_dir()), "-c", str(src), "-o", str(obj)],
            settings,
            f"compiling the model code ({variant.name} build)",
            keep=src,
        )
        _run([*zig_command(), *f["common"], *f["link"], str(obj), str(kobj), "-o", str(out)], settings,
             f"linking ({variant.name} build)")
        data = out.read_bytes()
    _store(cached, data)
    return data


def compile_variants(
    c_source: str, settings: Settings, options: CompileOptions, variants: tuple[Variant, ...]
) -> dict[str, bytes]:
    """Every variant of one C source (zig runs in parallel, one process per variant)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(variants), os.cpu_count() or 1))) as pool:
        built = pool.map(lambda v: compile_c(c_source, settings, options, v), variants)
        return {v.name: wasm for v, wasm in zip(variants, built, strict=True)}
