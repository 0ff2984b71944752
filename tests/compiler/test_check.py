"""The check against PyTorch: its report (error, output scale, relative error), the warning when it
proves nothing, and what compile() leaves alone (the model's train/eval mode, the user's folders)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import wasm_torch
from wasm_torch.compiler.check import VacuousCheckWarning, compare, vacuous_message
from wasm_torch.errors import ArtifactError


def test_report_has_scale_and_error_relative_to_it():
    want = [np.array([100.0, -200.0, 50.0], np.float32)]
    got = [np.array([100.0, -200.02, 50.0], np.float32)]
    r = compare(got, want, 1e-4, 1e-3)
    assert r["ok"]
    assert r["scale"] == pytest.approx(200.0)
    assert r["max_abs_err"] == pytest.approx(0.02, rel=1e-3)
    assert r["rel_err"] == pytest.approx(1e-4, rel=1e-3)
    assert r["vacuous_outputs"] == [] and vacuous_message(r, 1e-4, 1e-3) is None


def test_outputs_near_zero_make_the_check_vacuous():
    tiny = np.full((4,), 4e-14, np.float32)  # an untrained model's outputs, say
    r = compare([np.zeros(4, np.float32), np.ones(2, np.float32)], [tiny, np.ones(2, np.float32)], 1e-4, 1e-3)
    assert r["ok"]  # zeros pass: that is the problem
    assert r["vacuous_outputs"] == [0]
    msg = vacuous_message(r, 1e-4, 1e-3)
    assert msg is not None and "output 0" in msg and "4e-14" in msg and "zeros would pass" in msg


def test_a_real_disagreement_is_not_ok():
    r = compare([np.array([1.0, 2.0], np.float32)], [np.array([1.0, 2.5], np.float32)], 1e-4, 1e-3)
    assert not r["ok"] and r["rel_err"] == pytest.approx(0.2)


@pytest.mark.toolchain
@pytest.mark.wasm
def test_compile_warns_when_pytorch_outputs_are_zero(tmp_path):
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.mul_(1e-12)
        lin.bias.zero_()
    with pytest.warns(VacuousCheckWarning, match="vacuous"):
        art = wasm_torch.compile(lin, (torch.randn(2, 4),), tmp_path / "z")
    assert art.report["validation"]["vacuous_outputs"] == [0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", VacuousCheckWarning)  # a model with real outputs: no warning
        art = wasm_torch.compile(nn.Linear(4, 3), (torch.randn(2, 4),), tmp_path / "r")
    assert art.report["validation"]["scale"] > 0


@pytest.mark.toolchain
@pytest.mark.wasm
def test_compile_restores_train_and_eval_modes(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(4), nn.ReLU()))
    model.train()
    model[2].eval()  # mixed on purpose: the inner block in eval, the rest training
    before = [m.training for m in model.modules()]
    wasm_torch.compile(model, (torch.randn(3, 4),), tmp_path / "m")
    assert [m.training for m in model.modules()] == before
    wasm_torch.compiler.lower(model, (torch.randn(3, 4),))
    assert [m.training for m in model.modules()] == before


@pytest.mark.toolchain
@pytest.mark.wasm
def test_compile_refuses_to_replace_a_folder_that_is_not_an_artifact(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ArtifactError, match="refusing to replace"):
        wasm_torch.compile(nn.Linear(2, 2), (torch.randn(1, 2),), mine)
    assert (mine / "thesis.tex").read_text() == "years of work"
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ArtifactError, match="not a folder"):
        wasm_torch.compile(nn.Linear(2, 2), (torch.randn(1, 2),), f)
    art = tmp_path / "art"  # an artifact folder is replaced, as documented
    wasm_torch.compile(nn.Linear(2, 2), (torch.randn(1, 2),), art)
    wasm_torch.compile(nn.Linear(2, 3), (torch.randn(1, 2),), art)
    assert wasm_torch.load(art).outputs[0].shape == (1, 3)


def test_report_is_strict_json_even_for_all_zero_outputs():
    import json

    r = compare([np.full(3, 1e-6, np.float32)], [np.zeros(3, np.float32)], 1e-4, 1e-3)
    assert r["ok"] and r["outputs"][0]["rel_err"] is None and r["rel_err"] is None and r["vacuous_outputs"] == [0]
    json.dumps(r, allow_nan=False)  # the manifest's validation field: no NaN/Infinity
