"""`wasm-torch bench` end to end on the MLP in quick mode: all four systems (ours, ONNX Runtime Web
in Node, ONNX Runtime native, PyTorch), each at 1 and 2 threads, run, agree with PyTorch, and the
JSON (with the SIMD128 peak and GFLOP/s as a fraction of it) and the PNG are complete.
Timings are only checked to exist (never compared). ONNX Runtime Web comes from `make bench-setup`
(scripts/setup_bench.sh), which `make test` runs first; without it this test fails, by design."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wasm_torch import cli
from wasm_torch.benchmark.peers import ORTWEB_VERSION, REPO_NODE_DIR
from wasm_torch.benchmark.suite import run_suite
from wasm_torch.errors import BenchmarkError

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]

MACHINE_KEYS = {
    "cpu",
    "cores",
    "python",
    "torch",
    "wasmtime",
    "onnxruntime",
    "node",
    "onnxruntime_web",
    "date",
}


def test_bench_mlp_quick_all_four_systems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = REPO_NODE_DIR / "node_modules" / "onnxruntime-web" / "package.json"
    assert pkg.is_file(), (
        f"{pkg} is missing: run `bash scripts/setup_bench.sh` (make test runs it as `bench-setup`); "
        "this test needs ONNX Runtime Web in Node"
    )
    out = tmp_path / "r.json"
    rc = cli.main(["bench", "--models", "mlp", "--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, f"wasm-torch bench reported problems:\n{printed[-3000:]}"
    doc = json.loads(out.read_text())
    assert doc["machine"].keys() >= MACHINE_KEYS
    assert doc["machine"]["onnxruntime_web"] == ORTWEB_VERSION
    assert doc["machine"]["command"].startswith("wasm-torch bench --models=mlp ")
    assert "--quick" in doc["machine"]["command"]
    assert doc["settings"]["threads"] == [1, 2] and doc["settings"]["quick"] is True
    peak = doc["machine"]["simd128_peak"]
    assert peak["peak_gflops"] == max(peak["muladd_gflops"], peak["fma_gflops"]) > 0
    (row,) = doc["rows"]
    assert row["model"] == "mlp" and "errors" not in row and "error" not in row
    for base in ("ours", "ortweb", "ort_native", "torch"):
        for system in (base, f"{base}_2t"):
            assert isinstance(row[f"{system}_ms"], float) and row[f"{system}_ms"] > 0, system
    for system in ("ours", "ours_2t", "ortweb", "ortweb_2t", "ort_native", "ort_native_2t"):
        assert row[f"{system}_agrees"] is True, system
    assert row["ours_build"] == "simd128" and row["ours_2t_build"] == "simd128-threads"
    assert row["ours_2t_speedup"] == pytest.approx(row["ours_ms"] / row["ours_2t_ms"], rel=1e-2)
    gemms = 2 * 8 * (784 * 1024 + 1024 * 1024 + 1024 * 10)
    assert gemms <= row["flops"] < 1.01 * gemms  # counted by the compiler (+ bias and ReLU)
    assert 0 < row["ours_peak_fraction"] == pytest.approx(row["gflops"]["ours"] / peak["peak_gflops"], abs=2e-3)
    assert (
        row["max_abs_err"] < 1e-4
        and row["ortweb_max_abs_err"] < 1e-4
        and row["ort_native_max_abs_err"] < 1e-4
    )
    assert row["ours_vs_ortweb"] == pytest.approx(row["ours_ms"] / row["ortweb_ms"], rel=1e-3)
    assert row["exporter"] in ("dynamo", "torchscript")
    # sizes: our module is code only; ORT-Web's runtime is what Node actually loaded, wasm included
    assert 0 < row["code_bytes"] < 100_000
    assert row["weights_bytes"] >= 4 * (784 * 1024 + 1024 * 1024 + 1024 * 10)
    files = row["ortweb_runtime_files"]
    assert any(f["file"].endswith(".wasm") for f in files)
    assert row["ortweb_runtime_bytes"] == sum(f["bytes"] for f in files) > 1_000_000
    # memory: at the second linear layer, its 8x1024 f32 input and output are both live
    assert row["largest_activation_bytes"] == 2 * 8 * 1024 * 4
    assert row["arena_bytes"] >= row["largest_activation_bytes"]
    assert row["linear_memory_bytes"] >= row["weights_bytes"] + row["arena_bytes"]
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mlp |" in printed and "ORT-Web, 2 threads ms" in printed and "% of peak" in printed


def test_bench_names_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BenchmarkError, match=r"scripts/setup_bench\.sh"):
        run_suite(["mlp"], node_dir=tmp_path)
    with pytest.raises(BenchmarkError, match=r"unknown benchmark model.*'nope'.*resnet18"):
        run_suite(["nope"])
    assert (
        cli.main(["bench", "--models", "mlp", "--node-dir", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    )
    assert "setup_bench.sh" in capsys.readouterr().err


def test_a_failing_compile_keeps_its_row_and_the_peers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch
    from torch import nn

    import wasm_torch
    from wasm_torch.benchmark.models import BenchCase
    from wasm_torch.benchmark.peers import ortweb_package
    from wasm_torch.benchmark.suite import run_case
    from wasm_torch.errors import UnsupportedOpError

    def broken(*args: object, **kwargs: object) -> None:
        raise UnsupportedOpError("aten.frobnicate.default is not supported (injected by the test)")

    monkeypatch.setattr(wasm_torch, "compile", broken)
    case = BenchCase(
        "tiny", "Linear 4->2", lambda: nn.Linear(4, 2), lambda g: (torch.randn(3, 4, generator=g),)
    )
    opts = {"warmup": 1, "repeat": 3, "max_seconds": 1.0, "ortweb_warmup_seconds": 0.0}
    row = run_case(case, opts, tmp_path, ortweb_package())
    assert (
        row["error"] == "UnsupportedOpError: aten.frobnicate.default is not supported (injected by the test)"
    )
    assert row["errors"] == {"ours": row["error"]}
    assert row["ours_ms"] is None and "ours_vs_ortweb" not in row
    assert row["ortweb_ms"] > 0 and row["ort_native_ms"] > 0 and row["torch_ms"] > 0
    assert row["ortweb_agrees"] is True and row["ort_native_agrees"] is True
