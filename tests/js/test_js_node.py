"""wasm-torch.mjs in Node: every zoo artifact matches the Python runtime, bad input fails clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import wasm_torch
from wasm_torch.zoo import ZOO

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def _py_outputs(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return wasm_torch.load(path).run(inputs)


def _named(path: Path, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    names = [s["name"] for s in json.loads((path / "manifest.json").read_text())["inputs"]]
    return dict(zip(names, arrays, strict=True))


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_matches_python(name, run_node, zoo_artifact, tmp_path):
    path, example = zoo_artifact(name)
    runs = [_named(path, example)]
    if name in ("bert", "gpt2"):  # a second, shorter sequence exercises the dynamic dimension
        runs.append({k: v[:, :5].copy() for k, v in runs[0].items()})
    if name == "mlp":
        runs.append({"x": example[0][:1].copy()})
    res = run_node(path, runs, tmp_path)
    assert "error" not in res, res
    for inputs, got in zip(runs, res["runs"], strict=True):
        assert "error" not in got, got
        want = _py_outputs(path, inputs)
        assert list(got["outputs"]) == list(want)
        for k, w in want.items():
            g = got["outputs"][k]
            assert g.shape == w.shape and g.dtype == w.dtype
            assert np.abs(g - w).max() <= 1e-5, f"{name}/{k}: max abs err {np.abs(g - w).max()}"


def _copy(path: Path, tmp: Path) -> Path:
    dst = tmp / "art"
    shutil.copytree(path, dst)
    return dst


def _error(res: dict) -> dict:
    assert "error" in res, f"expected a load error, got {res}"
    return res["error"]


@pytest.mark.parametrize(("victim", "job"), [("model.wasm", {"threads": 1, "variant": "simd128"}),
                                            ("model.threads.wasm", {"threads": 2})])
def test_missing_file(victim, job, run_node, zoo_artifact, tmp_path):
    """The build a load chooses must be there (model.wasm for one deterministic thread)."""
    path, _ = zoo_artifact("mlp")
    art = _copy(path, tmp_path)
    (art / victim).unlink()
    err = _error(run_node(art, [], tmp_path / "o", **job))
    assert err["name"] == "ArtifactError" and f"{victim} is missing" in err["message"]
    err = _error(run_node(tmp_path / "nowhere", [], tmp_path / "o2"))
    assert err["name"] == "ArtifactError" and "manifest.json is missing" in err["message"]


@pytest.mark.parametrize(("victim", "job"), [("weights.bin", {}), ("model.wasm", {"threads": 1, "variant": "simd128"}),
                                            ("model.threads.wasm", {"threads": 2})])
def test_corrupt_file(victim, job, run_node, zoo_artifact, tmp_path):
    path, _ = zoo_artifact("mlp")
    art = _copy(path, tmp_path)
    b = bytearray((art / victim).read_bytes())
    b[len(b) // 2] ^= 0xFF
    (art / victim).write_bytes(bytes(b))
    err = _error(run_node(art, [], tmp_path / "o", **job))
    assert err["name"] == "IntegrityError" and victim in err["message"] and "sha256" in err["message"]


def test_bad_manifest(run_node, zoo_artifact, tmp_path):
    path, _ = zoo_artifact("mlp")
    art = _copy(path, tmp_path)
    (art / "manifest.json").write_text("{not json")
    err = _error(run_node(art, [], tmp_path / "o"))
    assert err["name"] == "ArtifactError" and "not valid JSON" in err["message"]
    (art / "manifest.json").write_text(json.dumps({"format": "wasm-torch/0"}))
    err = _error(run_node(art, [], tmp_path / "o2"))
    assert "this runtime reads" in err["message"]


def test_no_simd(run_node, zoo_artifact, tmp_path):
    path, _ = zoo_artifact("mlp")
    err = _error(run_node(path, [], tmp_path, nosimd=True))
    assert err["name"] == "UnsupportedError" and "SIMD" in err["message"]


def test_bad_inputs_then_recovers(run_node, zoo_artifact, tmp_path):
    path, ex = zoo_artifact("bert")
    ids, mask = ex
    good = {"input_ids": ids, "attention_mask": mask}
    runs = [
        {"input_ids": ids[:1], "attention_mask": mask[:1]},  # static dim 2 -> 1
        {"input_ids": ids.astype(np.float32), "attention_mask": mask},  # wrong dtype
        {"input_ids": ids, "attention_mask": mask[:, :5].copy()},  # seq disagrees
        {"input_ids": np.zeros((2, 70), np.int64), "attention_mask": np.ones((2, 70), np.int64)},  # > max
        {"input_ids": ids},  # missing input
        {"input_ids": ids + 10_000, "attention_mask": mask},  # index out of range -> trap
        good,  # still usable after all that
    ]
    res = run_node(path, runs, tmp_path)
    errs = [r.get("error") for r in res["runs"]]
    assert errs[0]["name"] == "InputError" and "axis 0: 1 != 2" in errs[0]["message"]
    assert errs[1]["name"] == "InputError" and "expects dtype int64" in errs[1]["message"]
    assert "Float32Array" in errs[1]["message"]
    assert errs[2]["name"] == "InputError" and "must agree" in errs[2]["message"]
    assert errs[3]["name"] == "InputError" and "outside the compiled range [2, 64]" in errs[3]["message"]
    assert errs[4]["name"] == "InputError" and "missing" in errs[4]["message"]
    assert errs[5]["name"] == "TrapError" and "out of range" in errs[5]["message"]
    assert errs[6] is None
    want = _py_outputs(path, good)["output_0"]
    assert np.abs(res["runs"][6]["outputs"]["output_0"] - want).max() <= 1e-5


def test_same_kind_casts_accepted(run_node, zoo_artifact, tmp_path):
    path, ex = zoo_artifact("bert")
    ids, mask = ex
    res = run_node(path, [{"input_ids": ids.astype(np.int32), "attention_mask": mask.astype(np.int32)}],
                   tmp_path)
    want = _py_outputs(path, {"input_ids": ids, "attention_mask": mask})["output_0"]
    assert np.abs(res["runs"][0]["outputs"]["output_0"] - want).max() <= 1e-5
