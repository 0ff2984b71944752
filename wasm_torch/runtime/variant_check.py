"""Checking a build variant's wasm (model.threads.wasm, model.relaxed.wasm, ...) before wasmtime
compiles it: exactly the shape our compiler writes for that variant, and nothing looser.

A single-threaded variant (relaxed SIMD) has the shape of model.wasm: no imports, no start
function, no tables or element segments, one own memory, exports exactly memory / __heap_base /
__stack_pointer / the entry. A threaded variant differs in exactly these ways (wasm-ld
--shared-memory --import-memory, kernels/wt_threadpool.h):

- exactly one import, `env.memory`: a shared 32-bit memory with a maximum (wasm-ld writes the
  static need as its minimum and 65535 pages as its maximum; the host provides one whose minimum
  and maximum are both the planned size, so it can never grow);
- no memory section of its own (the memory is that import), no `memory` export;
- a start function of type () -> (), a function defined in the module (wasm-ld's
  __wasm_init_memory: it copies the passive data segments into the shared memory once, guarded by
  an atomic flag, so later instances skip it);
- exports exactly __heap_base (immutable i32), __stack_pointer (mutable i32), the entry
  (i32, i32, i32 x symbols) -> i32, wt_worker (i32) -> i32 and wt_pool_ctl (i32, i32) -> i32;
- still no tables, element segments or exception tags (tasks are dispatched by a switch, never
  through a function table).

The byte-level reader below is small and bounded; wasmtime then validates the whole module while
compiling, and `check_compiled` re-checks every export's type on the compiled module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import wasmtime

from ..errors import ArtifactError

MAX_BYTES = 4 << 20
MAX_COUNT = 4096
PAGE = 65536
THREAD_EXPORTS = {"wt_worker": (["i32"], ["i32"]), "wt_pool_ctl": (["i32", "i32"], ["i32"])}
ALLOWED = {0: "custom", 1: "type", 2: "import", 3: "function", 5: "memory", 6: "global", 7: "export",
           8: "start", 10: "code", 11: "data", 12: "data count"}  # fmt: skip


@dataclass
class Shape:
    types: list[tuple[int, int]] = field(default_factory=list)  # (params, results) counts
    functions: list[int] = field(default_factory=list)
    imports: list[tuple[str, str, int, int, int | None]] = field(default_factory=list)  # module, name, flags, lo, hi
    memory: tuple[int, int | None] | None = None
    start: int | None = None
    globals: list[tuple[bool, int]] = field(default_factory=list)  # (mutable, i32 initial value)
    exports: dict[str, tuple[int, int]] = field(default_factory=dict)


class _R:
    def __init__(self, data: bytes, where: str) -> None:
        self.d, self.p, self.where = data, 0, where

    def bad(self, why: str) -> ArtifactError:
        return ArtifactError(f"{self.where} is not a build this runtime accepts: {why}; recompile the model")

    def byte(self) -> int:
        if self.p >= len(self.d):
            raise self.bad("it ends in the middle of a section")
        self.p += 1
        return self.d[self.p - 1]

    def take(self, n: int) -> bytes:
        if n > len(self.d) - self.p:
            raise self.bad("a length points past the end of its section")
        self.p += n
        return self.d[self.p - n : self.p]

    def uleb(self) -> int:
        out = shift = 0
        for _ in range(5):
            b = self.byte()
            out |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return out
        raise self.bad("an integer is encoded in too many bytes")

    def sleb(self) -> int:
        out = shift = 0
        for _ in range(5):
            b = self.byte()
            out |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return out - (1 << shift) if b & 0x40 else out
        raise self.bad("an integer is encoded in too many bytes")

    def count(self) -> int:
        n = self.uleb()
        if n > MAX_COUNT:
            raise self.bad(f"a section declares {n:,} entries (at most {MAX_COUNT:,})")
        return n

    def name(self) -> str:
        try:
            return self.take(self.count()).decode("utf-8")
        except UnicodeDecodeError:
            raise self.bad("a name is not UTF-8") from None


def read_shape(wasm: bytes, where: str) -> Shape:
    r, s, seen = _R(wasm, where), Shape(), set()
    if len(wasm) > MAX_BYTES:
        raise r.bad(f"it is {len(wasm):,} bytes (at most {MAX_BYTES:,})")
    if wasm[:8] != b"\0asm\x01\0\0\0":
        raise r.bad("it is not a version-1 core WebAssembly module")
    r.p = 8
    while r.p < len(wasm):
        sid, size = r.byte(), r.uleb()
        b = _R(r.take(size), where)
        if sid not in ALLOWED:
            raise r.bad(f"it has section {sid} (tables, element segments and tags are never part of a model)")
        if sid and sid in seen:
            raise r.bad(f"the {ALLOWED[sid]} section appears twice")
        seen.add(sid)
        if sid == 1:
            for _ in range(b.count()):
                if b.byte() != 0x60:
                    raise r.bad("a type is not a function type")
                n_params = b.count()
                b.take(n_params)
                n_results = b.count()
                b.take(n_results)
                s.types.append((n_params, n_results))
        elif sid == 2:
            for _ in range(b.count()):
                mod, name, kind = b.name(), b.name(), b.byte()
                if kind != 0x02:
                    raise r.bad(f"it imports {mod}.{name} of kind {kind} (only a memory may be imported)")
                flags, lo = b.byte(), b.uleb()
                hi = b.uleb() if flags & 1 else None
                s.imports.append((mod, name, flags, lo, hi))
        elif sid == 3:
            s.functions = [b.uleb() for _ in range(b.count())]
        elif sid == 5:
            if b.count() != 1:
                raise r.bad("it declares more than one memory")
            flags, lo = b.byte(), b.uleb()
            if flags not in (0, 1):
                raise r.bad("its own memory is shared, 64-bit or has custom pages")
            s.memory = (lo, b.uleb() if flags else None)
        elif sid == 6:
            for _ in range(b.count()):
                t, mut = b.byte(), b.byte()
                if t != 0x7F or mut not in (0, 1) or b.byte() != 0x41:
                    raise r.bad("a global is not an i32 with a constant initial value")
                value = b.sleb()
                if b.byte() != 0x0B:
                    raise r.bad("a global has a non-constant initializer")
                s.globals.append((bool(mut), value))
        elif sid == 7:
            for _ in range(b.count()):
                name, kind, idx = b.name(), b.byte(), b.uleb()
                if name in s.exports:
                    raise r.bad(f"export {name!r} appears twice")
                s.exports[name] = (kind, idx)
        elif sid == 8:
            s.start = b.uleb()
    return s


def check_variant(wasm: bytes, threaded: bool, entry: str, where: str) -> int:
    """Refuse anything but our variant's shape (module docstring); returns __heap_base."""
    s = read_shape(wasm, where)
    r = _R(b"", where)
    own = {"__heap_base", "__stack_pointer", entry}
    if threaded:
        if len(s.imports) != 1 or s.imports[0][:2] != ("env", "memory"):
            raise r.bad(f"a threaded build imports exactly env.memory, this one imports {[i[:2] for i in s.imports]}")
        _, _, flags, lo, hi = s.imports[0]
        if flags != 0x03 or hi is None or not lo <= hi <= PAGE:
            raise r.bad(f"its memory import (flags {flags:#x}, {lo}..{hi} pages) is not a bounded 32-bit shared memory")
        if s.memory is not None:
            raise r.bad("a threaded build must not define a memory of its own")
        if s.start is None or not 0 <= s.start < len(s.functions) or s.types[s.functions[s.start]] != (0, 0):
            raise r.bad("a threaded build's start function must be its own () -> () memory initializer")
        want = own | set(THREAD_EXPORTS)
    else:
        if s.imports or s.start is not None:
            raise r.bad("a single-threaded build has no imports and no start function")
        if s.memory is None:
            raise r.bad("it has no memory")
        want = own | {"memory"}
    if set(s.exports) != want:
        raise r.bad(f"its exports must be exactly {sorted(want)}, it has {sorted(s.exports)[:10]}")
    kinds = {"__heap_base": (3, False), "__stack_pointer": (3, True)}
    for name, (kind, mutable) in kinds.items():
        k, idx = s.exports[name]
        if k != kind or idx >= len(s.globals) or s.globals[idx][0] != mutable:
            raise r.bad(f"{name} is not {'a mutable' if mutable else 'an immutable'} i32 global")
    heap = s.globals[s.exports["__heap_base"][1]][1]
    if not 0 <= heap < 1 << 31:
        raise r.bad(f"__heap_base = {heap} is outside linear memory")
    return heap


def check_compiled(mod: wasmtime.Module, threaded: bool, entry: str, n_symbols: int, where: str) -> None:
    """Second opinion from wasmtime's reading: imports and the exact type of every exported function."""
    r = _R(b"", where)
    imports = list(mod.imports)
    if threaded:
        t = imports[0].type if len(imports) == 1 else None
        if not isinstance(t, wasmtime.MemoryType) or not t.is_shared or t.is_64:
            raise r.bad("its one import is not a shared 32-bit memory")
    elif imports:
        raise r.bad("it has imports")
    funcs = {entry: (["i32"] * (2 + n_symbols), ["i32"]), **(THREAD_EXPORTS if threaded else {})}
    types = {e.name: e.type for e in mod.exports}
    for name, (params, results) in funcs.items():
        t = types.get(name)
        if not isinstance(t, wasmtime.FuncType) or (
            [str(p) for p in t.params], [str(x) for x in t.results]
        ) != (params, results):
            raise r.bad(f"export {name!r} is not a function ({', '.join(params)}) -> ({', '.join(results)})")
