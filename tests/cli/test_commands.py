"""`wasm-torch compile | run | info` end to end, in process: what a user types and sees."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wasm_torch.cli import main

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def test_compile_run_info(models_dir, capsys):
    out = models_dir / "out" / "tiny"
    argv = ["compile", "clitest_models:tiny", "--input-shape", "2,6", "--dynamic", "0:0:batch:8", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "model.wasm" in text and "output scale" in text and "drawn from N(0, 1)" in text
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "dim batch in [1, 8]" in info and "verified" in info and "output scale" in info
    np.save(models_dir / "x.npy", np.ones((3, 6), np.float32))
    assert main(["run", str(out), str(models_dir / "x.npy"), "--save", str(models_dir / "y.npy")]) == 0
    y = np.load(models_dir / "y.npy")
    with torch.no_grad():
        torch.manual_seed(0)
        want = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Tanh())(torch.ones(3, 6)).numpy()
    np.testing.assert_allclose(y, want, atol=1e-5)
    np.save(models_dir / "bad.npy", np.ones((3, 5), np.float32))
    assert main(["run", str(out), str(models_dir / "bad.npy")]) == 2
    assert "expects shape" in capsys.readouterr().err
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny"


def test_integer_inputs_are_random_in_range_and_bad_ids_are_named(models_dir, capsys):
    out = models_dir / "emb"
    argv = ["compile", "clitest_models:Emb", "--input-shape", "1,9", "--input-shape", "1,9", "--dtype", "int64",
            "--dynamic", "0:1:seq:32", "--dynamic", "1:1:seq:32", "--no-progress", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "random integers in [0, 50) (it indexes a table of 50 rows)" in text  # ids: the table size
    assert "random integers in [0, 2) (not used as an index" in text  # the mask: 0 or 1
    v = json.loads((out / "manifest.json").read_text())
    assert v["index_inputs"] == {"ids": 50}
    assert v["validation"]["scale"] > 0.1  # non-zero ids and mask: the check compared real values
    np.save(models_dir / "ids.npy", np.array([[1, 2, 77, 3]], np.int64))
    np.save(models_dir / "mask.npy", np.ones((1, 4), np.int64))
    assert main(["run", str(out), str(models_dir / "ids.npy"), str(models_dir / "mask.npy")]) == 2
    err = capsys.readouterr().err
    assert "'ids' has 77 at position (0, 2)" in err and "0..49" in err


def test_example_files_and_factory_with_inputs(models_dir, capsys):
    np.save(models_dir / "x.npy", np.full((2, 6), 0.5, np.float32))
    out = models_dir / "ex"
    assert main(["compile", "clitest_models:tiny", "--example", "x.npy", "--no-progress", "-o", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["inputs"][0]["shape"] == [2, 6]
    capsys.readouterr()
    path_spec = f"{models_dir / 'clitest_models.py'}:with_inputs"  # a file path works as well as a module
    assert main(["compile", path_spec, "--no-progress", "-o", str(models_dir / "wi")]) == 0
    assert json.loads((models_dir / "wi" / "manifest.json").read_text())["inputs"][0]["shape"] == [4, 3]


def test_compile_does_not_replace_a_folder_that_is_not_an_artifact(models_dir, capsys):
    mine = models_dir / "precious"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["compile", "clitest_models:tiny", "--input-shape", "2,6", "--no-progress", "-o", str(mine)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"
