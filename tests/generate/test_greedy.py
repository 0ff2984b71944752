"""Greedy generation equals Hugging Face `generate` token for token, 64 new tokens, on random-weight
GPT-2 and Llama-style models (RoPE, RMSNorm, grouped-query attention, SiLU-gated MLP)."""

from __future__ import annotations

import pytest
import torch

from wasm_torch.generate import load_generator

from .conftest import MAX_CONTEXT

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]
PROMPTS = ([5, 17, 42, 99], list(range(3, 27)), [7])


def hf_greedy(model, prompt: list[int], n: int, **kw) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, pad_token_id=0, **kw)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("which", ["gpt2_gen", "llama_gen"])
def test_greedy_64_new_tokens_equal_hf_generate(which, request):
    c = request.getfixturevalue(which)
    with load_generator(c.path, threads=1) as gen:
        for prompt in PROMPTS:
            want = hf_greedy(c.model, prompt, 64)
            got = gen.generate(prompt, 64)
            assert len(want) == 64  # no EOS in the way: the whole budget is compared
            assert got == want, f"{which} prompt {prompt[:6]}...: first difference at {_first_diff(got, want)}"
            assert len(set(got)) > 8  # a varied continuation, not one repeated token


def test_stop_tokens_end_generation_like_hf_eos(gpt2_gen):
    """A stop token ends generation after it is emitted, as an EOS id does in HF generate."""
    prompt = PROMPTS[0]
    free = hf_greedy(gpt2_gen.model, prompt, 40)
    stop = free[17]  # a token the greedy continuation reaches
    with load_generator(gpt2_gen.path, threads=1) as gen:
        got = gen.generate(prompt, 40, stop=[stop])
    assert got == hf_greedy(gpt2_gen.model, prompt, 40, eos_token_id=stop)
    assert got[-1] == stop and len(got) == free.index(stop) + 1


def test_manifest_records_the_model_eos_and_sizes(gpt2_gen, llama_gen, tokenizer):
    with load_generator(gpt2_gen.path, threads=1) as gen:
        assert gen.max_context == MAX_CONTEXT and gen.vocab_size == tokenizer.get_vocab_size()
        assert gen.spec.model["kv_heads"] == 4 and gen.spec.model["layers"] == 2
    with load_generator(llama_gen.path, threads=1) as gen:
        assert gen.spec.model["heads"] == 4 and gen.spec.model["kv_heads"] == 2  # grouped-query attention
        assert gen.spec.eos_token_ids == ()
    for c in (gpt2_gen, llama_gen):  # compile checked prompt + decode steps against HF's KV cache
        v = c.report["validation"]
        assert v["ok"] and v["decode_steps"] == 8 and v["max_abs_err"] < 1e-4 and v["greedy_tokens_agree"]


def test_threads_give_the_same_tokens_and_logits(llama_gen):
    prompt = PROMPTS[1]
    with load_generator(llama_gen.path, threads=1) as one, load_generator(llama_gen.path, threads=2) as two:
        assert two.module.threads == 2
        a, b = one.prefill(prompt), two.prefill(prompt)
        assert a.tobytes() == b.tobytes()
        for t in (3, 99, 250):
            assert one.step(t).tobytes() == two.step(t).tobytes()
        assert one.generate(prompt, 32) == two.generate(prompt, 32)
        assert sum(1 for c in two.module.thread_stats()["chunks"] if c) == 2  # both threads ran chunks


def _first_diff(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


