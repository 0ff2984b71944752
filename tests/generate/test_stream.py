"""Streaming from Python: tokens come one at a time as they are chosen (lazily), and text pieces
concatenate to exactly the tokenizer's decode, also when a character is split over tokens."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.generate import Sampling, Tokenizer, load_generator
from wasm_torch.generate.tokenizer import TextStream

from .conftest import CORPUS

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def test_stream_is_lazy_one_step_per_token(gpt2_gen):
    with load_generator(gpt2_gen.path, threads=1) as gen:
        it = gen.stream([5, 6, 7], 5)
        assert gen.length == 0 and gen.module.stats()["calls"] == 0  # nothing runs until asked
        first = next(it)
        assert gen.length == 3 and gen.module.stats()["calls"] == 1  # the prompt only
        rest = list(it)
        assert gen.module.stats()["calls"] == 5  # prefill + 4 steps: the 5th token needs no step
        assert [first, *rest] == gen.generate([5, 6, 7], 5)


def test_sampled_generation_is_seeded(gpt2_gen):
    s = Sampling(do_sample=True, temperature=0.9, top_k=50, top_p=0.95, repetition_penalty=1.1, seed=11)
    with load_generator(gpt2_gen.path, threads=1) as gen:
        a, b = gen.generate([5, 6, 7], 30, s), gen.generate([5, 6, 7], 30, s)
        assert a == b and a != gen.generate([5, 6, 7], 30)  # differs from greedy
        assert a != gen.generate([5, 6, 7], 30, Sampling(do_sample=True, seed=12))


def test_text_in_text_out_through_the_artifacts_tokenizer(gpt2_gen, tokenizer):
    with load_generator(gpt2_gen.path, threads=1) as gen:
        assert gen.tokenizer is not None and gen.tokenizer.to_str() == tokenizer.to_str()
        prompt = "Once upon a time"
        ids = gen.generate(tokenizer.encode(prompt).ids, 40)
        pieces = list(gen.stream_text(prompt, 40))
        assert "".join(pieces) == tokenizer.decode(ids) and len(pieces) > 5
        assert gen.generate_text(prompt, 40) == tokenizer.decode(ids)


def _metaspace_tokenizer():
    """A SentencePiece-style BPE (▁ for spaces, byte fallback): its decode strips the leading space."""
    from tokenizers import Tokenizer as HF
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HF(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.Metaspace(), decoders.ByteFallback(), decoders.Fuse()])
    alphabet = [f"<0x{b:02X}>" for b in range(256)]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", *alphabet],
                                                        show_progress=False))  # fmt: skip
    return tok


@pytest.mark.parametrize("kind", ["byte-level", "metaspace"])
def test_text_stream_concatenates_to_decode(kind, tokenizer):
    hf = tokenizer if kind == "byte-level" else _metaspace_tokenizer()
    tok = Tokenizer.from_str(hf.to_str())
    rng = np.random.default_rng(0)
    texts = [*CORPUS[:5], "\U0001f600\U0001f680 \u00e9\u00e9 \u6f22\u5b57"]
    for text in texts:
        ids = hf.encode(text).ids
        pieces = list(tok.stream(ids))
        assert "".join(pieces) == hf.decode(ids), (kind, text)
        assert all(p and "\ufffd" not in p for p in pieces)  # no partial characters on the way
    ids = [int(x) for x in rng.integers(0, hf.get_vocab_size(), 200)]  # random ids: still exact at the end
    s = TextStream(tok)
    out = "".join(s.push(t) for t in ids) + s.finish()
    assert out == hf.decode(ids)
