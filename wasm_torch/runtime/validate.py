"""Checking model.wasm before wasmtime compiles or runs any of it: the module must be exactly the
kind of module our compiler writes, and agree with its manifest.

The runtime calls the entry point with `wasmtime_func_call_unchecked` (no type checks per call),
so a module whose entry takes other parameters than the manifest promises — one symbol fewer, an
extra result, a funcref — would make wasmtime read or write the wrong values and kill the process.
Here the binary is read section by section (a small, bounded reader: every count and length is
checked against the bytes that remain) and refused with an ArtifactError unless:

- it is a core wasm 1 module of at most MAX_WASM_BYTES, with no imports, no start function, no
  tables or element segments, no exception tags, and exactly one memory (32-bit, not shared)
  whose initial size fits the memory cap and whose declared maximum (if any) fits what the model needs;
- its exports are exactly `memory`, `__heap_base` (an immutable i32 constant), `__stack_pointer`
  (a mutable i32) and the manifest's entry, a function `(i32, i32, i32 x symbols) -> i32`;
- its counts (types, functions, globals, exports, data segments) are within small bounds that
  keep Cranelift's compile time bounded (the zoo's largest module has 7 functions).

wasmtime then validates the whole module itself while compiling; `check_compiled` re-checks the
entry's type on the compiled module, so a mistake here cannot reach the unchecked call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import wasmtime

from ..artifact.layout import MAX_WASM_BYTES
from ..errors import ArtifactError

PAGE = 65536
MAX_PAGES = 65536
MAX_TYPES = MAX_FUNCS = MAX_DATA = 4096
MAX_GLOBALS = MAX_EXPORTS = 64
MAX_PARAMS = 1024
MAX_HEAP_BASE = 64 << 20  # stack (1 MiB) + static data (inside a module of at most 1 MiB), with room
I32 = 0x7F
VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref", 0x6F: "externref"}
SECTIONS = {0: "custom", 1: "type", 3: "function", 5: "memory", 6: "global", 7: "export", 10: "code",
            11: "data", 12: "data count"}  # fmt: skip
REFUSED = {
    2: "imports (a model module is freestanding: it imports nothing)",
    4: "a table (our compiler never emits one)",
    8: "a start function (code that would run while loading)",
    9: "element segments (our compiler never emits them)",
    13: "exception tags",
}


@dataclass
class WasmInfo:
    """What the checks need from a module, read from its bytes."""

    types: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    functions: list[int] = field(default_factory=list)  # type index of each defined function
    memory: tuple[int, int | None] | None = None  # (initial pages, maximum pages or None)
    globals: list[tuple[str, bool, int]] = field(default_factory=list)  # (type, mutable, i32 initial value)
    exports: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (kind, index)


class _Reader:
    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def bad(self, why: str) -> ArtifactError:
        return ArtifactError(f"{self.where} is not a module this runtime accepts: {why}; recompile the model")

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.bad("it ends in the middle of a section")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bytes_(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise self.bad("a length points past the end of its section")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uleb(self, bits: int = 32) -> int:
        result = shift = 0
        for _ in range((bits + 6) // 7):
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                if result >= 1 << bits:
                    raise self.bad("an integer is out of range")
                return result
        raise self.bad("an integer is encoded in too many bytes")

    def sleb32(self) -> int:
        result = shift = 0
        for _ in range(5):
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                if b & 0x40:
                    result -= 1 << shift
                if not -(1 << 31) <= result < 1 << 31:
                    raise self.bad("an i32 constant is out of range")
                return result
        raise self.bad("an integer is encoded in too many bytes")

    def count(self, most: int, what: str) -> int:
        n = self.uleb()
        if n > most:
            raise self.bad(f"{n:,} {what} (at most {most:,})")
        return n

    def valtype(self) -> str:
        b = self.byte()
        if b not in VALTYPES:
            raise self.bad(f"value type 0x{b:02x} is not supported")
        return VALTYPES[b]


def _types(r: _Reader, info: WasmInfo) -> None:
    for _ in range(r.count(MAX_TYPES, "types")):
        form = r.byte()
        if form != 0x60:
            raise r.bad(f"type form 0x{form:02x} is not a plain function type")
        params = tuple(r.valtype() for _ in range(r.count(MAX_PARAMS, "parameters")))
        results = tuple(r.valtype() for _ in range(r.count(MAX_PARAMS, "results")))
        info.types.append((params, results))


def _memory(r: _Reader, info: WasmInfo) -> None:
    n = r.uleb()
    if n != 1:
        raise r.bad(f"it declares {n} memories (a model has exactly one)")
    flags = r.byte()
    if flags not in (0, 1):
        raise r.bad(f"its memory has flags 0x{flags:02x} (shared, 64-bit or custom pages are not supported)")
    lo = r.uleb()
    hi = r.uleb() if flags == 1 else None
    if lo > MAX_PAGES or (hi is not None and not lo <= hi <= MAX_PAGES):
        raise r.bad(f"its memory limits ({lo}, {hi}) pages are invalid")
    info.memory = (lo, hi)


def _globals(r: _Reader, info: WasmInfo) -> None:
    for i in range(r.count(MAX_GLOBALS, "globals")):
        t, mut = r.valtype(), r.byte()
        if t != "i32" or mut not in (0, 1) or r.byte() != 0x41:
            raise r.bad(f"global {i} is not an i32 with a constant initial value")
        value = r.sleb32()
        if r.byte() != 0x0B:
            raise r.bad(f"global {i} has a non-constant initializer")
        info.globals.append((t, bool(mut), value))


def _exports(r: _Reader, info: WasmInfo) -> None:
    for _ in range(r.count(MAX_EXPORTS, "exports")):
        raw = r.bytes_(r.count(256, "bytes in an export name"))
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise r.bad("an export name is not UTF-8") from None
        kind, index = r.byte(), r.uleb()
        if name in info.exports:
            raise r.bad(f"export {name!r} appears twice")
        info.exports[name] = (kind, index)


def read_wasm(wasm: bytes, where: str) -> WasmInfo:
    """Read the sections the checks need; refuse anything outside the accepted subset."""
    r = _Reader(wasm, where)
    if len(wasm) > MAX_WASM_BYTES:
        raise r.bad(f"it is {len(wasm):,} bytes (at most {MAX_WASM_BYTES:,})")
    if wasm[:8] != b"\0asm\x01\0\0\0":
        raise r.bad("it is not a version-1 core WebAssembly module (bad magic or version)")
    r.pos = 8
    info, seen = WasmInfo(), set()
    while r.pos < len(wasm):
        sid, size = r.byte(), r.uleb()
        body = _Reader(r.bytes_(size), where)
        if sid in REFUSED:
            raise r.bad(f"it has {REFUSED[sid]}")
        if sid not in SECTIONS:
            raise r.bad(f"unknown section id {sid}")
        if sid and sid in seen:
            raise r.bad(f"the {SECTIONS[sid]} section appears twice")
        seen.add(sid)
        if sid == 1:
            _types(body, info)
        elif sid == 3:
            for _ in range(body.count(MAX_FUNCS, "functions")):
                t = body.uleb()
                if t >= len(info.types):
                    raise r.bad(f"a function uses type {t}, which does not exist")
                info.functions.append(t)
        elif sid == 5:
            _memory(body, info)
        elif sid == 6:
            _globals(body, info)
        elif sid == 7:
            _exports(body, info)
        elif sid == 11:
            body.count(MAX_DATA, "data segments")
    return info


def check_module(info: WasmInfo, entry: str, n_symbols: int, where: str) -> int:
    """Check exports and their exact types against the manifest; returns __heap_base's value."""
    r = _Reader(b"", where)
    want = {"memory", "__heap_base", "__stack_pointer", entry}
    extra, missing = sorted(set(info.exports) - want), sorted(want - set(info.exports))
    if extra or missing:
        raise r.bad(f"its exports must be exactly {sorted(want)} (missing {missing}, unexpected {extra[:8]})")
    if info.memory is None or info.exports["memory"] != (2, 0):
        raise r.bad("'memory' is not its one linear memory")

    def global_(name: str, mutable: bool) -> int:
        kind, idx = info.exports[name]
        if kind != 3 or idx >= len(info.globals) or info.globals[idx][1] != mutable:
            raise r.bad(f"{name!r} is not {'a mutable' if mutable else 'an immutable'} i32 global")
        return info.globals[idx][2]

    heap_base = global_("__heap_base", False)
    global_("__stack_pointer", True)
    initial = info.memory[0] * PAGE
    if not 0 <= heap_base <= min(initial, MAX_HEAP_BASE):
        raise r.bad(
            f"__heap_base = {heap_base} lies outside its initial memory ({initial:,} bytes) or above "
            f"{MAX_HEAP_BASE:,} (the linker places it right after the stack and static data)"
        )
    kind, idx = info.exports[entry]
    if kind != 0 or idx >= len(info.functions):
        raise r.bad(f"the entry {entry!r} is not a function of the module")
    params, results = info.types[info.functions[idx]]
    expect = (("i32",) * (2 + n_symbols), ("i32",))
    if (params, results) != expect:
        raise r.bad(
            f"the entry {entry}{_sig(params, results)} does not match the manifest, which needs "
            f"{entry}{_sig(*expect)} (weights, arena, then one i32 per symbol)"
        )
    return heap_base


