"""C -> wasm32 with `zig cc` from the ziglang PyPI package; builds cached by content hash.

No system toolchain, no Emscripten, no WASI: the module is freestanding, imports nothing, and
exports its memory, `__heap_base` (where the host may place weights) and the entry function.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from ..config import Settings
from ..errors import BuildError

STACK_BYTES = 1 << 20

FLAGS = [
    "-target", "wasm32-freestanding",
    "-O3", "-msimd128", "-mbulk-memory", "-mnontrapping-fptoint", "-msign-ext",
    "-ffast-math", "-fno-finite-math-only", "-fno-math-errno",
    "-nostdlib", "-fvisibility=hidden",
    "-Wl,--no-entry", "-Wl,--export-dynamic", "-Wl,--export=__heap_base", "-Wl,--gc-sections",
    f"-Wl,-z,stack-size={STACK_BYTES}",
    "-Wno-unused-function", "-Wno-unused-variable",
]
# -ffast-math lets clang reassociate (vectorise reductions); -fno-finite-math-only keeps inf/NaN
# semantics that masks (-inf) and NaN propagation rely on.


def kernel_dir() -> Path:
    return Path(str(resources.files("wasm_torch") / "kernels"))


def kernel_sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(kernel_dir().glob("*.h"))}


def zig_command() -> list[str]:
    try:
        import ziglang  # noqa: F401
    except ImportError as e:
        raise BuildError("the `ziglang` package is missing: pip install ziglang (it ships zig cc)") from e
    return [sys.executable, "-m", "ziglang", "cc"]


def build_key(c_source: str) -> str:
    h = hashlib.sha256()
    for name, text in kernel_sources().items():
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    h.update(c_source.encode())
    h.update(" ".join(FLAGS).encode())
    try:
        from importlib.metadata import version

        h.update(version("ziglang").encode())
    except Exception:  # noqa: BLE001 — the version only refines the key
        pass
    return h.hexdigest()


def compile_c(c_source: str, settings: Settings, extra_flags: list[str] | None = None) -> bytes:
    """Compile one C translation unit (which includes wt_kernels.h) to wasm bytes."""
    key = build_key(c_source + " ".join(extra_flags or []))
    cached = settings.cache_dir / "build" / f"{key}.wasm"
    if cached.exists() and not settings.no_cache:
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="wasm_torch_build_") as tmp:
        src = Path(tmp) / "model.c"
        out = Path(tmp) / "model.wasm"
        src.write_text(c_source)
        cmd = [*zig_command(), *FLAGS, *(extra_flags or []), "-I", str(kernel_dir()), str(src), "-o", str(out)]
        env = dict(os.environ)
        env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(settings.cache_dir / "zig"))
        env.setdefault("ZIG_LOCAL_CACHE_DIR", str(settings.cache_dir / "zig"))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            keep = Path(tempfile.mkdtemp(prefix="wasm_torch_failed_"))
            shutil.copy(src, keep / "model.c")
            raise BuildError(
                f"zig cc failed (exit {proc.returncode}); the C source is kept at {keep / 'model.c'}\n"
                + proc.stderr[-4000:]
            )
        data = out.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = cached.with_suffix(f".tmp{os.getpid()}")
    tmp_path.write_bytes(data)
    tmp_path.replace(cached)
    return data
