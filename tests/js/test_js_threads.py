"""Intra-op threads in the JS runtime: in Node (worker_threads) and in headless Chromium (Web
Workers over a SharedArrayBuffer, on a cross-origin isolated page), every zoo model gives outputs
bit-identical to the Python runtime's model.wasm at every thread count, more than one thread
really runs, and a page that is not isolated warns loudly and runs on one thread."""

from __future__ import annotations

import base64
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
from torch import nn

import wasm_torch
from wasm_torch.runtime import WasmModule
from wasm_torch.zoo import ZOO

from .conftest import JS

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]

HERE = Path(__file__).resolve().parent
PLAYWRIGHT = HERE.parents[1] / ".cache" / "node"
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}


def _inputs(path: Path, name: str) -> dict[str, np.ndarray]:
    names = [s["name"] for s in json.loads((path / "manifest.json").read_text())["inputs"]]
    xs = [x.numpy() for x in ZOO[name].inputs(torch.Generator().manual_seed(31))]
    return dict(zip(names, xs, strict=True))


def _plain(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return WasmModule(path).run(inputs)


@pytest.fixture(scope="module")
def wide_artifact(tmp_path_factory):
    """Enough work per call that every helper thread claims chunks."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 256), nn.LayerNorm(256))
    art = wasm_torch.compile(model, (torch.randn(128, 256),), tmp_path_factory.mktemp("wide") / "wide",
                             options=wasm_torch.CompileOptions(relaxed=True))
    name = art.manifest.inputs[0].name
    return art.path, {name: np.random.default_rng(0).standard_normal((128, 256)).astype(np.float32)}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_node_zoo_bit_identical_across_threads(name, run_node, zoo_artifact, tmp_path):
    path, _ = zoo_artifact(name)
    inputs = _inputs(path, name)
    want = _plain(path, inputs)
    for threads in (1, 2, 3):
        res = run_node(path, [inputs], tmp_path / f"t{threads}", threads=threads, repeat=2)
        assert "error" not in res and "error" not in res["runs"][0], res
        assert res["stats"]["threads"] == threads
        assert res["stats"]["variant"] == ("simd128-threads" if threads > 1 else "simd128")  # Node 20: no relaxed SIMD
        for k, w in want.items():
            g = res["runs"][0]["outputs"][k]
            assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes(), (name, threads, k)


def test_node_helpers_really_run(wide_artifact, run_node, tmp_path):
    path, inputs = wide_artifact
    res = run_node(path, [inputs], tmp_path, threads=3, repeat=20)
    st = res["threadStats"]
    assert "error" not in res["runs"][0], res
    assert st["threads"] == 3 and st["jobs"] >= 20 and sum(st["chunks"][1:]) > 0, st
    assert res["runs"][0]["outputs"]["output_0"].tobytes() == _plain(path, inputs)["output_0"].tobytes()


def test_node_bad_thread_counts(wide_artifact, run_node, tmp_path):
    path, inputs = wide_artifact
    for k, bad in enumerate((0, 65, 1.5, "2")):
        res = run_node(path, [inputs], tmp_path / str(k), threads=bad)
        assert res["error"]["name"] == "ThreadsError" and "threads=" in res["error"]["message"], res
    res = run_node(path, [inputs], tmp_path / "v", variant="avx512")
    assert res["error"]["name"] == "ThreadsError" and "no \"avx512\" build" in res["error"]["message"]


# ---- Chromium ---------------------------------------------------------------------------------------
class _Static(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                                                ".mjs": "text/javascript", ".wasm": "application/wasm"}
    extra_headers: ClassVar[dict[str, str]] = {}

    def end_headers(self):
        for k, v in self.extra_headers.items():
            self.send_header(k, v)
        super().end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(folder: Path, isolated: bool) -> str:
        handler = type("H", (_Static,), {"extra_headers": ISOLATION if isolated else {}})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/zoo_threads.html"

    yield start
    for s in servers:
        s.shutdown()


@pytest.fixture(scope="module")
def chromium(node):
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/setup_browser.sh")
    if not (PLAYWRIGHT / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not in {PLAYWRIGHT}: run scripts/setup_browser.sh")

    def run(url: str, tmp: Path) -> dict:
        (tmp / "eval.json").write_text(json.dumps({"playwright": str(PLAYWRIGHT) + "/", "url": url}))
        p = subprocess.run([node, str(HERE / "browser_eval.mjs"), str(tmp / "eval.json")],
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"browser_eval.mjs failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        res = json.loads(p.stdout.strip().splitlines()[-1])
        assert "fatal" not in res, res["fatal"]
        return res

    return run


def _site(tmp: Path, arts: dict[str, tuple[Path, dict[str, np.ndarray]]], runs: list[tuple[str, int]]) -> Path:
    site = tmp / "site"
    site.mkdir()
    for f in JS.glob("*.mjs"):
        shutil.copyfile(f, site / f.name)
    for f in ("zoo_threads.html", "zoo_threads.mjs"):
        shutil.copyfile(HERE / f, site / f)
    job = {"runs": [{"variant": v, "threads": t} for v, t in runs], "repeat": 3, "artifacts": []}
    for name, (path, inputs) in arts.items():
        shutil.copytree(path, site / "art" / name)
        spec = {}
        for k, arr in inputs.items():
            f = site / "in" / f"{name}_{k}.bin"
            f.parent.mkdir(exist_ok=True)
            f.write_bytes(np.ascontiguousarray(arr).tobytes())
            spec[k] = {"dtype": arr.dtype.name, "shape": list(arr.shape), "file": f"./in/{f.name}"}
        job["artifacts"].append({"name": name, "path": f"./art/{name}/", "inputs": spec})
    (site / "job.json").write_text(json.dumps(job))
    return site


RUNS = [("simd128", 1), ("simd128", 2), ("simd128", 3), ("auto", 1), ("auto", 2), ("auto", 3)]


def _decode(o: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(o["b64"]), dtype=o["dtype"]).reshape(o["shape"])


@pytest.mark.slow
def test_chromium_zoo_bit_identical_across_threads(zoo_artifact, wide_artifact, chromium, serve, tmp_path):
    arts = {name: (path := zoo_artifact(name)[0], _inputs(path, name)) for name in sorted(ZOO)}
    arts["wide"] = wide_artifact
    res = chromium(serve(_site(tmp_path, arts, RUNS), isolated=True), tmp_path)
    out = res["result"]
    assert "error" not in out, out
    assert out["isolated"] is True
    assert not [c for c in res["console"] if c["type"] in ("error", "warning")], res["console"]
    for name, (path, inputs) in arts.items():
        want = _plain(path, inputs)
        runs = out["models"][name]
        for run in runs:
            assert run["running"] == run["threads"], run  # no fallback on an isolated page
            relaxed = name == "wide" and run["variant"] == "auto"  # only `wide` has relaxed builds
            expect = ("relaxed" if relaxed else "simd128") + ("-threads" if run["threads"] > 1 else "")
            assert run["built"] == expect, run  # feature detection: Chromium has relaxed SIMD and (isolated) threads
            for k, w in want.items():
                got = _decode(run["outputs"][k])
                if not relaxed:  # V8 computes exactly what wasmtime computes
                    assert got.tobytes() == w.tobytes(), (name, run["threads"], k)
                else:
                    assert np.abs(got.astype(np.float64) - w).max() <= 1e-4 * max(1.0, np.abs(w).max()), (name, k)
        for variant in ("simd128", "auto"):  # whatever the thread count: the same bits
            same = [r["outputs"] for r in runs if r["variant"] == variant]
            assert all(o == same[0] for o in same), f"{name}/{variant}: thread counts disagree"
    for run in out["models"]["wide"]:
        if run["threads"] == 3:
            assert sum(run["stats"]["chunks"][1:]) > 0, run  # the helper workers claimed chunks


@pytest.mark.slow
def test_chromium_not_isolated_warns_and_runs_one_thread(wide_artifact, chromium, serve, tmp_path):
    res = chromium(serve(_site(tmp_path, {"wide": wide_artifact}, [("auto", 4)]), isolated=False), tmp_path)
    out = res["result"]
    assert out["isolated"] is False
    run = out["models"]["wide"][0]
    assert run["running"] == 1 and not run["built"].endswith("threads"), run
    warns = [c["text"] for c in res["console"] if c["type"] == "warning"]
    assert any("ONE thread, not 4" in w and "NOT cross-origin isolated" in w for w in warns), warns
    path, inputs = wide_artifact
    assert np.abs(_decode(run["outputs"]["output_0"]) - _plain(path, inputs)["output_0"]).max() <= 1e-4
