"""The packaged site in headless Debian Chromium (playwright-core, never a downloaded browser):
semantic search with all-MiniLM-L6-v2 matches PyTorch, bad artifacts give clear page errors."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch.export import Dim

from wasm_torch.deploy.web import package_site

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLAYWRIGHT = ROOT / ".cache" / "node"
CHROMIUM = Path("/usr/bin/chromium")
QUERIES = ["a musical instrument", "what did critics think of the film?", "machine learning in web pages"]


@pytest.fixture(scope="session")
def browser(node):
    """Runs tests/js/browser.mjs; fails (never skips) when chromium or playwright-core is missing."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/setup_browser.sh (apt-get install -y chromium)")
    if not (PLAYWRIGHT / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not in {PLAYWRIGHT}: run scripts/setup_browser.sh")

    def run(url: str, tmp: Path, **job) -> dict:
        job = {"playwright": str(PLAYWRIGHT) + "/", "url": url, **job}
        (tmp / "browser.json").write_text(json.dumps(job))
        p = subprocess.run([node, str(HERE / "browser.mjs"), str(tmp / "browser.json")],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"browser.mjs failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        res = json.loads(p.stdout.strip().splitlines()[-1])
        assert "fatal" not in res, res["fatal"]
        return res

    return run


class _Plain(http.server.SimpleHTTPRequestHandler):
    """A static server without the COOP/COEP headers (a page that is not cross-origin isolated)."""

    extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *a):
        pass


@pytest.fixture
def plain_server():
    servers = []

    def start(folder: Path) -> str:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Plain, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/"

    yield start
    for s in servers:
        s.shutdown()


@pytest.fixture
def isolated_server():
    """The site's own serve.py (the server hint package_site writes), on a free port."""
    procs = []

    def start(folder: Path) -> str:
        p = subprocess.Popen([sys.executable, str(folder / "serve.py"), "0"], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"serve.py said {line!r}"
        return m.group(0)

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.fixture(scope="session")
def minilm_env(artifacts, tmp_path_factory):
    from wasm_torch.zoo import minilm

    model, tok = minilm()
    enc = tok(["an example"], return_tensors="pt")
    seq = Dim("seq", min=2, max=256)
    art = artifacts("minilm", model, (enc["input_ids"], enc["attention_mask"]),
                    {"input_ids": {1: seq}, "attention_mask": {1: seq}})
    site = package_site(art.path, tmp_path_factory.mktemp("site") / "site")
    return model, tok, site


def torch_embed(model, tok, texts: list[str]) -> np.ndarray:
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok([t], return_tensors="pt")
            h = model(enc["input_ids"], enc["attention_mask"]).numpy()
            m = enc["attention_mask"].numpy()[..., None].astype(np.float32)
            e = (h * m).sum(1) / m.sum(1)
            out.append(e[0] / np.linalg.norm(e[0]))
    return np.stack(out)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _errors(res: dict) -> list:
    return [c for c in res["console"] if c["type"] == "error"] + res["pageErrors"] + res["failedRequests"]


def test_search_demo_isolated(minilm_env, browser, isolated_server, tmp_path):
    model, tok, site = minilm_env
    out_dir = Path(os.environ.get("WASM_TORCH_JS_RESULTS", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "js_demo.png"
    res = browser(isolated_server(site), tmp_path, queries=QUERIES, screenshot=str(shot))
    st = res["state"]
    assert st["ready"] and st["error"] is None, st
    assert not _errors(res), _errors(res)
    assert st["isolated"] is True and "cross-origin isolated" in st["status"]
    assert st["timings"]["threads"] >= 1
    want_docs = torch_embed(model, tok, st["docs"])
    assert _cos(st["embeddings"], want_docs).min() >= 0.9999
    assert np.allclose(np.linalg.norm(st["embeddings"], axis=1), 1, atol=1e-5)
    for q in res["queries"]:
        want_q = torch_embed(model, tok, [q["query"]])[0]
        assert _cos(q["embedding"], want_q) >= 0.9999
        want_rank = list(np.argsort(-(want_docs @ want_q), kind="stable"))
        assert [r["index"] for r in q["ranking"]] == want_rank, q["query"]
    assert res["shown"] == [r["index"] for r in res["queries"][-1]["ranking"]]
    assert st["bytes"]["weights"] == (site / "model" / "weights.bin").stat().st_size
    assert shot.stat().st_size > 10_000
    figures = {
        "first_load_ms": st["timings"]["firstLoadMs"],
        "model_load_ms": st["timings"]["loadMs"],
        "embed_docs_ms": st["timings"]["embedDocsMs"],
        "docs": len(st["docs"]),
        "query_ms": [q["ms"] for q in res["queries"]],
        "threads": st["timings"]["threads"],
        "bytes": {k: v for k, v in st["bytes"].items() if k != "files"},
        "screenshot": str(shot),
    }
    (out_dir / "js_demo.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))


def test_search_demo_intra_op_threads(minilm_env, browser, isolated_server, tmp_path):
    """The demo on 2 intra-op threads: the helper thread really runs, and the embeddings are
    bit-identical to the same page on 1 thread (the deterministic build and the default one)."""
    _, _, site = minilm_env
    url = isolated_server(site)
    for variant in ("simd128", None):
        q = f"&variant={variant}" if variant else ""
        one = browser(f"{url}?threads=1{q}", tmp_path)["state"]
        two = browser(f"{url}?threads=2{q}", tmp_path)["state"]
        assert one["ready"] and two["ready"], (one["error"], two["error"])
        assert one["timings"]["threads"] == 1 and two["timings"]["threads"] == 2
        assert two["timings"]["variant"].endswith("-threads") and two["isolated"]
        assert two["embeddings"] == one["embeddings"], "1 and 2 threads must give the same bits"
        (stats,) = two["threadStats"]  # one worker, two threads
        assert stats["threads"] == 2 and stats["chunks"][1] > 0, stats


def test_search_demo_not_isolated_warns(minilm_env, browser, plain_server, tmp_path):
    _, _, site = minilm_env
    res = browser(plain_server(site), tmp_path, queries=["a guitar"])
    st = res["state"]
    assert st["ready"] and not st["isolated"] and st["timings"]["threads"] == 1
    assert not _errors(res), _errors(res)
    warns = [c["text"] for c in res["console"] if c["type"] == "warning"]
    assert any("NOT cross-origin isolated" in w for w in warns), warns
    assert res["queries"][0]["ranking"][0]["index"] in (0, 1)  # the two guitar sentences


@pytest.fixture(scope="session")
def mlp_site(zoo_artifact, tmp_path_factory):
    path, _ = zoo_artifact("mlp")
    return path, package_site(path, tmp_path_factory.mktemp("mlp") / "site")


def test_generic_page_runs(mlp_site, browser, plain_server, tmp_path):
    import wasm_torch

    path, site = mlp_site
    res = browser(plain_server(site), tmp_path)
    st = res["state"]
    assert st["ready"] and not _errors(res), res
    assert "one run on zeros" in st["status"]
    want = wasm_torch.load(path)(np.zeros((1, 64), np.float32))
    assert want.shape == (1, 10)


def _broken(site: Path, tmp: Path, how: str) -> Path:
    dst = tmp / "broken"
    shutil.copytree(site, dst)
    w = dst / "model" / "weights.bin"
    if how == "missing":
        w.unlink()
    elif how == "corrupt":
        b = bytearray(w.read_bytes())
        b[100] ^= 0xFF
        w.write_bytes(bytes(b))
    return dst


@pytest.mark.parametrize(
    ("how", "expect"),
    [
        ("missing", r"ArtifactError: .*weights\.bin could not be fetched: HTTP 404"),
        ("corrupt", r"IntegrityError: .*weights\.bin does not match its sha256"),
        ("nosimd", r"UnsupportedError: .*lacks WebAssembly SIMD128"),
    ],
)
def test_page_shows_clear_errors(how, expect, mlp_site, browser, plain_server, tmp_path):
    _, site = mlp_site
    folder = _broken(site, tmp_path, how)
    init = "WebAssembly.validate = () => false;" if how == "nosimd" else None
    res = browser(plain_server(folder), tmp_path, initScript=init, timeoutMs=30_000)
    st = res["state"]
    assert not st["ready"]
    assert re.search(expect, st["error"]), st["error"]
    assert "Could not run the model" in st["status"] and re.search(expect, st["status"])
