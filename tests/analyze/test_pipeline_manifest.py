"""pipeline.json trusts nothing: every malformed, forged or tampered field is a clear ArtifactError."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from wasm_torch.analyze.partition import PartitionOptions
from wasm_torch.analyze.pipeline_manifest import MAX_PIPELINE_BYTES, read_pipeline
from wasm_torch.analyze.runner import Pipeline
from wasm_torch.errors import ArtifactError, IntegrityError
from wasm_torch.zoo import ZOO

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


@pytest.fixture
def folder(pipelines, tmp_path):
    """A fresh copy of a compiled 2-stage MLP pipeline to tamper with."""
    art, _, _, _ = pipelines("mlp", PartitionOptions(2, 0.5))
    dst = tmp_path / "p"
    shutil.copytree(art.path, dst)
    return dst


def edit(folder, change):
    doc = json.loads((folder / "pipeline.json").read_text())
    change(doc)
    (folder / "pipeline.json").write_text(json.dumps(doc))


def test_the_untouched_copy_loads_and_runs(folder):
    x = ZOO["mlp"].inputs(torch.Generator().manual_seed(0))[0].numpy()
    assert Pipeline(folder)(x).shape == (4, 10)


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(format="wasm-torch-pipeline/9"), "format is"),
    (lambda d: d.update(name=3), "name must be a string"),
    (lambda d: d.update(inputs="x"), "inputs must be a list"),
    (lambda d: d["inputs"].append({"name": "x"}), "input names repeat"),
    (lambda d: d.update(stages=[]), "stages must be a list of 1.."),
    (lambda d: d["stages"][0].update(dir="../escape"), "plain folder name"),
    (lambda d: d["stages"][0].update(dir="/etc"), "plain folder name"),
    (lambda d: d["stages"][1].update(dir=d["stages"][0]["dir"]), "distinct plain folder name"),
    (lambda d: d["stages"][0].update(manifest_sha256="zz"), "64 lowercase hex"),
    (lambda d: d["stages"][0]["inputs"][0].update({"from": {"stage": 1, "output": "output_0"}}),
     "does not run before it"),
    (lambda d: d["stages"][1]["inputs"][0].update({"from": {"stage": 0, "output": "output_7"}}),
     "not an output of stage 0"),
    (lambda d: d["stages"][1]["inputs"][0].update({"from": {"input": "nope"}}), "unknown model input"),
    (lambda d: d["stages"][1]["inputs"][0].update({"from": {"stage": "0", "output": "output_0"}}), ".from must be"),
    (lambda d: d["stages"][1]["inputs"][0].update({"from": {"stage": True, "output": "output_0"}}), ".from must be"),
    (lambda d: d["stages"][1]["inputs"][0].update(name="renamed"), "differ from what the stage"),
    (lambda d: d["stages"][1]["inputs"].append(dict(d["stages"][1]["inputs"][0])), "differ from what the stage"),
    (lambda d: d["stages"][1].update(cost=-1), "cost must be a number >= 0"),
    (lambda d: d["stages"][1].update(nodes="3"), "nodes must be a number >= 0"),
    (lambda d: d.update(outputs=[]), "outputs must be a non-empty list"),
    (lambda d: d["outputs"][0].update({"from": {"stage": 5, "output": "output_0"}}), "does not run before it"),
])
def test_malformed_fields_are_refused(folder, change, match):
    edit(folder, change)
    with pytest.raises(ArtifactError, match=match):
        read_pipeline(folder)


def test_not_json_too_big_and_missing(folder, tmp_path):
    (folder / "pipeline.json").write_bytes(b"\xff{not json")
    with pytest.raises(ArtifactError, match="not UTF-8"):
        read_pipeline(folder)
    (folder / "pipeline.json").write_bytes(b"{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_pipeline(folder)
    (folder / "pipeline.json").write_text('{"format": "wasm-torch-pipeline/1", "format": "x"}')
    with pytest.raises(ArtifactError, match="duplicate key"):
        read_pipeline(folder)
    (folder / "pipeline.json").write_text('{"format": NaN}')
    with pytest.raises(ArtifactError):
        read_pipeline(folder)
    (folder / "pipeline.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="top level must be an object"):
        read_pipeline(folder)
    with open(folder / "pipeline.json", "wb") as f:
        f.truncate(MAX_PIPELINE_BYTES + 1)
    with pytest.raises(ArtifactError, match="over the"):
        read_pipeline(folder)
    (folder / "pipeline.json").unlink()
    (folder / "pipeline.json").symlink_to(folder / "stage_0" / "manifest.json")
    with pytest.raises(ArtifactError, match="symbolic link"):
        read_pipeline(folder)
    with pytest.raises(ArtifactError, match="not a pipeline folder"):
        read_pipeline(tmp_path / "nothing")


def test_tampered_stage_is_caught(folder):
    mf = folder / "stage_1" / "manifest.json"
    doc = json.loads(mf.read_text())
    doc["name"] = "forged"
    mf.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match=r"does not match pipeline\.json"):
        read_pipeline(folder)


def test_swapped_weights_are_caught_by_the_stage_manifest(folder):
    w = folder / "stage_0" / "weights.bin"
    data = bytearray(w.read_bytes())
    data[0] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        Pipeline(folder)


def test_missing_or_linked_stage_folder(folder, tmp_path):
    shutil.move(folder / "stage_1", tmp_path / "elsewhere")
    with pytest.raises(ArtifactError, match="not a real folder"):
        read_pipeline(folder)
    (folder / "stage_1").symlink_to(tmp_path / "elsewhere")  # the same files, through a link: refused
    with pytest.raises(ArtifactError, match="not a real folder"):
        read_pipeline(folder)


def test_wrong_inputs_are_input_errors(folder):
    from wasm_torch.errors import InputError

    p = Pipeline(folder)
    with pytest.raises(InputError, match="expects 1 inputs"):
        p()
    with pytest.raises(InputError, match="missing"):
        p(y=np.zeros((2, 64), np.float32))
    with pytest.raises(InputError, match="not both"):
        p(np.zeros((2, 64), np.float32), x=np.zeros((2, 64), np.float32))
    with pytest.raises(InputError, match="expects dtype"):
        p(np.zeros((2, 64), np.complex64))
