"""Which build of an artifact to run: the manifest's build variants, checked strictly, and the choice
among them by the engine's features and the requested thread count.

An artifact always has model.wasm (the plain SIMD128 build). The compiler records every build in
`manifest["compiler"]["variants"]` (wasm_torch/compiler/build/variants.py writes it):

    {"name": "simd128-threads", "file": "model.threads.wasm", "features": ["simd128", "threads"],
     "threads": true, "deterministic": true, "flags": {"compile": [...], "link": [...]},
     "stack_bytes": 1048576, "max_threads": 64}

Every field is checked here before anything is used (the manifest schema treats `compiler` as
informational): names and files are plain, each file is listed (hence hash-checked) in `files`,
features are known words, numbers bounded. A variant whose features this engine lacks is skipped,
never an error, so an artifact from a newer compiler still loads its plain build.

Choice (`choose`): `variant="auto"` takes the fastest build the engine can run — relaxed SIMD over
plain, a threaded build when threads > 1; `variant="simd128"` keeps to the builds whose results are
bit-identical to model.wasm on every host (plain and threaded: what the edge network needs); any
other name asks for exactly that build.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import wasmtime

from ..artifact import WASM, Manifest
from ..errors import ArtifactError, ThreadsError

MAX_THREADS = 64  # = WT_MAX_THREADS (kernels/wt_threads.h)
DEFAULT_MAX_THREADS = 8  # threads=None: the machine's cores, at most this many
MAX_VARIANTS = 8
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
FILE_RE = re.compile(r"^model(\.[a-z0-9-]{1,32})?\.wasm$")
KEYS = {"name", "file", "features", "threads", "deterministic", "flags"}
THREAD_KEYS = {"stack_bytes", "max_threads"}
MIN_STACK, MAX_STACK = 64 << 10, 64 << 20
# The engine features a build may need and, for each, a module that only validates with it.
FEATURES = {
    "simd128": "(module (func (param v128 v128) (result v128) local.get 0 local.get 1 f32x4.add))",
    "relaxed_simd": "(module (func (param v128 v128 v128) (result v128) local.get 0 local.get 1 local.get 2 "
    "f32x4.relaxed_madd))",
    "threads": "(module (memory 1 1 shared) (func (result i32) i32.const 0 i32.atomic.load))",
}


@dataclass(frozen=True)
class VariantSpec:
    name: str
    file: str
    features: tuple[str, ...]
    threads: bool
    deterministic: bool
    stack_bytes: int = 0
    max_threads: int = 1

    @property
    def plain(self) -> bool:
        return self.file == WASM


PLAIN = VariantSpec("simd128", WASM, ("simd128",), False, True)


def _bad(where: str, why: str) -> ArtifactError:
    return ArtifactError(f"{where}: compiler.variants {why}; recompile the model (or restore manifest.json)")


def parse_variants(m: Manifest, where: str) -> list[VariantSpec]:
    """The builds the manifest declares (always including model.wasm), strictly checked."""
    compiler = m.raw.get("compiler")
    raw = compiler.get("variants") if isinstance(compiler, dict) else None
    if raw is None:
        return [PLAIN]  # an artifact from before build variants: model.wasm only
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_VARIANTS:
        raise _bad(where, f"must be a list of 1 to {MAX_VARIANTS} builds")
    files = m.raw["files"]
    out: list[VariantSpec] = []
    for i, v in enumerate(raw):
        at = f"[{i}]"
        if not isinstance(v, dict):
            raise _bad(where, f"{at} is not an object")
        threads = v.get("threads")
        allowed = KEYS | (THREAD_KEYS if threads is True else set())
        if set(v) != allowed:
            raise _bad(where, f"{at} must have exactly the keys {sorted(allowed)}, has {sorted(map(str, v))[:10]}")
        name, file, feats = v["name"], v["file"], v["features"]
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _bad(where, f"{at}.name {str(name)[:40]!r} is not a plain lowercase name")
        if not isinstance(file, str) or not FILE_RE.match(file):
            raise _bad(where, f"{at}.file {str(file)[:40]!r} is not model[.<name>].wasm")
        if file not in files:
            raise _bad(where, f"{at}.file {file!r} is not listed (with its sha256) in files")
        if not isinstance(feats, list) or not 1 <= len(feats) <= 8 or not all(
            isinstance(f, str) and NAME_RE.match(f.replace("_", "-")) for f in feats
        ):
            raise _bad(where, f"{at}.features must be a list of 1 to 8 plain names")
        if not isinstance(threads, bool) or threads != ("threads" in feats):
            raise _bad(where, f"{at}.threads must be true exactly when 'threads' is among its features")
        if not isinstance(v["deterministic"], bool) or not isinstance(v["flags"], dict):
            raise _bad(where, f"{at}.deterministic must be a boolean and flags an object")
        stack, most = 0, 1
        if threads:
            stack, most = v["stack_bytes"], v["max_threads"]
            if type(stack) is not int or not MIN_STACK <= stack <= MAX_STACK or stack % 16:
                raise _bad(where, f"{at}.stack_bytes must be a multiple of 16 in [{MIN_STACK}, {MAX_STACK}]")
            if type(most) is not int or not 1 <= most <= MAX_THREADS:
                raise _bad(where, f"{at}.max_threads must be an integer in [1, {MAX_THREADS}]")
        spec = VariantSpec(name, file, tuple(feats), threads, v["deterministic"], stack, most)
        if any(o.name == name or o.file == file for o in out):
            raise _bad(where, f"{at} repeats the name {name!r} or the file {file!r}")
        if file == WASM and (threads or tuple(feats) != ("simd128",) or not spec.deterministic):
            raise _bad(where, f"{at}: model.wasm must be the plain, deterministic simd128 build")
        out.append(spec)
    if not any(s.plain for s in out):
        out.insert(0, PLAIN)
    return out


@functools.cache
def engine_features() -> frozenset[str]:
    """The build features this wasmtime can run (each probed by validating a tiny module)."""
    have = set()
    for feature, wat in FEATURES.items():
        cfg = wasmtime.Config()
        cfg.wasm_simd = True
        if feature == "threads":
            cfg.wasm_threads = True
            cfg.shared_memory = True
        if feature == "relaxed_simd":
            cfg.wasm_relaxed_simd = True
        try:
            wasmtime.Module.validate(wasmtime.Engine(cfg), wasmtime.wat2wasm(wat))
            have.add(feature)
        except (wasmtime.WasmtimeError, ValueError):
            pass
    return frozenset(have)


def default_threads() -> int:
    """The machine's cores (the ones this process may run on), at most DEFAULT_MAX_THREADS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, DEFAULT_MAX_THREADS))


