"""A trained model's accuracy kept: the digits CNN of the cascade example (bench/serve_cascade.py,
scikit-learn's digits, trained in torch) loses at most 0.5 points of test accuracy in int8, with
dynamic activation ranges and with ranges calibrated on the calibration split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import wasm_torch

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]

CASCADE = Path(__file__).resolve().parents[3] / "bench" / "serve_cascade.py"


def _cascade():
    spec = importlib.util.spec_from_file_location("serve_cascade", CASCADE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    m = wasm_torch.load(path)
    logits = np.concatenate([m(x[i : i + 256]) for i in range(0, len(x), 256)])
    return float((logits.argmax(1) == y).mean())


def test_digits_cnn_int8_keeps_accuracy(tmp_path):
    c = _cascade()
    data = c.digits_split(0)
    torch.manual_seed(0)
    cnn = c.train(c.DigitsCNN(), *data["train"], epochs=30, lr=0.003, seed=0)  # as the cascade trains it
    xt, yt = data["test"]
    with torch.no_grad():
        torch_acc = float((cnn(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())
    batch = torch.export.Dim("batch", min=1, max=512)
    example = (torch.from_numpy(data["train"][0][:8]),)
    calib = [(torch.from_numpy(data["calibration"][0][i : i + 64]),) for i in range(0, 256, 64)]
    acc = {}
    for fmt, kw in [(None, {}), ("fp16", {}), ("int8", {}), ("int8-static", {"calibration": calib})]:
        wasm_torch.compile(cnn, example, tmp_path / str(fmt), dynamic_shapes=({0: batch},), quantize=fmt, **kw)
        acc[fmt] = _accuracy(tmp_path / str(fmt), xt, yt)
    assert torch_acc > 0.95 and acc[None] == torch_acc, (torch_acc, acc)
    for fmt in ("fp16", "int8", "int8-static"):
        assert acc[fmt] >= torch_acc - 0.005, (fmt, acc, torch_acc)
