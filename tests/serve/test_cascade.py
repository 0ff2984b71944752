"""Cascade router: threshold calibration (known answers), routing with fakes, and real compiled
small/large digits classifiers run in-process and served over the KServe app."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import wasm_torch
from wasm_torch.errors import ArtifactError
from wasm_torch.serve.app import create_app
from wasm_torch.serve.cascade import (
    CASCADE_FILE,
    CascadeModel,
    calibrate_threshold,
    confidence,
    load_cascade,
    read_config,
    write_config,
)
from wasm_torch.serve.settings import ServeSettings

from .fakes import FakeModel, Spec


# --- calibration on synthetic confidences -------------------------------------------------------
def test_calibration_picks_the_smallest_threshold_keeping_large_accuracy():
    conf = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6]
    small = [1, 1, 1, 0, 1, 0]
    large = [1, 1, 1, 1, 1, 1]
    exact = calibrate_threshold(conf, small, large, tolerance=0.0)
    assert exact.threshold == 0.9 and exact.small_fraction == 0.5 and exact.cascade_accuracy == 1.0
    # one small-model mistake allowed (5/6 >= 1 - 0.17): accept down to 0.7, not 0.6 (two mistakes)
    loose = calibrate_threshold(conf, small, large, tolerance=0.17)
    assert loose.threshold == 0.7 and loose.small_fraction == pytest.approx(5 / 6)
    assert loose.cascade_accuracy == pytest.approx(5 / 6) and loose.large_accuracy == 1.0


def test_calibration_ties_are_accepted_together_and_never_is_possible():
    # the two 0.9 rows go together; one is wrong, so no threshold keeps 100 %: always defer
    cal = calibrate_threshold([0.9, 0.9, 0.5], [1, 0, 1], [1, 1, 1], tolerance=0.0)
    assert math.isinf(cal.threshold) and cal.small_fraction == 0.0 and cal.to_json()["threshold"] is None


def test_calibration_accepts_everything_when_the_small_model_is_as_good():
    cal = calibrate_threshold([0.9, 0.8, 0.3], [1, 1, 1], [0, 1, 1], tolerance=0.0)
    assert cal.threshold == 0.3 and cal.small_fraction == 1.0 and cal.cascade_accuracy == 1.0


@pytest.mark.parametrize(
    "args",
    [([], [], []), ([0.5, 0.6], [1], [1, 1]), ([float("nan")], [1], [1]), ([0.5], [1], [1], 1.5)],
)
def test_calibration_rejects_bad_input(args):
    with pytest.raises(ValueError):
        calibrate_threshold(*args)


def test_confidence_against_torch_softmax():
    logits = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32) * 3
    p = torch.softmax(torch.from_numpy(logits).double(), dim=1)
    top2 = p.topk(2, dim=1).values
    np.testing.assert_allclose(confidence(logits, "max_prob"), top2[:, 0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(confidence(logits, "margin"), (top2[:, 0] - top2[:, 1]).numpy(), rtol=1e-9)
    with pytest.raises(ValueError, match="unknown cascade score"):
        confidence(logits, "entropy")


# --- routing with fakes ------------------------------------------------------------------------------
class Logits(FakeModel):
    """x (batch, 4) -> logits (batch, 3): x[:, :3] * scale. Records the rows it was given."""

    def __init__(self, scale: float, inputs=None) -> None:
        super().__init__(inputs, [Spec("output_0", "float32", ("batch", 3))])
        self.scale, self.seen = scale, []

    def run(self, inputs):
        x = inputs["x"]
        self.seen.append(x.copy())
        return {"output_0": (x[:, :3] * self.scale).astype(np.float32)}

    def stats(self):
        return {"calls": len(self.seen), "memory_bytes": 1000}


def test_routes_low_confidence_rows_to_the_large_model():
    small, large = Logits(1.0), Logits(-2.0)
    cascade = CascadeModel(small, large, threshold=0.9)
    x = np.array([[9, 0, 0, 0], [0, 0, 0, 0], [0, 8, 0, 0], [1, 1, 0, 0]], np.float32)
    out = cascade.run({"x": x})
    assert out["cascade_model"].tolist() == [0, 1, 0, 1]  # peaked rows stay small, flat rows go large
    assert out["cascade_model"].dtype == np.int32 and out["cascade_confidence"].dtype == np.float32
    np.testing.assert_array_equal(large.seen[0], x[[1, 3]])  # only the deferred rows reach the large
    np.testing.assert_array_equal(out["output_0"][[0, 2]], x[[0, 2], :3])
    np.testing.assert_array_equal(out["output_0"][[1, 3]], -2 * x[[1, 3], :3])
    np.testing.assert_allclose(out["cascade_confidence"], confidence(x[:, :3]), rtol=1e-6)
    assert cascade.stats() == {"calls": 1, "memory_bytes": 2000, "answered_small": 2, "answered_large": 2}
    never = CascadeModel(Logits(1.0), Logits(1.0), threshold=math.inf).run({"x": x})
    assert never["cascade_model"].tolist() == [1, 1, 1, 1]


def test_members_must_agree():
    with pytest.raises(ArtifactError, match="same inputs"):
        CascadeModel(Logits(1.0), Logits(1.0, inputs=[Spec("x", "float32", ("batch", 5))]), 0.5)
    with pytest.raises(ArtifactError, match="must exist in both"):
        CascadeModel(Logits(1.0), Logits(1.0), 0.5, output="logits")
    flat = FakeModel([Spec("x", "float32", ("batch", 4))], [Spec("y", "float32", ("batch",))])
    with pytest.raises(ArtifactError, match="logits of shape"):
        CascadeModel(flat, flat, 0.5)


# --- real compiled models ---------------------------------------------------------------------------
class Linear(torch.nn.Module):
    def __init__(self, hidden: int = 0) -> None:
        super().__init__()
        layers = (
            [torch.nn.Linear(64, 10)]
            if not hidden
            else [torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)]
        )
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Small (logistic regression) and large (MLP) digits classifiers, a few epochs each, compiled
    into one cascade folder with the threshold at the median test confidence (both paths used)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    root = tmp_path_factory.mktemp("cascade") / "digits"
    batch = torch.export.Dim("batch", min=1, max=64)
    for i, (name, hidden, epochs) in enumerate((("small", 0, 15), ("large", 64, 40))):
        torch.manual_seed(i)
        model = Linear(hidden)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(epochs):
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(x[:1200])), torch.from_numpy(y[:1200])
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        wasm_torch.compile(
            model.eval(), (torch.from_numpy(x[:4]),), root / name, dynamic_shapes=({0: batch},)
        )
    test = x[1200:1232]
    small = wasm_torch.load(root / "small")
    threshold = float(np.median(confidence(small(test))))
    write_config(root, "small", "large", threshold)
    return root, test, threshold


@pytest.mark.toolchain
def test_cascade_result_is_the_answering_models_result(digits):
    root, test, threshold = digits
    cascade = load_cascade(root)
    small, large = wasm_torch.load(root / "small"), wasm_torch.load(root / "large")
    out = cascade.run({"x": test})
    which = out["cascade_model"]
    assert 0 < which.sum() < len(test)  # both paths exercised
    want = np.where(which[:, None] == 1, large(test), small(test))
    np.testing.assert_allclose(out["output_0"], want, rtol=1e-5, atol=1e-6)
    assert ((confidence(small(test)) >= threshold) == (which == 0)).all()
    for i in range(4):  # one row at a time takes the same route
        one = cascade.run({"x": test[i : i + 1]})
        assert one["cascade_model"][0] == which[i]
        np.testing.assert_allclose(one["output_0"][0], out["output_0"][i], rtol=1e-5, atol=1e-6)


@pytest.mark.toolchain
def test_cascade_is_served_as_one_model(digits):
    root, test, _ = digits
    expected = load_cascade(root).run({"x": test[:6]})
    app = create_app(root.parent, ServeSettings(replicas=1, healing=False))  # discovered by cascade.json
    with TestClient(app) as c:
        meta = c.get("/v2/models/digits").json()
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
            ("output_0", "FP32"),
            ("cascade_model", "INT32"),
            ("cascade_confidence", "FP32"),
        ]
        body = {
            "inputs": [{"name": "x", "shape": [6, 64], "datatype": "FP32", "data": test[:6].ravel().tolist()}]
        }
        r = c.post("/v2/models/digits/infer", json=body)
        assert r.status_code == 200, r.text
        outs = {o["name"]: o for o in r.json()["outputs"]}
        assert outs["cascade_model"]["data"] == expected["cascade_model"].tolist()
        np.testing.assert_allclose(
            np.reshape(outs["output_0"]["data"], (6, 10)), expected["output_0"], rtol=1e-6
        )
        only = c.post("/v2/models/digits/infer", json={**body, "outputs": [{"name": "cascade_model"}]}).json()
        assert [o["name"] for o in only["outputs"]] == ["cascade_model"]


@pytest.mark.toolchain
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("format"), "'format' must be"),
        (lambda d: d.update(small="missing"), "not a compiled artifact folder"),
        (lambda d: d.update(large="small"), "same folder"),
        (lambda d: d.pop("large"), "'large' must name"),
        (lambda d: d.update(threshold=1.5), "'threshold' must be in"),
        (lambda d: d.update(threshold="high"), "'threshold' must be a number"),
        (lambda d: d.update(threshold=float("nan")), "'threshold' must be a number"),
        (lambda d: d.update(score="entropy"), "'score' must be one of"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d.update(output="logits"), "must exist in both"),
    ],
)
def test_bad_cascade_config_is_refused_with_a_clear_error(digits, tmp_path, edit, message):
    """A bad cascade.json refuses that model only (listed with the reason), never the server."""
    root, _, _ = digits
    folder = tmp_path / "bad"
    folder.mkdir()
    for member in ("small", "large"):
        (folder / member).symlink_to(root / member)
    cfg = json.loads((root / CASCADE_FILE).read_text())
    edit(cfg)
    (folder / CASCADE_FILE).write_text(json.dumps(cfg))
    with TestClient(create_app({"bad": folder}, ServeSettings(replicas=1, healing=False))) as c:
        (row,) = c.post("/v2/repository/index").json()
        assert row["name"] == "bad" and row["state"] == "UNAVAILABLE"
        assert row["reason"].startswith("ArtifactError: ") and re.search(message, row["reason"]), row
        r = c.get("/v2/models/bad")
        assert r.status_code == 503 and re.search(message, r.json()["error"])
        assert str(tmp_path) not in r.json()["error"]  # the server's folder layout is not disclosed


def test_unreadable_config(tmp_path: Path):
    with pytest.raises(ArtifactError, match="not found"):
        read_config(tmp_path)
    (tmp_path / CASCADE_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_config(tmp_path)
    (tmp_path / CASCADE_FILE).write_text('["a list"]')
    with pytest.raises(ArtifactError, match="must hold a JSON object"):
        read_config(tmp_path)
