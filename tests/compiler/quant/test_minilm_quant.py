"""all-MiniLM-L6-v2 (real weights) in fp16 and int8: the weights fit the goals (<= 46 MB fp16, <= 24 MB
int8) and the sentence embeddings of the demo page's sentences stay within cosine 0.995 (int8) /
0.9999 (fp16) of PyTorch float32, at their own (dynamic) lengths."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.export import Dim

import wasm_torch

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]

DEMO = Path(wasm_torch.__file__).parent / "js" / "demo" / "index.html"


def _pool(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    e = (h * m).sum(1) / m.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.parametrize(("fmt", "most_bytes", "least_cosine"), [("fp16", 46_000_000, 0.9999), ("int8", 24_000_000, 0.995)])
def test_minilm_sizes_and_sentence_embeddings(artifacts, fmt, most_bytes, least_cosine):
    from wasm_torch.zoo import minilm

    model, tok = minilm()
    enc = tok(["an example"], return_tensors="pt")
    seq = Dim("seq", min=2, max=256)
    art = artifacts(f"minilm-{fmt}", model, (enc["input_ids"], enc["attention_mask"]),
                    {"input_ids": {1: seq}, "attention_mask": {1: seq}}, quantize=fmt)
    assert art.weights_bytes <= most_bytes, art.weights_bytes
    sentences = re.search(r'<textarea id="docs">(.*?)</textarea>', DEMO.read_text(), re.S).group(1).strip().split("\n")
    assert len(sentences) == 10
    m = wasm_torch.load(art.path)
    for s in sentences:
        e = tok([s], return_tensors="pt")
        ids, mask = e["input_ids"], e["attention_mask"]
        with torch.no_grad():
            want = _pool(model(ids, mask).numpy().astype(np.float64), mask.numpy())
        got = _pool(m(ids.numpy(), mask.numpy()).astype(np.float64), mask.numpy())
        assert float((got * want).sum()) >= least_cosine, (s, float((got * want).sum()))
