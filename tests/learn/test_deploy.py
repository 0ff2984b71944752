"""`wasm-torch deploy`: each target's folder works with the tool that consumes it (serve app, signature
verification, static site), refusals explain themselves and write nothing, and the CLI's flags are
checked before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from wasm_torch.cli import main
from wasm_torch.deploy.deploy import DeployError, Requirements, deploy
from wasm_torch.errors import KeyringError
from wasm_torch.integrity.signing import generate_key, verify_artifact, write_private_key, write_public_key

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def tiny() -> tuple[torch.nn.Module, tuple]:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).eval(), (
        torch.randn(2, 8),
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    k = generate_key()
    write_private_key(k, d / "rel.key")
    write_public_key(k, d / "rel.pub")
    return d / "rel.key", d / "rel.pub"


def run(tmp_path: Path, keys, target: str, **kw):
    model, x = tiny()
    return deploy(model, x, tmp_path / target, target=target, keys=[keys[0]], memory=tmp_path / "mem",
                  bench_seconds=0.2, **kw)


def test_edge_job_folder(tmp_path, keys):
    rep = run(tmp_path, keys, "edge", budget=1)
    out = tmp_path / "edge"
    assert sorted(p.name for p in out.iterdir()) == ["artifact", "deploy.json", "job.json"]
    assert verify_artifact(out / "artifact", [keys[1]])  # signed by the given key
    job = json.loads((out / "job.json").read_text())
    import hashlib

    assert job["artifact_sha256"] == hashlib.sha256((out / "artifact" / "manifest.json").read_bytes()).hexdigest()
    assert job["format"] == "wasm-torch-edge-job/1" and job["inputs"][0]["shape"] == [2, 8]
    assert "wasm-torch job submit" in job["submit"]
    manifest = json.loads((out / "artifact" / "manifest.json").read_text())
    assert manifest["tuning"]["trials"] == 1 and "validation" in manifest
    report = json.loads((out / "deploy.json").read_text())
    assert report["met"] and report["latency_ms"]["p50"] > 0 and rep.size_bytes["total"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".edge")]  # no staging left behind


def test_serve_folder_is_served_with_signatures_required(tmp_path, keys):
    rep = run(tmp_path, keys, "serve", budget=0)
    from wasm_torch.serve.app import create_app
    from wasm_torch.serve.settings import ServeSettings

    out = tmp_path / "serve"
    pubs = tuple((out / "trusted").iterdir())
    assert len(pubs) == 1 and "--require-signed" in rep.next_steps[0]
    app = create_app(out / "models", ServeSettings(replicas=1, healing=False, require_signature=True, trusted_keys=pubs))
    model, (x,) = tiny()
    with TestClient(app) as c:
        meta = c.get("/v2/models/serve").json()
        body = {"inputs": [{"name": meta["inputs"][0]["name"], "shape": [2, 8], "datatype": "FP32",
                            "data": x.flatten().tolist()}]}
        r = c.post("/v2/models/serve/infer", json=body)
        assert r.status_code == 200
        got = np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(2, 2)
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-4, rtol=1e-3)


def test_web_site_carries_the_signature(tmp_path, keys):
    run(tmp_path, keys, "web", budget=0)
    site = tmp_path / "web" / "site"
    for f in ("index.html", "serve.py", "wasm-torch.mjs", "model/manifest.json", "model/signature.json"):
        assert (site / f).exists(), f
    assert verify_artifact(site / "model", [keys[1]])


def test_impossible_size_is_refused_before_tuning_and_nothing_written(tmp_path, keys):
    model, x = tiny()
    with pytest.raises(DeployError, match=r"weights alone are 0\.00.* MB"):
        deploy(model, x, tmp_path / "o", target="web", keys=[keys[0]], requirements=Requirements(max_size_mb=1e-4),
               memory=tmp_path / "mem")
    assert not (tmp_path / "o").exists() and not (tmp_path / "mem").exists()  # refused before any work


def test_impossible_latency_is_refused_after_measuring_and_nothing_written(tmp_path, keys):
    model, x = tiny()
    with pytest.raises(DeployError, match=r"cannot meet --max-latency-ms 1e-06 on this machine: one call takes"):
        deploy(model, x, tmp_path / "o", target="edge", keys=[keys[0]], budget=0, bench_seconds=0.1,
               requirements=Requirements(max_latency_ms=1e-6))
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.deploy")]


def test_refusals_before_any_work(tmp_path, keys):
    model, x = tiny()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("the user's file")
    with pytest.raises(DeployError, match="never overwrites"):
        deploy(model, x, tmp_path / "full", target="web", keys=[keys[0]])
    assert (tmp_path / "full" / "mine.txt").read_text() == "the user's file"
    with pytest.raises(DeployError, match="--key"):
        deploy(model, x, tmp_path / "o", target="web", keys=[])
    with pytest.raises(DeployError, match="--target"):
        deploy(model, x, tmp_path / "o", target="ftp", keys=[keys[0]])
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(KeyringError):
        deploy(model, x, tmp_path / "o", target="web", keys=[tmp_path / "bad.key"])
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(DeployError, match="positive"):
            Requirements(max_latency_ms=bad)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tune", "zoo:nope"], "unknown zoo model"),
        (["tune", "no_such_module_xyz:make"], "cannot import"),
        (["tune", "nocolon"], "expected pkg.module:factory"),
        (["tune", "zoo:mlp", "--input-shape", "1,a"], "comma-separated whole numbers"),
        (["tune", "zoo:mlp", "--input-shape", "0,4"], "every size must be >= 1"),
        (["tune", "zoo:mlp", "--input-shape", "100000,100000"], "at most"),
        (["tune", "zoo:mlp", "--input-shape", "1,64", "--dtype", "complex128"], "--dtype"),
        (["tune", "zoo:mlp", "--dynamic", "0:1:seq"], "INPUT:AXIS:NAME:MAX"),
        (["tune", "zoo:mlp", "--dynamic", "5:1:seq:64"], "INPUT:AXIS:NAME:MAX"),
        (["tune", "zoo:mlp", "--dynamic", "0:1:1bad:64"], "INPUT:AXIS:NAME:MAX"),
    ],
)
def test_cli_bad_model_flags_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--memory", "/nonexistent/never-created", "--quiet"])
    assert message in str(e.value.code)
    assert not Path("/nonexistent/never-created").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["tune", "zoo:mlp", "--budget", "-1"],
        ["tune", "zoo:mlp", "--budget", "many"],
        ["deploy", "zoo:mlp", "--target", "ftp", "-o", "x", "--key", "k"],
        ["deploy", "zoo:mlp", "--target", "web", "-o", "x", "--key", "k", "--max-latency-ms", "nan"],
        ["deploy", "zoo:mlp", "--target", "web", "-o", "x", "--key", "k", "--max-size-mb", "-3"],
        ["deploy", "zoo:mlp", "--target", "web", "--key", "k"],
    ],
)
def test_cli_bad_numbers_and_choices_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_tune_and_deploy_end_to_end(tmp_path, keys, capsys):
    assert main(["tune", "zoo:mlp", "--budget", "1", "--rounds", "3", "--confirm", "1", "--memory",
                 str(tmp_path / "mem"), "--quiet", "--json", str(tmp_path / "t.json"), "-o", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "tuned zoo:mlp: 1 trials" in out
    assert json.loads((tmp_path / "t.json").read_text())["trials"][0]["source"] == "default"
    assert "tuning" in json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert main(["memory", "--memory", str(tmp_path / "mem"), "--consolidate"]) == 0
    assert "1 patterns, index built" in capsys.readouterr().out
    code = main(["deploy", "zoo:mlp", "--target", "serve", "-o", str(tmp_path / "d"), "--key", str(keys[0]),
                 "--budget", "0", "--max-latency-ms", "0.000001", "--quiet"])
    assert code == 2 and "cannot meet --max-latency-ms" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_auto_quantize_picks_the_most_precise_format_that_fits(tmp_path, keys):
    """--max-size-mb that float32 cannot meet: fp16 when it fits, int8 when only int8 does (each
    validated at compile); nothing fits: refused before any work, naming the smallest format."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 16)).eval()
    x = (torch.randn(4, 256),)  # float32 weights: 559,168 B
    for limit, fmt in ((0.4, "fp16"), (0.2, "int8")):
        rep = deploy(model, x, tmp_path / fmt, target="serve", keys=[keys[0]], budget=0, bench_seconds=0.1,
                     requirements=Requirements(max_size_mb=limit))  # fmt: skip
        assert rep.quantize == fmt and rep.size_bytes["total"] <= limit * 1e6
        manifest = json.loads(next((tmp_path / fmt / "models").glob("*/manifest.json")).read_text())
        assert manifest["compiler"]["options"]["quantize"] == fmt
    with pytest.raises(DeployError, match=r"at least 0\.14.* MB as int8"):
        deploy(model, x, tmp_path / "none", target="serve", keys=[keys[0]], budget=0,
               requirements=Requirements(max_size_mb=0.1))  # fmt: skip
    with pytest.raises(DeployError, match=r"as fp16 \(--quantize fp16\)"):
        deploy(model, x, tmp_path / "none", target="serve", keys=[keys[0]], budget=0, quantize="fp16",
               requirements=Requirements(max_size_mb=0.2))  # fmt: skip
    assert not (tmp_path / "none").exists()
