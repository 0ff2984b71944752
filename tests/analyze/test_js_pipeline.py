"""wasm_torch/js/pipeline.mjs: the same pipeline in Node (stages on one thread) and in headless
Chromium (each stage in its own Web Worker) gives outputs bit-identical to the Python runner."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from wasm_torch.analyze.runner import Pipeline
from wasm_torch.zoo import ZOO

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JS = ROOT / "wasm_torch" / "js"
PLAYWRIGHT = ROOT / ".cache" / "node"


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not installed: run scripts/setup_browser.sh (or apt-get install -y nodejs)")
    return exe


@pytest.fixture(scope="module")
def vit(pipelines):
    art, _, _, _ = pipelines("vit", 3)
    x = ZOO["vit"].inputs(torch.Generator().manual_seed(21))[0].numpy()
    return art.path, x, Pipeline(art.path, variant="simd128")(x)  # the build every engine reproduces


def _node_job(node, tmp: Path, pipe: Path, x: np.ndarray, **extra) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "x.bin").write_bytes(np.ascontiguousarray(x).tobytes())
    job = {"module": (JS / "pipeline.mjs").as_uri(), "pipeline": str(pipe), "runs": 3, "out": str(tmp),
           "inputs": [{"name": "pixel_values", "dtype": "float32", "shape": list(x.shape), "file": str(tmp / "x.bin")}],
           **extra}
    (tmp / "job.json").write_text(json.dumps(job))
    p = subprocess.run([node, str(HERE / "pipeline_node.mjs"), str(tmp / "job.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads((tmp / "result.json").read_text())


def test_node_pipeline_matches_python(node, vit, tmp_path):
    path, x, want = vit
    res = _node_job(node, tmp_path / "ok", path, x, badInput=True)
    assert "error" not in res, res
    assert res["workers"] is False and res["stages"] == 3 and res["variants"] == ["simd128"] * 3
    for run in res["runs"]:
        o = run["output_0"]
        got = np.fromfile(o["file"], dtype=o["dtype"]).reshape(o["shape"])
        assert np.array_equal(got, want)
    assert res["badInput"]["name"] == "InputError" and "micro-batch 0, stage 0" in res["badInput"]["message"]


def test_node_pipeline_refuses_tampering(node, vit, tmp_path):
    path, x, _ = vit
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    mf = bad / "stage_2" / "manifest.json"
    mf.write_text(mf.read_text().replace('"name": "', '"name": "x', 1))
    res = _node_job(node, tmp_path / "t", bad, x)
    assert res["error"]["name"] == "IntegrityError" and "stage_2/manifest.json" in res["error"]["message"]
    doc = json.loads((path / "pipeline.json").read_text())
    doc["stages"][0]["dir"] = "../../etc"
    shutil.copytree(path, tmp_path / "bad2")
    (tmp_path / "bad2" / "pipeline.json").write_text(json.dumps(doc))
    res = _node_job(node, tmp_path / "t2", tmp_path / "bad2", x)
    assert res["error"]["name"] == "ArtifactError" and "plain folder name" in res["error"]["message"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                                                ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *a):
        pass


@pytest.mark.slow
def test_browser_runs_each_stage_in_its_own_worker(node, vit, tmp_path):
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/setup_browser.sh")
    if not (PLAYWRIGHT / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not in {PLAYWRIGHT}: run scripts/setup_browser.sh")
    path, x, want = vit
    site = tmp_path / "site"
    shutil.copytree(JS, site / "js", ignore=shutil.ignore_patterns("demo", "node_modules"))
    shutil.copytree(path, site / "pipe")
    shutil.copy(HERE / "pipeline_page.html", site / "index.html")
    (site / "x.bin").write_bytes(np.ascontiguousarray(x).tobytes())
    (site / "job.json").write_text(json.dumps({"runs": 2, "inputs": [
        {"name": "pixel_values", "dtype": "float32", "shape": list(x.shape), "file": "./x.bin"}]}))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        job = tmp_path / "browser.json"
        job.write_text(json.dumps({"playwright": str(PLAYWRIGHT) + "/", "url": f"http://127.0.0.1:{srv.server_port}/"}))
        p = subprocess.run([node, str(HERE / "pipeline_browser.mjs"), str(job)], capture_output=True, text=True,
                           timeout=300)
    finally:
        srv.shutdown()
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert "fatal" not in res and not res["pageErrors"], res
    state = res["state"]
    assert "error" not in state, state["error"]
    assert state["workers"] is True and state["stages"] == 3 and state["variants"] == ["simd128"] * 3
    assert sum(u.endswith("/js/wasm-torch-worker.mjs") for u in res["workerUrls"]) == 3  # one per stage
    for out in state["outputs"]:
        o = out["output_0"]
        got = np.asarray(o["data"], dtype=np.float64).astype(np.float32).reshape(o["shape"])
        assert np.array_equal(got, want)
