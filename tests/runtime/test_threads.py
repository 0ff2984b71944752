"""Intra-op threads and build variants in the Python runtime: every zoo model gives bit-identical
outputs at 1, 2 and 3 threads (and equal to model.wasm), more than one thread really works, the
weights live once, and failures (deadline, bad index, a closed module, bad arguments) are clear
errors after which the module keeps working."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

import wasm_torch
from wasm_torch.compiler.check import compare, reference_outputs
from wasm_torch.errors import DeadlineExceeded, IndexOutOfRange, MemoryLimitError, ThreadsError
from wasm_torch.runtime import ThreadsUnavailableWarning, VariantModule, WasmModule
from wasm_torch.zoo import ZOO, build

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def _outs(mod, xs):
    got = mod(*xs)
    return list(got) if isinstance(got, tuple) else [got]


def _same_bits(a, b) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
                                    for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_bit_identical_across_thread_counts(name, artifacts):
    model, example, dyn = build(name)
    art = artifacts(name, model, example, dyn)
    xs = [x.numpy() for x in ZOO[name].inputs(torch.Generator().manual_seed(21))]
    plain = _outs(WasmModule(art), xs)
    for threads in (1, 2, 3):
        with VariantModule(art, variant="simd128-threads", threads=threads) as m:
            for _ in range(2):  # the second call runs with warm helpers
                assert _same_bits(_outs(m, xs), plain), (name, threads)


class Wide(nn.Module):
    """Several GEMMs, a layer norm, a softmax and large elementwise steps: many parallel steps."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(256, 512), nn.Linear(512, 256)
        self.norm = nn.LayerNorm(256)

    def forward(self, x):
        h = torch.relu(self.a(x)) * 0.5 + 1.0
        return torch.softmax(self.norm(self.b(h) + x), dim=-1)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    torch.manual_seed(0)
    x = torch.randn(96, 256)
    art = wasm_torch.compile(Wide(), (x,), tmp_path_factory.mktemp("w") / "wide", dynamic_shapes=(
        {0: Dim("rows", min=1, max=512)},), options=wasm_torch.CompileOptions(relaxed=True))
    return art, x.numpy()


def test_more_than_one_thread_runs_and_results_stay_identical(wide):
    art, x = wide
    plain = WasmModule(art)(x)
    with VariantModule(art, variant="simd128-threads", threads=3) as m:
        m.thread_stats(clear=True)
        for _ in range(20):
            assert m(x).tobytes() == plain.tobytes()
        st = m.thread_stats()
    assert st["threads"] == 3 and st["jobs"] >= 20 * 4
    assert sum(st["chunks"][1:]) > 0, st  # the helpers claimed chunks: the work was really shared
    for rows in (1, 7, 333):  # dynamic sizes cut into other chunk counts
        xr = np.random.default_rng(rows).standard_normal((rows, 256)).astype(np.float32)
        with VariantModule(art, variant="simd128-threads", threads=2) as m:
            assert m(xr).tobytes() == WasmModule(art)(xr).tobytes(), rows


def test_relaxed_builds_agree_across_threads_and_with_torch(wide):
    art, x = wide
    got = {}
    for variant, threads in (("relaxed", 1), ("relaxed-threads", 2), ("relaxed-threads", 3)):
        with VariantModule(art, variant=variant, threads=threads) as m:
            got[(variant, threads)] = m(x)
    first = got[("relaxed", 1)]
    assert all(v.tobytes() == first.tobytes() for v in got.values())  # threads never change results
    torch.manual_seed(0)  # the fixture's order: its input first, then the model
    assert torch.randn(96, 256).numpy().tobytes() == x.tobytes()
    want = reference_outputs(Wide(), (torch.from_numpy(x),))
    assert compare([first], want, 1e-4, 1e-3)["ok"]


