"""`package_site(..., also={label: artifact})` / `wasm-torch package --also LABEL=ARTIFACT`: more builds of
the same model on one demo site (e.g. float32 and int8), listed in models.json; hostile labels, foreign
models and foreign files in model-<label>/ are refused."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import wasm_torch
from wasm_torch.cli import main
from wasm_torch.deploy.web import package_site
from wasm_torch.errors import ArtifactError

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    root = tmp_path_factory.mktemp("arts")
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 4))
    x = torch.randn(2, 16)
    out = {fmt or "f32": wasm_torch.compile(m, (x,), root / (fmt or "f32"), quantize=fmt).path for fmt in (None, "int8", "fp16")}
    other = nn.Sequential(nn.Linear(16, 5))
    out["other"] = wasm_torch.compile(other, (x,), root / "other").path
    return out


def test_models_json_and_folders(arts, tmp_path):
    site = package_site(arts["f32"], tmp_path / "site", also={"int8": arts["int8"], "fp16": arts["fp16"]})
    models = json.loads((site / "models.json").read_text())
    assert [(m["label"], m["format"], m["path"]) for m in models] == [
        ("f32", "float32", "./model/"), ("int8", "int8", "./model-int8/"), ("fp16", "fp16", "./model-fp16/")]
    for m in models:
        assert (site / m["path"] / "weights.bin").stat().st_size == m["weights_bytes"]
    assert models[1]["weights_bytes"] < 0.5 * models[0]["weights_bytes"]  # tiny: panel padding and scales weigh
    assert package_site(arts["f32"], site, also={"int8": arts["int8"]}) == site  # an earlier site is ours


@pytest.mark.parametrize("label", ["../x", "INT8", "", "a" * 17, "model", "x/y", "-x"])
def test_hostile_labels(arts, tmp_path, label):
    if label == "model":  # a fine label: model-model/ is its folder
        package_site(arts["f32"], tmp_path / "s", also={label: arts["int8"]})
        return
    with pytest.raises(ArtifactError, match="model label"):
        package_site(arts["f32"], tmp_path / "s", also={label: arts["int8"]})
    assert not (tmp_path / "s").exists()


def test_another_model_and_foreign_files_are_refused(arts, tmp_path):
    with pytest.raises(ArtifactError, match="other inputs or outputs"):
        package_site(arts["f32"], tmp_path / "s", also={"other": arts["other"]})
    site = package_site(arts["f32"], tmp_path / "s2", also={"int8": arts["int8"]})
    (site / "model-int8" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match=r"model-int8/notes\.txt"):
        package_site(arts["f32"], site, also={"int8": arts["int8"]})
    assert (site / "model-int8" / "notes.txt").read_text() == "mine"
    with pytest.raises(ArtifactError, match="at most 7"):
        package_site(arts["f32"], tmp_path / "s3", also={f"m{i}": arts["int8"] for i in range(8)})


def test_cli_also(arts, tmp_path, capsys):
    assert main(["package", str(arts["f32"]), "--web", str(tmp_path / "w"), "--also", f"int8={arts['int8']}"]) == 0
    assert json.loads((tmp_path / "w" / "models.json").read_text())[1]["label"] == "int8"
    for bad in ["int8", f"int8={arts['int8']}", "=x"]:
        argv = ["package", str(arts["f32"]), "--web", str(tmp_path / "w2"), "--also", f"int8={arts['int8']}", "--also", bad]
        with pytest.raises(SystemExit) as e:  # a usage error: argparse's exit status 2
            main(argv)
        assert e.value.code == 2 and "LABEL=ARTIFACT" in capsys.readouterr().err
