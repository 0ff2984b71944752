"""The strict schema of manifest.json: every field typed and bounded, unknown keys refused.

`check_manifest(raw, where)` is the one parser every reader uses (runtime, `wasm-torch info`,
serve, signing, the edge network) through `Manifest`. It refuses, with an ArtifactError naming the
field: unknown or missing keys, wrong types (a bool is not an int), negative or huge numbers,
names that are not plain identifiers, shapes over undeclared symbols, symbols that do not name an
input axis, tensors or weights that do not fit in the memory the manifest declares, file entries
that are paths. Informational sections (compiler, validation, tuning) only have to be objects.
A text generator's `state` and `generator` sections are checked by generation.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ArtifactError
from .dims import eval_dim, parse_dim
from .layout import (
    ALIGN,
    DTYPES,
    FORMAT,
    IDENT_RE,
    MANIFEST,
    MAX_DIM,
    MAX_FILES,
    MAX_MEMORY_BYTES,
    MAX_RANK,
    MAX_SYMBOLS,
    MAX_TENSORS,
    MAX_WASM_BYTES,
    MAX_WEIGHT_ENTRIES,
    NAME_RE,
    SIGNATURE,
    TENSOR_NAME_RE,
    WASM,
    WEIGHT_DTYPES,
    WEIGHTS,
)
from .safeio import check_name

REQUIRED = {"format", "name", "entry", "inputs", "outputs", "memory", "files"}
OPTIONAL = {"compiler", "symbols", "ops", "work", "weights", "validation", "tuning", "index_inputs", "state", "generator"}
RESERVED_EXPORTS = {"memory", "__heap_base", "__stack_pointer"}
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FIX = "recompile the model (or restore the original manifest.json)"


class _Ctx:
    def __init__(self, where: str) -> None:
        self.where = where

    def bad(self, field: str, why: str) -> ArtifactError:
        return ArtifactError(f"{self.where}: {field} {why}; {FIX}")

    def obj(self, v: Any, field: str, required: set[str], optional: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.bad(field, f"must be an object, not {type(v).__name__}")
        unknown = sorted(set(v) - required - (optional or set()))
        if unknown:
            raise self.bad(field, f"has unknown keys {[k[:40] for k in unknown[:8]]}")
        missing = sorted(required - set(v))
        if missing:
            raise self.bad(field, f"lacks the keys {missing}")
        return v

    def int_(self, v: Any, field: str, lo: int = 0, hi: int = MAX_MEMORY_BYTES) -> int:
        if type(v) is not int:
            raise self.bad(field, f"must be an integer, not {type(v).__name__}")
        if not lo <= v <= hi:
            raise self.bad(field, f"= {v} is outside [{lo}, {hi}]")
        return v

    def str_(self, v: Any, field: str, pattern: re.Pattern[str], what: str) -> str:
        if not isinstance(v, str) or not pattern.match(v):
            raise self.bad(field, f"= {str(v)[:80]!r} is not {what}")
        return v

    def list_(self, v: Any, field: str, most: int) -> list[Any]:
        if not isinstance(v, list):
            raise self.bad(field, f"must be a list, not {type(v).__name__}")
        if len(v) > most:
            raise self.bad(field, f"has {len(v):,} entries (at most {most:,})")
        return v


def _nbytes(dtype: str, shape: list[int]) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def _tensors(c: _Ctx, raw: Any, field: str, symbols: set[str]) -> list[dict[str, Any]]:
    out = c.list_(raw, field, MAX_TENSORS)
    seen: set[str] = set()
    for i, t in enumerate(out):
        f = f"{field}[{i}]"
        c.obj(t, f, {"name", "dtype", "shape", "offset"})
        name = c.str_(t["name"], f"{f}.name", TENSOR_NAME_RE, "a tensor name")
        if name in seen:
            raise c.bad(f"{f}.name", f"{name!r} appears twice")
        seen.add(name)
        if t["dtype"] not in DTYPES:
            raise c.bad(f"{f}.dtype", f"= {str(t['dtype'])[:40]!r} is not one of {list(DTYPES)}")
        for k, d in enumerate(c.list_(t["shape"], f"{f}.shape", MAX_RANK)):
            if type(d) is int:
                c.int_(d, f"{f}.shape[{k}]", 0, MAX_DIM)
            else:
                parse_dim(d, symbols)
        if c.int_(t["offset"], f"{f}.offset") % ALIGN:
            raise c.bad(f"{f}.offset", f"= {t['offset']} is not a multiple of {ALIGN}")
    return out


def _extent(c: _Ctx, t: dict[str, Any], field: str, syms: list[dict[str, Any]], arena: int) -> None:
    """The tensor fits in the arena with every symbol at its max (the runtime re-checks each call)."""
    at_max = {s["name"]: s["max"] for s in syms}
    at_min = {s["name"]: s["min"] for s in syms}
    dims = [eval_dim(d, at_max) for d in t["shape"]]
    if min(dims + [eval_dim(d, at_min) for d in t["shape"]], default=0) < 0:
        raise c.bad(f"{field}.shape", f"{t['shape']} has a negative size within the symbol ranges")
    end = t["offset"] + _nbytes(t["dtype"], dims)
    if end > arena:
        raise c.bad(field, f"ends at byte {end:,} with every symbol at its max, past arena_bytes {arena:,}")


def _files(c: _Ctx, raw: Any, weights_bytes: int) -> None:
    files = c.obj(raw, "files", {WASM, WEIGHTS}, set(raw) if isinstance(raw, dict) else set())
    if len(files) > MAX_FILES:
        raise c.bad("files", f"lists {len(files)} files (at most {MAX_FILES})")
    for name, e in files.items():
        check_name(name, f"{c.where}: files")
        if name in (MANIFEST, SIGNATURE):
            raise c.bad("files", f"cannot list {name}")
        c.obj(e, f"files[{name!r}]", {"sha256", "bytes"})
        c.str_(e["sha256"], f"files[{name!r}].sha256", SHA256_RE, "64 lowercase hex digits")
        c.int_(e["bytes"], f"files[{name!r}].bytes", 0, MAX_WASM_BYTES if name == WASM else MAX_MEMORY_BYTES)
    if files[WEIGHTS]["bytes"] != weights_bytes:
        raise c.bad(
            f"files[{WEIGHTS!r}].bytes", f"= {files[WEIGHTS]['bytes']} but memory.weights_bytes = {weights_bytes}"
        )


def _weights(c: _Ctx, raw: Any, weights_bytes: int) -> None:
    for i, w in enumerate(c.list_(raw, "weights", MAX_WEIGHT_ENTRIES)):
        f = f"weights[{i}]"
        c.obj(w, f, {"name", "dtype", "shape", "offset"})
        if not isinstance(w["name"], str) or not 0 < len(w["name"]) <= 256:
            raise c.bad(f"{f}.name", "must be a string of 1-256 characters")
        if w["dtype"] not in WEIGHT_DTYPES:
            raise c.bad(f"{f}.dtype", f"= {str(w['dtype'])[:40]!r} is not one of {list(WEIGHT_DTYPES)}")
        dims = c.list_(w["shape"], f"{f}.shape", MAX_RANK)
        shape = [c.int_(d, f"{f}.shape[{k}]", 0, MAX_DIM) for k, d in enumerate(dims)]
        off = c.int_(w["offset"], f"{f}.offset")
        if off % ALIGN or off + _nbytes(w["dtype"], shape) > weights_bytes:
            raise c.bad(f, f"(offset {off}) is not {ALIGN}-aligned or ends past weights_bytes {weights_bytes:,}")


def _mapping(c: _Ctx, raw: Any, field: str, most: int, value: Callable[[Any, str], Any]) -> None:
    if not isinstance(raw, dict) or len(raw) > most:
        raise c.bad(field, f"must be an object of at most {most} entries")
    for k, v in raw.items():
        if len(k) > 128:
            raise c.bad(field, f"has a key of {len(k)} characters")
        value(v, f"{field}[{k[:40]!r}]")


def check_manifest(raw: Any, where: str) -> None:
    """Refuse anything but a well-formed `wasm-torch/1` manifest (see the module docstring)."""
    c = _Ctx(where)
    if not isinstance(raw, dict):
        raise c.bad("the manifest", f"must be a JSON object, not {type(raw).__name__}")
    if raw.get("format") != FORMAT:
        got = str(raw.get("format"))[:40]
        raise ArtifactError(f"{where}: format {got!r}, this runtime reads {FORMAT!r}; {FIX}")
    c.obj(raw, "the manifest", REQUIRED, OPTIONAL)
    c.str_(raw["name"], "name", NAME_RE, "a model name (letters, digits, '_', '.', '-'; at most 128)")
    entry = c.str_(raw["entry"], "entry", IDENT_RE, "a C identifier")
    if entry in RESERVED_EXPORTS:
        raise c.bad("entry", f"= {entry!r} names a reserved export")
    mem = c.obj(raw["memory"], "memory", {"weights_bytes", "arena_bytes", "align"},
                {"arena_unplanned_bytes", "peak_live_bytes"})  # fmt: skip
    for k, v in mem.items():
        c.int_(v, f"memory.{k}")
    if mem["align"] != ALIGN:
        raise c.bad("memory.align", f"= {mem['align']}, the format uses {ALIGN}")
    if mem["weights_bytes"] + mem["arena_bytes"] > MAX_MEMORY_BYTES:
        raise c.bad("memory", "needs more than the 4 GiB a wasm32 module can address")
    syms = c.list_(raw.get("symbols", []), "symbols", MAX_SYMBOLS)
    names: set[str] = set()
    for i, s in enumerate(syms):
        f = f"symbols[{i}]"
        c.obj(s, f, {"name", "min", "max", "input", "axis"})
        n = c.str_(s["name"], f"{f}.name", IDENT_RE, "an identifier")
        if n in names or n in ("max", "min"):
            raise c.bad(f"{f}.name", f"{n!r} is repeated or reserved")
        names.add(n)
        c.int_(s["max"], f"{f}.max", c.int_(s["min"], f"{f}.min", 0, MAX_DIM), MAX_DIM)
        c.str_(s["input"], f"{f}.input", TENSOR_NAME_RE, "an input name")
        c.int_(s["axis"], f"{f}.axis", 0, MAX_RANK - 1)
    inputs = _tensors(c, raw["inputs"], "inputs", names)
    outputs = _tensors(c, raw["outputs"], "outputs", names)
    by_name = {t["name"]: t for t in inputs}
    for i, s in enumerate(syms):
        t = by_name.get(s["input"])
        if t is None or s["axis"] >= len(t["shape"]) or t["shape"][s["axis"]] != s["name"]:
            raise c.bad(
                f"symbols[{i}]", f"({s['name']!r}) is not the size of axis {s['axis']} of input {s['input']!r}"
            )
    for field, ts in (("inputs", inputs), ("outputs", outputs)):
        for i, t in enumerate(ts):
            _extent(c, t, f"{field}[{i}]", syms, mem["arena_bytes"])
    _files(c, raw["files"], mem["weights_bytes"])
    if "state" in raw or "generator" in raw:  # a text generator's KV cache and description (generation.py)
        from .generation import check_generation

        check_generation(c, raw, syms, mem["arena_bytes"], _tensors, _extent)
    if "weights" in raw:
        _weights(c, raw["weights"], mem["weights_bytes"])
    if "ops" in raw:
        _mapping(c, raw["ops"], "ops", 4096, lambda v, f: c.int_(v, f, 0, MAX_DIM))
    if "work" in raw:

        def work(v: Any, f: str) -> None:
            _ = c.int_(v, f, 0, 1 << 62) if type(v) is int else parse_dim(v, names)

        _mapping(c, raw["work"], "work", 64, work)
    if "index_inputs" in raw:
        inames = set(by_name)

        def index_input(v: Any, f: str) -> None:
            c.int_(v, f, 1, MAX_DIM)

        _mapping(c, raw["index_inputs"], "index_inputs", MAX_TENSORS, index_input)
        extra = sorted(set(raw["index_inputs"]) - inames)
        if extra:
            raise c.bad("index_inputs", f"names inputs the model does not have: {extra[:8]}")
    for k in ("compiler", "validation", "tuning"):
        if k in raw and not isinstance(raw[k], dict):
            raise c.bad(k, f"must be an object, not {type(raw[k]).__name__}")
