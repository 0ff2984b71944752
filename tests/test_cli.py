"""`wasm-torch compile | run | info` end to end, in process."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.cli import main

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def test_compile_run_info(tmp_path, capsys, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def tiny():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Tanh())\n"
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out" / "tiny"
    assert (
        main(["compile", "mymodels:tiny", "--input-shape", "2,6", "--dynamic", "0:0:batch:8", "-o", str(out)])
        == 0
    )
    assert "model.wasm" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "dim batch in [1, 8]" in info and "verified" in info
    x = np.ones((3, 6), np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), str(tmp_path / "x.npy"), "--save", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (3, 3)
    np.save(tmp_path / "bad.npy", np.ones((3, 5), np.float32))
    assert main(["run", str(out), str(tmp_path / "bad.npy")]) == 2
    assert "expects shape" in capsys.readouterr().err
