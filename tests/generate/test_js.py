"""Generation from JavaScript: Node (wasm-torch-generate.mjs) and the demo page in headless Chromium,
where the generator runs in a Web Worker and streams tokens to the page. The tokens equal Python's
(and so Hugging Face's); the byte-level BPE in bpe.mjs equals the `tokenizers` package."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from wasm_torch.deploy.web import HEADERS
from wasm_torch.generate import Sampling, load_generator
from wasm_torch.generate.sampling import process
from wasm_torch.generate.site import package_generator_site

from .conftest import CORPUS, MAX_CONTEXT

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JS = ROOT / "wasm_torch" / "js"
PLAYWRIGHT = ROOT / ".cache" / "node"
CHROMIUM = Path("/usr/bin/chromium")
PROMPTS = ([5, 17, 42, 99], [7])


def run_node(node: str, tmp: Path, **job) -> dict:
    job = {"module": (JS / "wasm-torch-generate.mjs").as_uri(), "bpe": (JS / "bpe.mjs").as_uri(), **job}
    (tmp / "job.json").write_text(json.dumps(job))
    p = subprocess.run([node, str(HERE / "gen_node.mjs"), str(tmp / "job.json")], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 0, f"node failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("which, threads", [("gpt2_gen", 1), ("llama_gen", 2)])
def test_node_generates_pythons_tokens_and_streams_them(which, threads, request, node, tmp_path, tokenizer):
    c = request.getfixturevalue(which)
    rng = np.random.default_rng(0)
    cases = [{"logits": rng.standard_normal(50).tolist(), "context": [1, 2, 2, 40], "opts": o} for o in (
        {"repetitionPenalty": 1.3}, {"doSample": True, "temperature": 0.7, "topK": 5},
        {"doSample": True, "topP": 0.8, "repetitionPenalty": 1.1}, {"doSample": True, "topK": 3, "topP": 0.5})]  # fmt: skip
    texts = [*CORPUS[:5], "x<|endoftext|>y  spaces\n\ttabs 12345"]
    res = run_node(node, tmp_path, artifact=str(c.path), threads=threads,
                   tokenizer=str(c.path / "tokenizer.json") if which == "gpt2_gen" else None, encode=texts,
                   greedy=[{"prompt": p, "n": 40} for p in PROMPTS],
                   sampled={"prompt": [5, 6], "n": 20, "opts": {"doSample": True, "topP": 0.9, "seed": 3}},
                   logits=cases)  # fmt: skip
    assert res["threads"] == threads
    with load_generator(c.path, threads=1) as gen:
        for prompt, g in zip(PROMPTS, res["greedy"], strict=True):
            assert g["ids"] == gen.generate(prompt, 40)
            # the callback saw each token as it was chosen: in order, before the next step ran
            assert [(t, i) for t, i, _ in g["events"]] == [(t, i) for i, t in enumerate(g["ids"])]
            assert [n for _, _, n in g["events"]] == [len(prompt) + i for i in range(len(g["ids"]))]
        assert res["after_errors"] == gen.generate(PROMPTS[0], 5)  # usable after every refusal
    a, b = res["sampled"]
    assert a == b and len(set(a)) > 3  # seeded: the same tokens twice
    for case, got in zip(cases, res["processed"], strict=True):
        o = case["opts"]
        s = Sampling(do_sample=o.get("doSample", False), temperature=o.get("temperature", 1.0), top_k=o.get("topK", 0),
                     top_p=o.get("topP", 1.0), repetition_penalty=o.get("repetitionPenalty", 1.0))  # fmt: skip
        want = process(np.array(case["logits"]), case["context"], s)
        np.testing.assert_allclose([np.nan if v is None else v for v in got], np.where(np.isinf(want), np.nan, want),
                                   rtol=1e-12, atol=1e-12)  # fmt: skip
    e = res["errors"]
    assert e["overflow"].startswith("ContextOverflowError") and f"max context of {MAX_CONTEXT}" in e["overflow"]
    assert e["feed_overflow"].startswith("ContextOverflowError")
    for k, want in (("bad_id", "outside the vocabulary"), ("negative_id", "token id -1"), ("float_id", "token id 1.5"),
                    ("empty", "empty"), ("text", "got text"), ("bad_top_p", "topP"), ("unknown_option", "beams")):  # fmt: skip
        assert e[k] is not None and e[k].startswith("InputError") and want in e[k], (k, e[k])
    if which == "gpt2_gen":
        assert res["encoded"] == [tokenizer.encode(t).ids for t in texts]
        for g, dec, streamed in zip(res["greedy"], res["decoded"], res["streamed"], strict=True):
            assert dec == streamed == tokenizer.decode(g["ids"])


class _Site(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                                                ".mjs": "text/javascript", ".wasm": "application/wasm"}  # fmt: skip
    isolate = True

    def end_headers(self) -> None:
        if self.isolate:
            for k, v in HEADERS.items():
                self.send_header(k, v)
        super().end_headers()

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def site_server():
    servers = []

    def start(folder: Path, isolate: bool) -> str:
        handler = type("H", (_Site,), {"isolate": isolate})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/"

    yield start
    for s in servers:
        s.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("threads, isolate", [(1, False), (2, True)])
def test_the_demo_page_streams_tokens_from_a_web_worker(gpt2_gen, tokenizer, node, tmp_path, site_server, threads, isolate):
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/setup_browser.sh")
    if not (PLAYWRIGHT / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not in {PLAYWRIGHT}: run scripts/setup_browser.sh")
    site = package_generator_site(gpt2_gen.path, tmp_path / "site")
    prompt = "Once upon a time"
    url = site_server(site, isolate) + f"index.html?auto=1&n=40&threads={threads}&prompt=" + prompt.replace(" ", "%20")
    (tmp_path / "b.json").write_text(json.dumps({"playwright": str(PLAYWRIGHT) + "/", "url": url}))
    p = subprocess.run([node, str(HERE / "browser_generate.mjs"), str(tmp_path / "b.json")], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert "fatal" not in res, res
    d = res["demo"]
    assert d["error"] is None and not res["pageErrors"], (d["error"], res["pageErrors"], res["console"][-5:])
    assert d["inWorker"] and d["isolated"] == isolate and d["threads"] == threads
    run = d["runs"][0]
    ids = tokenizer.encode(prompt).ids
    with load_generator(gpt2_gen.path, threads=1) as gen:
        assert run["ids"] == gen.generate(ids, 40)
    assert run["text"] == tokenizer.decode(run["ids"]) and d["shown"] == prompt + run["text"]
    times = run["times"]
    assert len(times) == 40 and times == sorted(times) and times[-1] > times[0]  # one by one, as chosen