def test_load_picks_a_build_and_thread_count(wide):
    art, x = wide
    m = wasm_torch.load(art, threads=2)
    assert isinstance(m, VariantModule) and m.threads == 2 and m.spec.name == "relaxed-threads"  # auto
    assert m.stats()["threads"] == 2 and m.stats()["variant"] == m.spec.name
    det = wasm_torch.load(art, threads=2, variant="simd128")
    assert det.spec.name == "simd128-threads" and det(x).tobytes() == WasmModule(art)(x).tobytes()
    one = wasm_torch.load(art, threads=1, variant="simd128")
    assert type(one) is WasmModule  # threads=1, deterministic: exactly today's path
    for m_ in (m, det):
        m_.close()


def test_weights_live_once(wide):
    art, _ = wide
    sizes = {}
    for threads in (1, 4):
        with VariantModule(art, variant="simd128-threads", threads=threads) as m:
            sizes[threads] = m.memory_bytes
            stack = m.spec.stack_bytes
    extra = sizes[4] - sizes[1]
    assert extra < 3 * stack + 65536 + 16, (sizes, stack)  # three more stacks, not three more weight copies
    assert art.manifest.weights_bytes > 0


def test_no_threaded_build_falls_back_with_a_warning(tmp_path):
    torch.manual_seed(0)
    art = wasm_torch.compile(nn.Linear(8, 4), (torch.randn(2, 8),), tmp_path / "single",
                             options=wasm_torch.CompileOptions(threads=False, relaxed=False))
    assert sorted(p.name for p in art.path.glob("*.wasm")) == ["model.wasm"]
    with pytest.warns(ThreadsUnavailableWarning, match="ONE thread, not 2.*no threaded build"):
        m = wasm_torch.load(art, threads=2)
    assert type(m) is WasmModule
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wasm_torch.load(art)  # the default thread count falls back silently


def test_bad_arguments_are_clear(wide):
    art, _ = wide
    for bad in (0, 65, -1, True, 2.0, "2"):
        with pytest.raises(ThreadsError, match="threads="):
            wasm_torch.load(art, threads=bad)
    with pytest.raises(ThreadsError, match="no 'avx512' build"):
        wasm_torch.load(art, variant="avx512")
    with pytest.raises(ThreadsError, match="single-threaded"):
        wasm_torch.load(art, threads=2, variant="relaxed")
    with pytest.raises(ThreadsError, match="fuel"):
        wasm_torch.load(art, threads=2, fuel=10**9)
    assert wasm_torch.load(art, fuel=10**12).fuel == 10**12  # fuel alone: one thread
    with pytest.raises(MemoryLimitError, match="worker stacks"):
        VariantModule(art, variant="simd128-threads", threads=4, memory_limit=WasmModule(art).memory_bytes)


def test_deadline_and_bad_index_leave_the_pool_usable(tmp_path):
    torch.manual_seed(0)

    class Embed(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.fc = nn.Embedding(100, 512), nn.Sequential(*[nn.Linear(512, 512) for _ in range(6)])

        def forward(self, ids):
            return self.fc(self.emb(ids))

    ids = torch.randint(0, 100, (256,))
    art = wasm_torch.compile(Embed(), (ids,), tmp_path / "embed")
    ref = WasmModule(art)(ids.numpy())
    m = VariantModule(art, variant="simd128-threads", threads=2, deadline=1e-4)
    for _ in range(3):
        with pytest.raises(DeadlineExceeded):
            m(ids.numpy())
    m.deadline = 60.0
    assert m(ids.numpy()).tobytes() == ref.tobytes()
    bad = ids.numpy().copy()
    bad[7] = 100
    with pytest.raises(IndexOutOfRange, match="position"):
        m(bad)
    assert m(ids.numpy()).tobytes() == ref.tobytes()
    m.close()
    with pytest.raises(ThreadsError, match="closed"):
        m(ids.numpy())


def test_closing_stops_every_helper_thread(wide):
    art, x = wide
    before = threading.active_count()
    mods = [VariantModule(art, variant="simd128-threads", threads=3) for _ in range(3)]
    assert threading.active_count() == before + 6
    for m in mods:
        m(x)
        m.close()
    for t in threading.enumerate():
        if t.name.startswith("wasm-torch-wide-"):
            t.join(timeout=10)
    assert threading.active_count() == before