def check_threads(threads: Any) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ThreadsError(f"threads={threads!r}: expected an integer from 1 to {MAX_THREADS} (or None: the cores)")
    return threads


def choose(
    specs: list[VariantSpec], threads: int, variant: str, have: frozenset[str], where: str, warn: bool = True
) -> VariantSpec:
    """The build to run `threads` threads with (see the module docstring). With threads > 1 and no
    threaded build that can run here, the best single-threaded build is returned and (when `warn`:
    the caller asked for those threads) a ThreadsUnavailableWarning says why."""
    runnable = [s for s in specs if set(s.features) <= have]
    names = [s.name for s in specs]
    if variant not in ("auto", "simd128"):
        pick = [s for s in specs if s.name == variant]
        if not pick:
            raise ThreadsError(f"{where} has no {variant!r} build (it has {names}); use variant='auto'")
        if pick[0] not in runnable:
            missing = sorted(set(pick[0].features) - have)
            raise ThreadsError(f"the {variant!r} build needs engine features {missing} this wasmtime lacks")
        if threads > 1 and not pick[0].threads:
            raise ThreadsError(f"the {variant!r} build is single-threaded: pass threads=1 or a threaded build")
        return pick[0]
    if variant == "simd128":
        runnable = [s for s in runnable if s.deterministic]

    def rank(s: VariantSpec) -> tuple[int, int, int]:  # relaxed first, then fewer needless threads
        return (int("relaxed_simd" in s.features), int(s.threads == (threads > 1)), -len(s.features))

    if threads > 1:
        threaded = [s for s in runnable if s.threads and s.max_threads >= threads]
        if threaded:
            return max(threaded, key=rank)
        why = (
            "the engine lacks wasm threads"
            if "threads" not in have
            else f"the artifact has no threaded build for {threads} threads (its builds: {names}; "
            "recompile with CompileOptions(threads=True))"
        )
        if warn:
            warnings.warn(f"{where}: running on ONE thread, not {threads}: {why}", ThreadsUnavailableWarning, 3)
    return max(runnable, key=rank)


class ThreadsUnavailableWarning(UserWarning):
    """load(threads=N > 1) fell back to one thread; the message says why."""
