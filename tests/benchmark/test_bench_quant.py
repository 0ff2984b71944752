"""`wasm-torch bench --quant` end to end on the MLP in quick mode: ours as float32 / fp16 / int8 and
ONNX Runtime (Web in Node, and native) on the float32 and the quantize_dynamic int8 model all run,
every system's accuracy against PyTorch is recorded, and the weights shrink as the formats say.
Timings are only checked to exist (never compared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wasm_torch import cli
from wasm_torch.benchmark.quant import SYSTEMS, markdown_table

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def test_bench_quant_mlp_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q.json"
    assert cli.main(["bench", "--quant", "--models", "mlp", "--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    (row,) = res["rows"]
    assert row["errors"] == {}, row["errors"]
    for s in SYSTEMS:
        assert row[f"{s}_ms"] > 0, s
        assert row[f"{s}_cosine"] > 0.99, (s, row[f"{s}_cosine"])  # the MLP's logits: every int8 keeps them
    assert row["ours_f32_cosine"] > 0.999999 and row["ortweb_f32_cosine"] > 0.999999
    assert row["ours_int8_weights_bytes"] < 0.3 * row["ours_f32_weights_bytes"] < row["ours_fp16_weights_bytes"]
    assert res["settings"]["threads"] == 1 and res["machine"]["command"].startswith("wasm-torch bench --quant")
    text = capsys.readouterr().out
    assert markdown_table(res) in text and "| mlp |" in text
