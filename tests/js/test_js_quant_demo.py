"""The search demo offering all-MiniLM-L6-v2 in float32 and int8 (`package --also int8=...`), in headless
Chromium: the int8 page downloads the int8 weights (its bytes reported next to the float32 ones), its
sentence embeddings stay within cosine 0.995 of PyTorch float32 and its best match is PyTorch's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from torch.export import Dim

from wasm_torch.deploy.web import package_site

from .test_js_browser import QUERIES, _cos, _errors, browser, isolated_server, torch_embed  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]


@pytest.fixture(scope="module")
def quant_site(artifacts, tmp_path_factory):
    from wasm_torch.zoo import minilm

    model, tok = minilm()
    enc = tok(["an example"], return_tensors="pt")
    seq = Dim("seq", min=2, max=256)
    dyn = {"input_ids": {1: seq}, "attention_mask": {1: seq}}
    f32 = artifacts("minilm", model, (enc["input_ids"], enc["attention_mask"]), dyn)
    q8 = artifacts("minilm-int8", model, (enc["input_ids"], enc["attention_mask"]), dyn, quantize="int8")
    site = package_site(f32.path, tmp_path_factory.mktemp("qsite") / "site", also={"int8": q8.path})
    return model, tok, site


def test_demo_offers_int8_and_reports_bytes(quant_site, browser, isolated_server, tmp_path):  # noqa: F811
    model, tok, site = quant_site
    url = isolated_server(site)
    models = json.loads((site / "models.json").read_text())
    assert [(m["label"], m["format"]) for m in models] == [("f32", "float32"), ("int8", "int8")]
    got = {}
    for label in ("f32", "int8"):
        res = browser(f"{url}?model={label}", tmp_path, queries=QUERIES)
        st = res["state"]
        assert st["ready"] and st["error"] is None and not _errors(res), (st["error"], _errors(res))
        assert st["model"] == label and f"with the {label} model" in st["status"]
        folder = "model" if label == "f32" else "model-int8"
        assert st["bytes"]["weights"] == (site / folder / "weights.bin").stat().st_size
        got[label] = (st, res["queries"])
    assert got["int8"][0]["bytes"]["weights"] < 0.26 * got["f32"][0]["bytes"]["weights"]
    st, queries = got["int8"]
    want_docs = torch_embed(model, tok, st["docs"])
    cos_docs = _cos(st["embeddings"], want_docs)
    assert cos_docs.min() >= 0.995, cos_docs
    for q in queries:
        want_q = torch_embed(model, tok, [q["query"]])[0]
        assert _cos(q["embedding"], want_q) >= 0.995
        assert q["ranking"][0]["index"] == int(np.argmax(want_docs @ want_q)), q["query"]
    out_dir = Path(os.environ.get("WASM_TORCH_JS_RESULTS", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {label: {"weights_bytes": s["bytes"]["weights"], "code_bytes": s["bytes"]["code"],
                       "first_load_ms": s["timings"]["firstLoadMs"], "embed_docs_ms": s["timings"]["embedDocsMs"]}
               for label, (s, _) in got.items()}
    figures["int8_doc_cosine_min"] = float(cos_docs.min())
    (out_dir / "js_demo_int8.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))