def check_memory(info: WasmInfo, need: int, cap: int, where: str) -> None:
    """The declared memory fits the cap at instantiation and can grow to what the model needs."""
    r = _Reader(b"", where)
    lo, hi = info.memory or (0, None)
    if lo * PAGE > cap:
        raise r.bad(f"it declares {lo * PAGE:,} bytes of initial memory, over the memory cap of {cap:,}")
    if hi is not None and hi * PAGE < need:
        raise r.bad(f"its memory maximum ({hi * PAGE:,} bytes) is below the {need:,} the manifest needs")


def check_compiled(mod: wasmtime.Module, entry: str, n_symbols: int, where: str) -> None:
    """Second opinion from wasmtime's own reading of the compiled module (imports and entry type)."""
    r = _Reader(b"", where)
    if list(mod.imports):
        raise r.bad("it has imports")
    types = {e.name: e.type for e in mod.exports}
    t = types.get(entry)
    if not isinstance(t, wasmtime.FuncType):
        raise r.bad(f"the entry {entry!r} is not a function")
    params, results = [str(p) for p in t.params], [str(p) for p in t.results]
    if params != ["i32"] * (2 + n_symbols) or results != ["i32"]:
        raise r.bad(f"the entry {entry}{_sig(tuple(params), tuple(results))} does not match the manifest")


def _sig(params: tuple[str, ...], results: tuple[str, ...]) -> str:
    return f"({', '.join(params)}) -> ({', '.join(results)})"
