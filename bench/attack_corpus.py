"""A corpus of hand-made malicious artifact folders, built from scratch (wasmtime.wat2wasm + JSON).

`build(root)` writes one folder per case under `root` and returns the cases: name, folder, the
`wasm_torch.load` options to use (some cases need trusted keys, a memory limit or a release store)
and what it attacks. Every case except `valid` must be refused with an ArtifactError (or a subclass:
IntegrityError, SignatureError, DecryptionError, KeyringError); `valid` must load and compute y = 2x.

The base artifact is a tiny module written by hand in WAT (y[i] = x[i] * w[0], with a dynamic batch
dimension), so the corpus needs no compiler. Each case changes one thing and then — unless the
case is about hashes — rewrites the manifest's sha256 entries, so only the runtime's own checks
stand between it and the process (the situation of an unsigned artifact, or a compromised signer).
Used by bench/attack_artifacts.py (the counts for the closing note) and tests/runtime/test_attack_corpus.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

BODY = """
    (local $i i32) (local $n i32)
    (local.set $n (i32.mul (local.get $batch) (i32.const 4)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (f32.store offset=128 (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2)))
        (f32.mul (f32.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2))))
                 (f32.load (local.get $w))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 0)"""
PARAMS = "(param $w i32) (param $a i32) (param $batch i32)"
MEMORY = '(memory (export "memory") 2)'
GLOBALS = ('(global (export "__stack_pointer") (mut i32) (i32.const 65536))\n'
           '  (global (export "__heap_base") i32 (i32.const 65536))')  # fmt: skip


def wat(*, memory: str = MEMORY, globals_: str = GLOBALS, params: str = PARAMS, result: str = "(result i32)",
        body: str = BODY, entry: str = "wt_run", extra: str = "", head: str = "") -> bytes:  # fmt: skip
    return wasmtime.wat2wasm(
        f'(module\n  {head}\n  {memory}\n  {globals_}\n  (func (export "{entry}") {params} {result} {body})\n  {extra})'
    )


def manifest() -> dict[str, Any]:
    return {
        "format": "wasm-torch/1",
        "name": "valid",
        "entry": "wt_run",
        "compiler": {"hand": "written"},
        "symbols": [{"name": "batch", "min": 1, "max": 8, "input": "x", "axis": 0}],
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4], "offset": 0}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 4], "offset": 128}],
        "memory": {"weights_bytes": 64, "arena_bytes": 256, "align": 64},
        "weights": [{"name": "scale", "dtype": "float32", "shape": [1], "offset": 0}],
        "files": {"model.wasm": {}, "weights.bin": {}},
    }


WEIGHTS = np.array([2.0] + [0.0] * 15, np.float32).tobytes()


@dataclass
class Case:
    name: str
    folder: Path
    attack: str
    options: dict[str, Any] = field(default_factory=dict)
    expect: str = "refused"  # or "ok" for the control


def rehash(folder: Path) -> None:
    """Recompute files[*] for listed regular files, keeping the manifest's other bytes as they are."""
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    for name in list(m.get("files", {})):
        p = folder / name
        if isinstance(m["files"][name], dict) and p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    path.write_text(json.dumps(m, indent=1))


