"""The compile side of intra-op threads and build variants: the options, the generated parallel
loops and task dispatcher, the variant files and their manifest record, the threaded build's exact
shape, and every kernel's parallel split bit-identical at 1-4 threads on awkward shapes (odd sizes,
partial panels, many and few chunks, the depthwise stack and arena paths, causal attention over
several query chunks)."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

import wasm_torch
from wasm_torch.compiler import CompileOptions, lower
from wasm_torch.compiler.build.variants import VARIANTS, selected
from wasm_torch.compiler.build.zig import kernel_dir
from wasm_torch.compiler.codegen import generate_c
from wasm_torch.compiler.codegen.memory_plan import plan_memory
from wasm_torch.compiler.codegen.parallel import KERNEL_TASKS
from wasm_torch.compiler.options import search_space
from wasm_torch.errors import CompileError
from wasm_torch.runtime import VariantModule, WasmModule
from wasm_torch.runtime.variant_check import check_variant
from wasm_torch.runtime.variants import parse_variants

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def test_every_parallel_kernel_has_a_dispatch_entry():
    used = set()
    for f in kernel_dir().glob("*.h"):
        used |= set(re.findall(r"wt_parallel_for\((WT_TASK_\w+)", f.read_text()))
    declared = (kernel_dir() / "wt_threads.h").read_text()
    assert used and used <= {task for task, _ in KERNEL_TASKS.values()}, used
    default = (kernel_dir() / "wt_tasks.h").read_text()  # the weak dispatcher of hand-written harnesses
    for task, fn in KERNEL_TASKS.values():
        assert f"#define {task} " in declared and f"void {fn}(const void* args, int chunk);" in declared
        assert f"case {task}: {fn}(p, chunk); return;" in default
        assert any(re.search(rf"WT_KERNEL void {fn}\(", f.read_text()) for f in kernel_dir().glob("*.h")), fn


def test_options_threads_and_relaxed():
    o = CompileOptions()
    assert o.threads and not o.relaxed  # relaxed SIMD measured slower: opt-in
    assert CompileOptions.from_json(o.to_json()) == o
    assert CompileOptions.from_json({**o.to_json(), "threads": False}).threads is False
    for bad in ("yes", 1, None):
        with pytest.raises(CompileError, match="threads"):
            CompileOptions(threads=bad)
    with pytest.raises(CompileError, match="relaxed"):
        CompileOptions(relaxed="no")
    assert search_space()["relaxed"] == (True, False)
    assert [v.name for v in selected(True, True)] == [v.name for v in VARIANTS]
    assert [v.name for v in selected(False, False)] == ["simd128"]
    assert [v.name for v in selected(False, True)] == ["simd128", "relaxed"]


class Elementwise(nn.Module):
    def forward(self, x):
        return torch.tanh(x * 1.5 + 0.25) * x


def _c(model, example, dyn=None) -> str:
    g = lower(model, example, dyn)
    return generate_c(g, plan_memory(g), CompileOptions())


def test_large_loops_become_parallel_tasks():
    small = _c(Elementwise(), (torch.randn(4, 100),))
    assert "wt_parallel_for(WT_TASK_MODEL" not in small and "case WT_TASK_MODEL" not in small
    big = _c(Elementwise(), (torch.randn(4, 100_003),))
    assert "wt_parallel_for(WT_TASK_MODEL + 0, &ctx, wt_chunks_for(" in big
    assert "case WT_TASK_MODEL + 0: wt_task_0(p, chunk); return;" in big
    dyn = _c(Elementwise(), (torch.randn(4, 100),), ({1: Dim("n", min=1, max=10**6)},))
    assert "wt_parallel_for(WT_TASK_MODEL" in dyn  # symbolic sizes: chunked at run time
    lin = _c(nn.Linear(64, 64), (torch.randn(8, 64),))
    assert "case WT_TASK_GEMM: wt_gemm_chunk(p, chunk)" in lin and "WT_TASK_CONV" not in lin


@pytest.fixture(scope="module")
def linear_art(tmp_path_factory):
    torch.manual_seed(0)
    return wasm_torch.compile(nn.Linear(64, 48), (torch.randn(5, 64),), tmp_path_factory.mktemp("l") / "lin",
                              options=CompileOptions(relaxed=True))


def test_artifact_files_and_manifest_record(linear_art):
    raw = json.loads((linear_art.path / "manifest.json").read_text())
    specs = parse_variants(linear_art.manifest, "manifest")
    assert [s.name for s in specs] == [v.name for v in VARIANTS]
    for s in specs:
        assert s.file in raw["files"] and (linear_art.path / s.file).is_file()
        assert s.deterministic == (not s.name.startswith("relaxed"))
        assert s.threads == s.name.endswith("threads") and (s.stack_bytes > 0) == s.threads
    report = raw["validation"]["variants"]
    assert report["simd128-threads"].startswith("bit-identical to simd128")
    assert report["relaxed-threads"].startswith("bit-identical to relaxed")
    assert report["relaxed"].startswith("max abs error vs PyTorch")
    assert raw["compiler"]["flags"]["link"][-1] == "-Wl,--strip-debug"  # model.wasm's flags, unchanged


def test_threaded_build_has_exactly_the_documented_shape(linear_art):
    for s in parse_variants(linear_art.manifest, "manifest"):
        wasm = (linear_art.path / s.file).read_bytes()
        check_variant(wasm, s.threads, "wt_run", s.file)  # raises on anything else
        assert (b"wt_worker" in wasm) == s.threads and b"__indirect_function_table" not in wasm


class Zoo(nn.Module):
    """One of each parallel kernel, at sizes whose chunk boundaries fall in awkward places."""

    def __init__(self):
        super().__init__()
        self.fc_a = nn.Linear(300, 1000)  # 63 panels, the last partial
        self.fc_b = nn.Linear(1000, 17)  # one partial panel: rows split
        self.conv_many = nn.Conv2d(3, 20, 3, padding=1)  # many pixel blocks
        self.conv_few = nn.Conv2d(20, 260, 3, stride=4)  # few pixels, panel groups
        self.conv_grouped = nn.Conv2d(20, 40, 3, groups=4, padding=2, dilation=2)
        self.dw = nn.Conv2d(20, 40, 5, groups=20, padding=2)  # depthwise x2, stack path
        self.norm = nn.LayerNorm(1000)

    def forward(self, x, img, q, k, v):
        h = self.norm(self.fc_a(x))
        y = self.fc_b(torch.softmax(h, dim=-1) * 3.0)
        c = self.conv_many(img)
        z = F.max_pool2d(torch.relu(self.dw(c)), 3, 2, 1) + F.avg_pool2d(self.conv_grouped(c), 3, 2, 1)
        f = F.adaptive_avg_pool2d(self.conv_few(c), (3, 5))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y, z, f, a


def test_kernels_bit_identical_at_1_to_4_threads(tmp_path):
    torch.manual_seed(0)
    ex = (torch.randn(129, 300), torch.randn(2, 3, 67, 59), torch.randn(1, 3, 300, 32), torch.randn(1, 3, 300, 32),
          torch.randn(1, 3, 300, 24))
    art = wasm_torch.compile(Zoo(), ex, tmp_path / "kernels", atol=1e-4, rtol=1e-3)
    assert {"matmul_packed", "conv2d_packed", "dwconv2d", "attention", "layer_norm", "softmax"} <= set(art.report["ops"])
    xs = [t.numpy() for t in ex]
    plain = WasmModule(art)(*xs)
    for threads in (1, 2, 3, 4):
        with VariantModule(art, variant="simd128-threads", threads=threads) as m:
            for _ in range(2):
                got = m(*xs)
                for a, b in zip(plain, got, strict=True):
                    assert a.tobytes() == b.tobytes(), threads


class BigPlane(nn.Module):
    """A depthwise plane too big for a chunk's stack: the kernel falls back to the arena, one chunk."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(2, 2, 3, groups=2, padding=1)

    def forward(self, x):
        return self.dw(x) + 1.0


def test_depthwise_arena_path(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 270, 270)  # (270 + 2)^2 floats > WT_DW_STACK_FLOATS
    art = wasm_torch.compile(BigPlane(), (x,), tmp_path / "plane")
    plain = WasmModule(art)(x.numpy())
    assert art.report["validation"]["ok"]  # compile checked it against PyTorch
    with VariantModule(art, variant="simd128-threads", threads=3) as m:
        assert m(x.numpy()).tobytes() == plain.tobytes()
