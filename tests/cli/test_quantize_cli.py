"""`wasm-torch compile --quantize ...`: what a user types and sees, and the flags' hostile cases."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from wasm_torch.cli import main

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]

MODELS = '''
import torch


def convnet():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, stride=2, groups=8),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5),
    )


def no_weights():
    return torch.nn.Softmax(dim=-1)
'''


@pytest.fixture
def qdir(tmp_path, monkeypatch):
    (tmp_path / "qcli_models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_quantize_int8_fp16_and_static(qdir, capsys):
    base = ["compile", "qcli_models:convnet", "--input-shape", "1,3,10,10", "--no-progress"]
    for fmt in ("fp16", "int8"):
        assert main([*base, "--quantize", fmt, "-o", str(qdir / fmt)]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"\({fmt} weights\): cosine (0\.9|1\.0)", out) and "argmax agreement" in out
        m = json.loads((qdir / fmt / "manifest.json").read_text())
        assert m["compiler"]["options"]["quantize"] == fmt and m["validation"]["format"] == fmt
        assert main(["info", str(qdir / fmt)]) == 0
        assert f"{fmt} weights: cosine" in capsys.readouterr().out
    np.save(qdir / "calib.npy", np.random.default_rng(0).standard_normal((6, 1, 3, 10, 10)).astype(np.float32))
    assert main([*base, "--quantize", "int8-static", "--calibration", "calib.npy", "--min-cosine", "0.95",
                 "-o", str(qdir / "static")]) == 0
    m = json.loads((qdir / "static" / "manifest.json").read_text())
    assert m["validation"]["bar"]["min_cosine"] == 0.95


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--quantize", "int4"], "invalid choice: 'int4'"),
        (["--calibration", "calib.npy"], "only make sense with --quantize"),
        (["--min-cosine", "0.9"], "only make sense with --quantize"),
        (["--quantize", "int8", "--calibration", "calib.npy"], "int8-static only"),
        (["--quantize", "int8-static"], "needs --calibration"),
        (["--quantize", "int8-static", "--calibration", "calib.npy", "--calibration", "calib.npy"], "1 input"),
        (["--quantize", "int8-static", "--calibration", "wrong.npy"], "shape \\[1, 3, 9, 9\\]"),
        (["--quantize", "int8-static", "--calibration", "scalar.npy"], "same number \\(>= 1\\)"),
        (["--quantize", "int8-static", "--calibration", "pickled.npy"], "never loaded"),
        (["--quantize", "int8", "--min-cosine", "2"], "min_cosine=2.0"),
        (["--quantize", "int8", "--min-cosine", "nan"], "min_cosine=nan"),
        (["--quantize", "int8", "--min-cosine", "x"], "invalid float value"),
    ],
)
def test_hostile_quantize_flags(qdir, capsys, extra, message):
    np.save(qdir / "calib.npy", np.zeros((2, 1, 3, 10, 10), np.float32) + 1)
    np.save(qdir / "wrong.npy", np.zeros((2, 1, 3, 9, 9), np.float32))
    np.save(qdir / "scalar.npy", np.float32(3.0))
    np.save(qdir / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    argv = ["compile", "qcli_models:convnet", "--input-shape", "1,3,10,10", "--no-progress", "-o", str(qdir / "o"), *extra]
    code = None
    try:
        code = main(argv)
    except SystemExit as e:  # argparse rejects unknown choices / bad floats itself
        code = e.code
    assert code == 2, capsys.readouterr()
    captured = capsys.readouterr()
    assert re.search(message, captured.err + captured.out), (captured.err, captured.out)
    assert not (qdir / "o").exists()


def test_quantize_a_model_without_weights(qdir, capsys):
    argv = ["compile", "qcli_models:no_weights", "--input-shape", "2,5", "--no-progress", "--quantize", "int8",
            "-o", str(qdir / "nw")]
    assert main(argv) == 2
    assert "no layer to quantize" in capsys.readouterr().err
