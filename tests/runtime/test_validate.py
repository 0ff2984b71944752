"""The module checks before any call (items 2 and 3), and the limits that hold during a call.

The entry is called without per-call type checks, so its exact type is checked at load; the limits
(memory cap, no tables, one memory, one instance) are store limits set before instantiation, so
what a module does inside a call — grow memory, loop — stays within them."""

from __future__ import annotations

import numpy as np
import pytest
import wasmtime

import wasm_torch
from wasm_torch.errors import ArtifactError, DeadlineExceeded, MemoryLimitError
from wasm_torch.runtime.validate import check_compiled, check_memory, check_module, read_wasm


def test_the_hand_written_module_passes_and_runs(corpus, tmp_path):
    info = read_wasm(corpus.wat(), "m.wasm")
    assert check_module(info, "wt_run", 1, "m.wasm") == 65536 and info.memory == (2, None)
    m = wasm_torch.load(corpus.write_base(tmp_path / "a"))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(m(x), 2 * x)
    assert m.memory_bytes == 2 * 65536


@pytest.mark.parametrize("params, results", [
    ("(param i32 i32)", "(result i32)"),
    ("(param i32 i32 i32 i32)", "(result i32)"),
    ("(param funcref i32 i32)", "(result i32)"),
    ("(param externref i32 i32)", "(result i32)"),
    ("(param i32 i32 f32)", "(result i32)"),
    ("(param i32 i32 i32)", "(result i64)"),
    ("(param i32 i32 i32)", ""),
])  # fmt: skip
def test_entry_type_must_match_the_manifest(corpus, params, results):
    body = "(i32.const 0)" if results == "(result i32)" else ("(i64.const 0)" if "i64" in results else "")
    wasm = corpus.wat(params=params, result=results, body=body)
    with pytest.raises(ArtifactError, match=r"does not match the manifest.*\(i32, i32, i32\) -> \(i32\)"):
        check_module(read_wasm(wasm, "m.wasm"), "wt_run", 1, "m.wasm")


def test_wasmtime_agrees_on_the_entry_type(corpus):
    eng = wasmtime.Engine()
    check_compiled(wasmtime.Module(eng, corpus.wat()), "wt_run", 1, "m")
    with pytest.raises(ArtifactError, match="does not match"):
        check_compiled(wasmtime.Module(eng, corpus.wat()), "wt_run", 2, "m")


def test_memory_declarations_are_bounded(corpus):
    info = read_wasm(corpus.wat(memory='(memory (export "memory") 300)'), "m")
    with pytest.raises(ArtifactError, match="over the memory cap"):
        check_memory(info, need=2 * 65536, cap=16 << 20, where="m")
    info = read_wasm(corpus.wat(memory='(memory (export "memory") 1 1)'), "m")
    with pytest.raises(ArtifactError, match="maximum"):
        check_memory(info, need=2 * 65536, cap=16 << 20, where="m")


def test_growing_memory_inside_a_call_stops_at_the_cap(corpus, tmp_path):
    """memory.grow by 1 GiB in the entry: the store limit (set before instantiation) makes it fail (-1)."""
    body = "(i32.store (i32.const 0) (memory.grow (i32.const 16384))) (i32.const 0)"
    folder = corpus.write_base(tmp_path / "g", wasm=corpus.wat(body=body))
    m = wasm_torch.load(folder, memory_limit=4 << 20)
    m(np.zeros((1, 4), np.float32))
    assert np.frombuffer(m._buf, np.int32, 1, 0)[0] == -1
    assert m._mem.data_len(m.store) <= 4 << 20
    with pytest.raises(MemoryLimitError, match="needs 131,072 bytes"):
        wasm_torch.load(folder, memory_limit=65536)


def test_an_entry_that_loops_is_stopped_by_the_deadline_and_stays_usable(corpus, tmp_path):
    body = "(loop $l (br $l)) (i32.const 0)"
    m = wasm_torch.load(corpus.write_base(tmp_path / "loop", wasm=corpus.wat(body=body)), deadline=0.05)
    for _ in range(2):
        with pytest.raises(DeadlineExceeded):
            m(np.zeros((1, 4), np.float32))


def test_the_engine_refuses_proposals_a_model_never_uses(corpus):
    from wasm_torch.runtime import engine

    eng = engine.engine(False, False)
    for wat in ["(module (memory 1) (memory 1))", "(module (memory i64 1))", "(module (tag))",
                "(module (memory 1 2 shared))", "(module (type (struct)))"]:  # fmt: skip
        with pytest.raises(wasmtime.WasmtimeError):
            wasmtime.Module.validate(eng, wasmtime.wat2wasm(wat))


def test_outputs_are_checked_against_the_arena_at_every_call(corpus, tmp_path):
    """An output shape in range at the symbol bounds (checked at load) but not in between (a
    non-monotonic expression) is caught when the view is made: never a read past the arena."""
    m = corpus.manifest()
    m["outputs"][0]["shape"] = ["batch", "((((batch - 1) * (8 - batch)) * 1000) + 4)"]  # 4 at 1 and 8
    mod = wasm_torch.load(corpus.write_base(tmp_path / "o", m=m))
    np.testing.assert_array_equal(mod(np.ones((1, 4), np.float32)), 2 * np.ones((1, 4), np.float32))
    with pytest.raises(ArtifactError, match="outside the arena"):
        mod(np.ones((4, 4), np.float32))
    m["outputs"][0]["shape"] = ["batch", "(batch - 2)"]  # negative at batch = 1
    with pytest.raises(ArtifactError, match="negative size"):
        wasm_torch.load(corpus.write_base(tmp_path / "n", m=m))
