"""Bad flags, files and models: every one is a one-line error naming what was wrong (status 2),
never a traceback, and nothing is written. Cheap: all of these fail before anything is compiled."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from wasm_torch.cli import main


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own usage errors
        return int(e.code or 0)


C = ["compile", "clitest_models:tiny", "--no-progress", "-o", "out/x"]
CASES = [
    # (extra argv for compile, what the message must say)
    (["--input-shape", "2,6", "--dtype", "floaty"], "--dtype floaty: unknown or unsupported dtype"),
    (["--input-shape", "2,6", "--dtype", "float16"], "--dtype float16: not supported yet"),
    (["--input-shape", "2,6", "--dtype", "bfloat16"], "--dtype bfloat16: not supported yet"),
    (["--input-shape", "2,6", "--dtype", "float64"], "--dtype float64: not supported yet"),
    (["--input-shape", "2,6", "--dtype", "torch.float16;rm"], "argument --dtype"),
    (["--input-shape", "2,6", "--dynamic", "0:0:batch"], "argument --dynamic: expected INPUT:AXIS:NAME:MAX"),
    (["--input-shape", "2,6", "--dynamic", "a:0:batch:8"], "INPUT and AXIS must be whole numbers"),
    (["--input-shape", "2,6", "--dynamic", "0:0:9x:8"], "NAME must be an identifier"),
    (["--input-shape", "2,6", "--dynamic", "0:0:batch:1"], "MAX must be a whole number >= 2"),
    (["--input-shape", "2,6", "--dynamic", "0:0:batch:99999999999"], "MAX must be below 2**31"),
    (["--input-shape", "2,6", "--dynamic", "3:0:batch:8"], "the model has 1 input(s)"),
    (["--input-shape", "2,6", "--dynamic", "0:7:batch:8"], "input 0 has 2 axes"),
    (["--input-shape", "1,6", "--dynamic", "0:0:batch:8"], "must be between 2 and 8"),
    (["--input-shape", "9,6", "--dynamic", "0:0:batch:8"], "must be between 2 and 8"),
    (["--input-shape", "2,6", "--dynamic", "0:0:b:8", "--dynamic", "0:1:b:9"], "two maxima"),
    (["--input-shape", "2,x"], "argument --input-shape"),
    (["--input-shape", "0,6"], "sizes must be > 0"),
    (["--input-shape", ""], "argument --input-shape"),
    (["--input-shape", "1,1,1,1,1,1,1,1,1"], "at most 8 axes"),
    (["--input-shape", "2,6", "--dtype", "int64", "--dtype", "int64"], "one --dtype for all inputs or one per input"),
    ([], "give --input-shape"),
    (["--example", "missing.npy"], "missing.npy: no such file"),
    (["--example", "x.npy", "--input-shape", "2,6"], "either --example files or --input-shape"),
    (["--input-shape", "2,6", "--atol", "-1"], "argument --atol"),
    (["--input-shape", "2,6", "--atol", "nan"], "argument --atol"),
    (["--input-shape", "2,6", "--rtol", "abc"], "argument --rtol"),
]


@pytest.mark.parametrize(("extra", "says"), CASES, ids=[" ".join(c[0]) or "no-inputs" for c in CASES])
def test_compile_flags(models_dir, capsys, extra, says):
    np.save(models_dir / "x.npy", np.ones((2, 6), np.float32))
    assert run_cli(C + extra) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert "Traceback" not in err
    assert not (models_dir / "out").exists()


MODEL_CASES = [
    ("clitest_models", "expected MODULE:FACTORY"),
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("clitest_models:nope", "has no attribute 'nope'"),
    ("clitest_models:broken", "raised RuntimeError: factory exploded"),
    ("clitest_models:not_a_model", "gave a int; expected a torch.nn.Module"),
    ("missing_file.py:f", "missing_file.py: no such file"),
]


@pytest.mark.parametrize(("spec", "says"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_specs(models_dir, capsys, spec, says):
    assert run_cli(["compile", spec, "--input-shape", "2,6", "--no-progress", "-o", "out/x"]) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert not (models_dir / "out").exists()


def test_factory_inputs_conflict_with_flags(models_dir, capsys):
    assert run_cli(["compile", "clitest_models:with_inputs", "--input-shape", "4,3", "-o", "out/x"]) == 2
    assert "returns its own example inputs" in capsys.readouterr().err


def _files(d):
    np.save(d / "ok.npy", np.ones((2, 6), np.float32))
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(d / "z.npz", a=np.ones(3))
    (d / "garbage.npy").write_bytes(b"\x80\x04 definitely not numpy")
    (d / "empty.npy").write_bytes(b"")
    (d / "adir").mkdir()


RUN_CASES = [
    (["run", "nowhere", "ok.npy"], "nowhere: no such folder"),
    (["run", "ok.npy", "ok.npy"], "not a folder"),
    (["run", "adir", "ok.npy"], "is not a wasm-torch artifact"),
    (["info", "adir"], "is not a wasm-torch artifact"),
    (["info", "nowhere"], "no such folder"),
    (["run", "ART", "missing.npy"], "missing.npy: no such file"),
    (["run", "ART", "adir"], "adir: not a file"),
    (["run", "ART", "obj.npy"], "pickled data are never loaded"),
    (["run", "ART", "garbage.npy"], "is not a readable .npy array"),
    (["run", "ART", "empty.npy"], "is not a readable .npy array"),
    (["run", "ART", "z.npz"], "is a .npz archive"),
    (["run", "ART", "ok.npy", "ok.npy"], "takes 1 input(s)"),
    (["run", "ART", "ok.npy", "--fuel", "0"], "argument --fuel"),
    (["run", "ART", "ok.npy", "--deadline", "-3"], "argument --deadline"),
    (["package", "nowhere", "--web", "site"], "no such folder"),
    (["serve", "nowhere"], "no such folder"),
    (["serve", "ART", "--replicas", "0"], "argument --replicas"),
    (["serve", "ART", "--max-batch", "-1"], "argument --max-batch"),
    (["serve", "ART", "--policy", "random"], "argument --balancer/--policy: invalid choice"),
    (["bench", "--repeat", "0"], "argument --repeat"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "required: COMMAND"),
]


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    import torch

    import wasm_torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cli") / "tiny"
    wasm_torch.compile(torch.nn.Linear(6, 3), (torch.randn(2, 6),), path)
    return path


@pytest.mark.toolchain
@pytest.mark.wasm
@pytest.mark.parametrize(("argv", "says"), RUN_CASES, ids=[" ".join(c[0]) for c in RUN_CASES])
def test_run_info_serve_package_flags(tmp_path, monkeypatch, capsys, tiny_artifact, argv, says):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [str(tiny_artifact) if x == "ART" else x for x in argv]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert "Traceback" not in err


def test_errors_reach_the_terminal_without_a_traceback(models_dir):
    """The real entry point in a subprocess: stderr is one usage line or one `error:` line."""
    for argv in (
        ["compile", "clitest_models:tiny", "--input-shape", "2,6", "--dtype", "floaty", "-o", "o"],
        ["compile", "clitest_models:tiny", "--input-shape", "2,6", "--dynamic", "0:0:batch", "-o", "o"],
        ["run", str(models_dir), "missing.npy"],
    ):
        p = subprocess.run(
            [sys.executable, "-c", "import sys; from wasm_torch.cli import main; sys.exit(main())", *argv],
            capture_output=True, text=True, cwd=models_dir, timeout=120,
        )
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and "error:" in p.stderr, p.stderr
