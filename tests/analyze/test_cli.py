"""`wasm-torch compile --stages K` and `wasm-torch pipeline info | run`, in process, with bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from wasm_torch.analyze.runner import Pipeline
from wasm_torch.cli import main

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


@pytest.fixture(scope="module")
def mlp_pipeline(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "mlp2"
    argv = ["compile", "wasm_torch.zoo.models:MLP", "--input-shape", "4,64", "--stages", "2", "--tolerance", "0.5",
            "-o", str(out)]
    assert main(argv) == 0
    return out


def test_compile_with_stages_info_and_run(mlp_pipeline, tmp_path, capsys):
    assert main(["pipeline", "info", str(mlp_pipeline)]) == 0
    text = capsys.readouterr().out
    assert "2 stages" in text and "stage 1 (stage_1)" in text and "proven optimal" in text
    assert main(["pipeline", "info", str(mlp_pipeline), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "wasm-torch-pipeline/1"
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    argv = ["pipeline", "run", str(mlp_pipeline), str(tmp_path / "x.npy"), "--threads", "2", "--repeat", "3",
            "--save", str(tmp_path / "y.npy")]
    assert main(argv) == 0
    assert "3 call(s) on 2 thread(s)" in capsys.readouterr().out
    assert np.array_equal(np.load(tmp_path / "y.npy"), Pipeline(mlp_pipeline)(x))


def test_bad_flags_and_inputs_are_clear_errors(mlp_pipeline, tmp_path, capsys):
    for argv, match in (
        (["compile", "wasm_torch.zoo.models:MLP", "--input-shape", "4,64", "--stages", "0", "-o", "o"], "--stages"),
        (["compile", "wasm_torch.zoo.models:MLP", "--input-shape", "4,64", "--stages", "2", "--tolerance", "-1",
          "-o", "o"], "--tolerance"),
        (["pipeline", "run", str(mlp_pipeline), "x.npy", "--threads", "0"], "--threads"),
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and match in capsys.readouterr().err
    assert main(["compile", "wasm_torch.zoo.models:MLP", "--input-shape", "4,64", "--memory-cap", "100",
                 "-o", str(tmp_path / "o")]) == 2
    assert "--memory-cap needs --stages" in capsys.readouterr().err
    assert main(["compile", "wasm_torch.zoo.models:MLP", "--input-shape", "4,64", "--stages", "2",
                 "-o", str(tmp_path / "o")]) == 2  # ±10% cannot balance this MLP: said so, nothing written
    assert "raise tolerance" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["pipeline", "info", str(tmp_path)]) == 2
    assert "not a pipeline folder" in capsys.readouterr().err
    np.save(tmp_path / "a.npy", np.zeros((4, 64), np.float32))
    assert main(["pipeline", "run", str(mlp_pipeline), str(tmp_path / "a.npy"), str(tmp_path / "a.npy")]) == 2
    assert "takes 1 input(s)" in capsys.readouterr().err
    (tmp_path / "evil.npy").write_bytes(pickle.dumps([1, 2, 3]))
    assert main(["pipeline", "run", str(mlp_pipeline), str(tmp_path / "evil.npy")]) == 2
    assert "not a plain .npy array" in capsys.readouterr().err
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["pipeline", "run", str(mlp_pipeline), str(tmp_path / "obj.npy")]) == 2
    assert "pickled files are refused" in capsys.readouterr().err
    np.save(tmp_path / "wrong.npy", np.zeros((4, 63), np.float32))
    assert main(["pipeline", "run", str(mlp_pipeline), str(tmp_path / "wrong.npy")]) == 2
    assert "expects shape" in capsys.readouterr().err