def write_base(folder: Path, wasm: bytes | None = None, m: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.wasm").write_bytes(wat() if wasm is None else wasm)
    (folder / "weights.bin").write_bytes(WEIGHTS)
    (folder / "manifest.json").write_text(json.dumps(manifest() if m is None else m, indent=1))
    rehash(folder)
    return folder


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# ---- the cases -----------------------------------------------------------------------------------
def _module_cases() -> dict[str, tuple[str, bytes]]:
    """name -> (attack, module bytes); each is paired with the valid manifest."""
    ret0 = "(i32.const 0)"
    raw = wat()
    payload = b"\x04junk" + b"\0" * (2 << 20)
    big = raw + b"\x00" + _leb(len(payload)) + payload  # a 2 MiB custom section
    return {
        "entry_dropped_symbol_param": ("entry takes (i32, i32): one symbol fewer than the manifest",
                                       wat(params="(param i32 i32)", body=ret0)),
        "entry_extra_param": ("entry takes an extra i32", wat(params="(param i32 i32 i32 i32)", body=ret0)),
        "entry_extra_result": ("entry returns two values", wat(params=PARAMS, result="(result i32 i32)",
                                                              body="(i32.const 0) (i32.const 0)")),
        "entry_no_result": ("entry returns nothing", wat(result="", body="")),
        "entry_funcref_param": ("entry's first parameter is a funcref", wat(params="(param funcref i32 i32)", body=ret0)),
        "entry_externref_param": ("entry's first parameter is an externref",
                                  wat(params="(param externref i32 i32)", body=ret0)),
        "entry_i64_param": ("entry takes an i64", wat(params="(param i64 i32 i32)", body=ret0)),
        "entry_v128_param": ("entry takes a v128", wat(params="(param v128 i32 i32)", body=ret0)),
        "entry_f64_result": ("entry returns f64", wat(result="(result f64)", body="(f64.const 0)")),
        "entry_funcref_result": ("entry returns a funcref", wat(result="(result funcref)", body="(ref.null func)")),
        "entry_missing": ("no export named wt_run", wat(entry="other")),
        "entry_is_a_global": ("wt_run is exported as a global", wat(entry="f", extra='(global (export "wt_run") i32 (i32.const 0))')),
        "memory_not_exported": ("memory is not exported", wat(memory="(memory 2)")),
        "memory_exported_twice": ("an extra export of the memory", wat(memory='(memory (export "memory") (export "mem2") 2)')),
        "heap_base_missing": ("no __heap_base", wat(globals_='(global (export "__stack_pointer") (mut i32) (i32.const 0))')),
        "heap_base_mutable": ("__heap_base is mutable", wat(globals_='(global (export "__stack_pointer") (mut i32) (i32.const 0)) (global (export "__heap_base") (mut i32) (i32.const 65536))')),
        "heap_base_i64": ("__heap_base is an i64", wat(globals_='(global (export "__stack_pointer") (mut i32) (i32.const 0)) (global (export "__heap_base") i64 (i64.const 65536))')),
        "heap_base_negative": ("__heap_base = -64", wat(globals_='(global (export "__stack_pointer") (mut i32) (i32.const 0)) (global (export "__heap_base") i32 (i32.const -64))')),
        "heap_base_2gib": ("__heap_base at 2 GiB - 64 KiB", wat(globals_='(global (export "__stack_pointer") (mut i32) (i32.const 0)) (global (export "__heap_base") i32 (i32.const 0x7fff0000))')),
        "stack_pointer_immutable": ("__stack_pointer is immutable", wat(globals_='(global (export "__stack_pointer") i32 (i32.const 0)) (global (export "__heap_base") i32 (i32.const 65536))')),
        "extra_function_export": ("an extra exported function", wat(extra='(func (export "evil") (result i32) (i32.const 1))')),
        "start_loops_forever": ("a start function that never returns", wat(extra="(func $s (loop $l (br $l))) (start $s)")),
        "start_fills_1gib": ("a start function filling 1 GiB of initial memory",
                             wat(memory='(memory (export "memory") 16384)',
                                 extra="(func $s (memory.fill (i32.const 0) (i32.const 7) (i32.const 0x40000000))) (start $s)")),
        "start_trivial": ("any start function at all", wat(extra="(func $s) (start $s)")),
        "import_function": ("imports a host function", wat(head='(import "env" "f" (func))')),
        "import_memory": ("imports its memory", wat(memory="", head='(import "env" "memory" (memory 2))')),
        "import_global": ("imports a global", wat(head='(import "env" "g" (global i32))')),
        "two_memories": ("two memories (multi-memory)", wat(extra="(memory 1)")),
        "initial_memory_1gib": ("1 GiB initial memory under a 16 MiB cap", wat(memory='(memory (export "memory") 16384)')),
        "memory_max_below_need": ("memory maximum below the planned size", wat(memory='(memory (export "memory") 1 1)')),
        "shared_memory": ("a shared memory", wat(memory='(memory (export "memory") 2 4 shared)')),
        "memory64": ("a 64-bit memory", wat(memory='(memory (export "memory") i64 2)')),
        "custom_page_size": ("1-byte pages", wat(memory='(memory (export "memory") 131072 (pagesize 1))')),
        "table_declared": ("declares a table", wat(extra="(table 10 funcref)")),
        "table_50m_initial": ("a table of 50 M entries", wat(extra="(table 50000000 funcref)")),
        "table_grown_50m": ("grows a table by 50 M entries on every call",
                            wat(body="(drop (table.grow (ref.null func) (i32.const 50000000))) (i32.const 0)",
                                extra="(table 1 funcref)")),
        "element_segment": ("an element segment", wat(extra="(table 1 funcref) (func $f) (elem (i32.const 0) $f)")),
        "exception_tag": ("an exception tag", wat(extra="(tag)")),
        "gc_struct_type": ("a GC struct type", wat(extra="(type (struct (field i32)))")),
        "data_out_of_bounds": ("a data segment at 2 GiB", wat(extra='(data (i32.const 0x7fffffff) "abc")')),
        "many_functions": ("5,000 functions", wat(extra=" ".join("(func)" for _ in range(5000)))),
        "truncated": ("the module cut in half (hash matches the cut file)", raw[: len(raw) // 2]),
        "not_wasm": ("a text file named model.wasm", b"#!/bin/sh\necho pwned\n"),
        "component": ("a component, not a core module", b"\0asm\x0d\x00\x01\x00"),
        "unknown_section": ("section id 99", raw + b"\x63\x01\x00"),
        "overlong_leb": ("a section size with 6 LEB bytes", raw[:8] + b"\x01\x80\x80\x80\x80\x80\x00"),
        "oversized_module": ("a 2 MiB module (limit 1 MiB)", big),
        "empty_module_file": ("an empty model.wasm", b""),
    }


def _manifest_edits() -> dict[str, tuple[str, Callable[[dict[str, Any]], Any]]]:
    def sym(**kw: Any) -> Callable[[dict[str, Any]], Any]:
        return lambda m: m["symbols"][0].update(kw)

    def set_path(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
        def edit(m: dict[str, Any]) -> None:
            *parts, last = path.split(".")
            d: Any = m
            for p in parts:
                d = d[int(p)] if p.isdigit() else d[p]
            d[int(last) if last.isdigit() else last] = value

        return edit

    return {
        "dropped_symbol": ("symbols removed, shapes still use it", set_path("symbols", [])),
        "dropped_symbol_static_shapes": ("symbols removed and shapes made static: the entry takes one param too many",
                                         lambda m: (m.update(symbols=[]), m["inputs"][0].update(shape=[2, 4]),
                                                    m["outputs"][0].update(shape=[2, 4]))),
        "output_shape_past_arena": ("output shape [batch, 4000000]", set_path("outputs.0.shape", ["batch", 4000000])),
        "input_offset_past_arena": ("input at offset 1 MiB", set_path("inputs.0.offset", 1 << 20)),
        "offset_2_pow_40": ("output at 2**40", set_path("outputs.0.offset", 1 << 40)),
        "negative_offset": ("input offset -64", set_path("inputs.0.offset", -64)),
        "unaligned_offset": ("output offset 130", set_path("outputs.0.offset", 130)),
        "negative_weights_bytes": ("weights_bytes -64", set_path("memory.weights_bytes", -64)),
        "arena_2_pow_40": ("arena_bytes 2**40", set_path("memory.arena_bytes", 1 << 40)),
        "int_4300_digits": ("arena_bytes with 4,300 digits", set_path("memory.arena_bytes", int("9" * 4300))),
        "int_25_digits": ("arena_bytes with 25 digits", set_path("memory.arena_bytes", 10**24)),
        "float_for_int": ("arena_bytes 256.0", set_path("memory.arena_bytes", 256.0)),
        "bool_for_int": ("align true", set_path("memory.align", True)),
        "string_for_int": ("symbol max '8'", sym(max="8")),
        "symbol_min_above_max": ("symbol min 9 > max 8", sym(min=9)),
        "symbol_max_huge": ("symbol max 2**40", sym(max=1 << 40)),
        "symbol_axis_out_of_rank": ("symbol axis 5", sym(axis=5)),
        "symbol_unknown_input": ("symbol of an input that does not exist", sym(input="nope")),
        "symbol_duplicated": ("the same symbol twice", lambda m: m["symbols"].append(dict(m["symbols"][0]))),
        "symbol_wrong_type": ("symbols is a dict", set_path("symbols", {"batch": 1})),
        "unknown_top_level_key": ("an extra top-level key", set_path("run_me", "rm -rf /")),
        "missing_files": ("no files section", lambda m: m.pop("files")),
        "missing_entry": ("no entry", lambda m: m.pop("entry")),
        "wrong_format": ("format wasm-torch/0", set_path("format", "wasm-torch/0")),
        "manifest_is_a_list": ("the manifest is a JSON list", lambda m: [m]),
        "name_with_slash": ("name '../../etc'", set_path("name", "../../etc")),
        "name_empty": ("empty name", set_path("name", "")),
        "entry_reserved": ("entry 'memory'", set_path("entry", "memory")),
        "entry_not_identifier": ("entry 'wt run; rm'", set_path("entry", "wt run; rm")),
        "dtype_object": ("dtype 'object'", set_path("inputs.0.dtype", "object")),
        "dtype_list": ("dtype is a list", set_path("outputs.0.dtype", ["float32"])),
        "shape_python_code": ("shape \"__import__('os').system('x')\"", set_path("inputs.0.shape", ["batch", "__import__('os').system('x')"])),
        "shape_pow": ("shape 'batch ** 99999'", set_path("outputs.0.shape", ["batch", "batch ** 99999"])),
        "shape_deep_parens": ("shape with 5,000 nested parentheses", set_path("outputs.0.shape", ["batch", "(" * 5000 + "4" + ")" * 5000])),
        "shape_long_sum": ("shape of 3,000 terms", set_path("outputs.0.shape", ["batch", "+".join(["1"] * 3000)])),
        "shape_div_zero": ("shape '(batch // 0)'", set_path("outputs.0.shape", ["batch", "(batch // 0)"])),
        "shape_huge_product": ("shape 'batch * 99999999999999999'", set_path("outputs.0.shape", ["batch", "(batch * 99999999999999999)"])),
        "shape_negative": ("shape '(batch - 100)'", set_path("outputs.0.shape", ["(batch - 100)", 4])),
        "shape_unknown_symbol": ("shape over an undeclared symbol", set_path("outputs.0.shape", ["seq", 4])),
        "rank_100": ("rank 100", set_path("outputs.0.shape", [1] * 100)),
        "inputs_100k": ("100,000 inputs", lambda m: m.update(inputs=[dict(m["inputs"][0], name=f"x{i}") for i in range(100000)])),
        "duplicate_input_names": ("two inputs named x", lambda m: m["inputs"].append(dict(m["inputs"][0], offset=64))),
        "files_dotdot": ("files lists '../../x'", lambda m: m["files"].update({"../../x": {"sha256": "0" * 64, "bytes": 1}})),
        "files_absolute": ("files lists '/etc/passwd'", lambda m: m["files"].update({"/etc/passwd": {"sha256": "0" * 64, "bytes": 1}})),
        "files_dev_zero": ("files lists '/dev/zero'", lambda m: m["files"].update({"/dev/zero": {"sha256": "0" * 64, "bytes": 1 << 40}})),
        "files_subdir": ("files lists 'sub/x'", lambda m: m["files"].update({"sub/x": {"sha256": "0" * 64, "bytes": 1}})),
        "files_bad_sha": ("sha256 'not-hex'", lambda m: m["files"]["weights.bin"].update(sha256="not-hex")),
        "files_claims_1tb_wasm": ("model.wasm claimed 1 TB", lambda m: m["files"]["model.wasm"].update(bytes=1 << 40)),
        "weights_bytes_disagree": ("files bytes 32, memory.weights_bytes 64", lambda m: m["files"]["weights.bin"].update(bytes=32)),
        "weights_entry_past_end": ("a weight entry past weights_bytes", set_path("weights.0.offset", 1 << 20)),
        "index_inputs_bad": ("index_inputs names a missing input", set_path("index_inputs", {"nope": 10})),
    }


TEXT_EDITS: dict[str, tuple[str, Callable[[str], bytes]]] = {
    "duplicate_top_level_key": ("two 'entry' keys", lambda t: t.replace('"entry": "wt_run"', '"entry": "wt_run", "entry": "evil"', 1).encode()),
    "duplicate_nested_key": ("two 'offset' keys in an input", lambda t: t.replace('"offset": 0', '"offset": 0, "offset": 4096', 1).encode()),
    "nan_constant": ("NaN as a number", lambda t: t.replace('"align": 64', '"align": NaN', 1).encode()),
    "infinity_constant": ("Infinity", lambda t: t.replace('"align": 64', '"align": Infinity', 1).encode()),
    "float_overflow": ("1e999", lambda t: t.replace('"align": 64', '"align": 1e999', 1).encode()),
    "trailing_garbage": ("bytes after the JSON", lambda t: (t + "\n}{ garbage").encode()),
    "utf8_bom": ("a UTF-8 BOM", lambda t: b"\xef\xbb\xbf" + t.encode()),
    "not_utf8": ("Latin-1 bytes", lambda t: t.replace('"valid"', '"v\xe9lid"').encode("latin-1")),
    "deep_nesting": ("100,000 nested lists", lambda t: t.replace('"compiler": {', '"deep": ' + "[" * 100000 + "]" * 100000 + ', "compiler": {', 1).encode()),
    "huge_manifest": ("a 17 MiB manifest", lambda t: t.replace('"hand": "written"', '"hand": "' + "x" * (17 << 20) + '"', 1).encode()),
    "empty_manifest": ("an empty manifest", lambda t: b""),
}


def _fs_cases(root: Path, outside: Path) -> dict[str, tuple[str, Callable[[Path], None]]]:
    """Cases about what the listed names point at (built on a valid folder)."""

    def link(name: str, target: Path | str) -> Callable[[Path], None]:
        def edit(f: Path) -> None:
            (f / name).unlink()
            os.symlink(target, f / name)

        return edit

    def fifo(name: str) -> Callable[[Path], None]:
        def edit(f: Path) -> None:
            (f / name).unlink()
            os.mkfifo(f / name)

        return edit

    def directory(name: str) -> Callable[[Path], None]:
        def edit(f: Path) -> None:
            (f / name).unlink()
            (f / name).mkdir()

        return edit

    def extra_file(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
        def edit(f: Path) -> None:
            make(f / name)
            m = json.loads((f / "manifest.json").read_text())
            m["files"][name] = {"sha256": hashlib.sha256(b"").hexdigest(), "bytes": 0}
            (f / "manifest.json").write_text(json.dumps(m, indent=1))

        return edit

    return {
        "wasm_symlink_outside": ("model.wasm links to a valid module outside the folder", link("model.wasm", outside / "model.wasm")),
        "weights_symlink_outside": ("weights.bin links outside the folder", link("weights.bin", outside / "weights.bin")),
        "manifest_symlink_outside": ("manifest.json links outside the folder", link("manifest.json", outside / "manifest.json")),
        "weights_symlink_dev_zero": ("weights.bin links to /dev/zero", link("weights.bin", "/dev/zero")),
        "wasm_symlink_dev_zero": ("model.wasm links to /dev/zero", link("model.wasm", "/dev/zero")),
        "weights_fifo": ("weights.bin is a FIFO", fifo("weights.bin")),
        "wasm_fifo": ("model.wasm is a FIFO", fifo("model.wasm")),
        "manifest_fifo": ("manifest.json is a FIFO", fifo("manifest.json")),
        "extra_listed_fifo": ("a listed data.bin that is a FIFO", extra_file("data.bin", os.mkfifo)),
        "extra_listed_dev_zero_link": ("a listed data.bin linking to /dev/zero", extra_file("data.bin", lambda p: os.symlink("/dev/zero", p))),
        "wasm_is_a_directory": ("model.wasm is a folder", directory("model.wasm")),
        "manifest_is_a_directory": ("manifest.json is a folder", directory("manifest.json")),
        "weights_missing": ("weights.bin missing", lambda f: (f / "weights.bin").unlink()),
        "wasm_missing": ("model.wasm missing", lambda f: (f / "model.wasm").unlink()),
        "wasm_tampered": ("one byte of model.wasm changed, hash not updated", lambda f: (f / "model.wasm").write_bytes(
            (f / "model.wasm").read_bytes()[:-1] + b"\x0a")),
        "weights_tampered": ("weights.bin changed, hash not updated", lambda f: (f / "weights.bin").write_bytes(b"\x7f" * 64)),
        "weights_grown": ("weights.bin 1 MiB longer than listed", lambda f: (f / "weights.bin").write_bytes(WEIGHTS + b"\0" * (1 << 20))),
        "encrypted_dev_zero": ("weights.bin.enc links to /dev/zero", lambda f: os.symlink("/dev/zero", f / "weights.bin.enc")),
        "encrypted_fifo": ("weights.bin.enc is a FIFO", lambda f: os.mkfifo(f / "weights.bin.enc")),
        "encrypted_garbage": ("weights.bin.enc is random bytes", lambda f: (f / "weights.bin.enc").write_bytes(os.urandom(4096))),
        "encrypted_huge_header": ("weights.bin.enc claims a 4 GiB header", lambda f: (f / "weights.bin.enc").write_bytes(
            b"WTENC/1\n" + (0xFFFFFFFF).to_bytes(4, "little") + b"{}")),
    }


def _uncanonical(b64: str) -> str:
    """The same bytes with a padding bit set: decodes identically, so only a canonical check notices."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    i = len(b64.rstrip("=")) - 1
    return b64[:i] + alphabet[alphabet.index(b64[i]) ^ 1] + b64[i + 1 :]


def _signed_cases(root: Path) -> list[Case]:
    """Signature attacks: loaded with trusted_keys (and a release store for the rollback case)."""
    from wasm_torch.integrity import signing

    key, stranger = signing.generate_key("ed25519"), signing.generate_key("ed25519")
    pub = signing.write_public_key(key, root / "keys" / "trusted.pub")
    store = root / "keys" / "releases.json"
    opts = {"trusted_keys": [str(pub)], "releases": str(store)}
    cases: list[Case] = []

    def make(name: str, attack: str, edit: Callable[[Path], None], **extra: Any) -> None:
        f = write_base(root / name, m=dict(manifest(), name=name))
        signing.sign_artifact(f, [key])
        edit(f)
        cases.append(Case(name, f, attack, {**opts, **extra}))

    sig = "signature.json"

    def rewrite(f: Path, change: Callable[[dict[str, Any]], Any], text: Callable[[str], str] = lambda t: t) -> None:
        doc = json.loads((f / sig).read_text())
        change(doc)
        (f / sig).write_text(text(json.dumps(doc)))

    make("sig_trailing_bytes", "bytes after signature.json's JSON", lambda f: (f / sig).write_bytes((f / sig).read_bytes() + b"x"))
    make("sig_trailing_space", "a space after signature.json's JSON", lambda f: (f / sig).write_bytes((f / sig).read_bytes() + b" "))
    make("sig_duplicate_key", "two 'release' keys", lambda f: rewrite(f, lambda d: None, lambda t: t.replace(
        '"release":', '"release": {"name": "x", "version": 99}, "release":', 1)))
    make("sig_duplicate_entry", "the same signature twice", lambda f: rewrite(f, lambda d: d["signatures"].append(d["signatures"][0])))
    make("sig_version1_format", "a version-1 signature.json (binds neither name nor version)", lambda f: (f / sig).write_text(
        json.dumps({"format": "wasm-torch-signature/1", "manifest_sha256": hashlib.sha256((f / "manifest.json").read_bytes()).hexdigest(),
                    "signatures": []})))
    make("sig_untrusted_key", "signed only by an untrusted key", lambda f: signing.sign_artifact(f, [stranger], version=2))
    make("sig_manifest_edited_after_signing", "manifest edited (and rehashed) after signing", lambda f: (
        (f / "manifest.json").write_text((f / "manifest.json").read_text().replace('"max": 8', '"max": 4'))))
    make("sig_symlink", "signature.json is a symbolic link", lambda f: (shutil.move(f / sig, f.parent / "keys" / "moved.json"),
                                                                    os.symlink(f.parent / "keys" / "moved.json", f / sig)))
    make("sig_fifo", "signature.json is a FIFO", lambda f: ((f / sig).unlink(), os.mkfifo(f / sig)))
    make("sig_huge", "a 300 KB signature.json", lambda f: (f / sig).write_bytes(b" " * 300_000 + (f / sig).read_bytes()))
    make("sig_bad_base64", "a signature in non-canonical base64 (same bytes, other padding bits)",
         lambda f: rewrite(f, lambda d: d["signatures"][0].update(sig=_uncanonical(d["signatures"][0]["sig"]))))
    # a valid signature by the trusted key over a statement that leaves manifest.json uncovered
    f = write_base(root / "sig_does_not_cover_manifest", m=dict(manifest(), name="sig_does_not_cover_manifest"))
    rel = signing.Release("sig_does_not_cover_manifest", 1)
    covers = {"pipeline.json": hashlib.sha256(b"{}").hexdigest()}
    raw = signing._raw_sign(key, signing.DOMAIN + signing.statement(rel, covers))
    doc = {"format": signing.FORMAT, "release": rel.to_json(), "covers": covers,
           "signatures": [{"alg": "ed25519", "key_id": signing.key_id(key), "sig": base64.b64encode(raw).decode()}]}
    from wasm_torch.artifact.strictjson import dumps_canonical

    (f / sig).write_bytes(dumps_canonical(doc) + b"\n")
    cases.append(Case(f.name, f, "signed statement does not cover manifest.json", dict(opts)))
    # two signed folders swapped: 'approve' holds what was signed as 'deny'
    deny = write_base(root / "deny", m=dict(manifest(), name="deny"))
    signing.sign_artifact(deny, [key])
    swapped = root / "approve"
    shutil.copytree(deny, swapped)
    shutil.rmtree(deny)
    cases.append(Case("sig_swapped_name", swapped, "a folder signed as 'deny' served as 'approve'", dict(opts)))
    # rollback: version 2 was seen, then version 1 (validly signed) is put back
    rb = write_base(root / "rollback", m=dict(manifest(), name="rollback"))
    signing.sign_artifact(rb, [key], version=2)
    signing.verify_release(rb, [pub], store=store)
    m = json.loads((rb / "manifest.json").read_text())
    m["symbols"][0]["max"] = 4
    (rb / "manifest.json").write_text(json.dumps(m, indent=1))
    signing.sign_artifact(rb, [key], version=1)
    cases.append(Case("sig_rollback", rb, "an older signed release after a newer one was seen", dict(opts)))
    unsigned = write_base(root / "sig_missing", m=dict(manifest(), name="sig_missing"))
    cases.append(Case("sig_missing", unsigned, "unsigned, signatures required", dict(opts)))
    good = write_base(root / "signed_valid", m=dict(manifest(), name="signed_valid"))
    signing.sign_artifact(good, [key], version=3)
    cases.append(Case("signed_valid", good, "control: signed, trusted, newest release", dict(opts), expect="ok"))
    return cases


def build(root: str | os.PathLike[str]) -> list[Case]:
    """Write every case under `root` (which must not exist or be empty); returns them, `valid` first."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = [Case("valid", write_base(root / "valid"), "control: must load and compute y = 2x", expect="ok")]
    for name, (attack, wasm) in _module_cases().items():
        cases.append(Case(name, write_base(root / name, wasm=wasm), attack,
                          {"memory_limit": 16 << 20} if "1gib" in name else {}))  # fmt: skip
    for name, (attack, edit) in _manifest_edits().items():
        f = write_base(root / name)
        m = json.loads((f / "manifest.json").read_text())  # with the real hashes
        out = edit(m)
        (f / "manifest.json").write_text(json.dumps(out if isinstance(out, list) else m, indent=1))
        cases.append(Case(name, f, attack))
    for name, (attack, text_edit) in TEXT_EDITS.items():
        f = write_base(root / name)
        (f / "manifest.json").write_bytes(text_edit((f / "manifest.json").read_text()))
        cases.append(Case(name, f, attack))
    outside = write_base(root / "_outside")
    for name, (attack, fs_edit) in _fs_cases(root, outside).items():
        f = write_base(root / name)
        fs_edit(f)
        cases.append(Case(name, f, attack))
    cases += _signed_cases(root)
    return cases


def worst_case(root: str | os.PathLike[str]) -> list[Case]:
    """The largest modules the validator accepts (MAX_WASM_BYTES, 4,096 functions): how long can a
    load take? Expected to load (expect="load"); the runner times them."""
    from wasm_torch.artifact.layout import MAX_WASM_BYTES

    root = Path(root)
    ret = "(i32.const 0)"
    per = MAX_WASM_BYTES // 4096 - 64  # bytes of code per function, under the module size limit
    drops = "(drop (i32.const 1)) " * (per // 3)
    many = wat(body=ret, extra=" ".join(f"(func {drops})" for _ in range(4094)))
    depth = (MAX_WASM_BYTES - 4096) // 3  # block (2 bytes) ... end (1 byte)
    nested = wat(body="block " * depth + "end " * depth + ret)
    return [
        Case("largest_many_functions", write_base(root / "largest_many_functions", wasm=many),
             f"{len(many):,}-byte module of 4,095 functions", expect="load"),
        Case("largest_nested_blocks", write_base(root / "largest_nested_blocks", wasm=nested),
             f"{len(nested):,}-byte module: one function of {depth:,} nested blocks", expect="load"),
    ]
