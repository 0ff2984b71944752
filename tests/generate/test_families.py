"""The decoder families beyond GPT-2 and Llama: Qwen2 (biased q/k/v projections), Mistral (Llama's
layout under its own class) and Phi-3 (fused qkv and gate/up projections). Random weights, one small
config each; greedy generation must equal Hugging Face `generate` token for token."""

from __future__ import annotations

import pytest
import torch
import transformers

from wasm_torch.compiler import CompileOptions
from wasm_torch.generate import compile_generator, load_generator

from .conftest import MAX_CONTEXT
from .test_greedy import PROMPTS, _first_diff, hf_greedy

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]
SMALL = dict(vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.1)  # fmt: skip


def _model(family: str) -> torch.nn.Module:
    torch.manual_seed(2)
    if family == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**SMALL)).eval()
    if family == "mistral":
        return transformers.MistralForCausalLM(transformers.MistralConfig(**SMALL, sliding_window=None)).eval()
    return transformers.Phi3ForCausalLM(transformers.Phi3Config(**SMALL, pad_token_id=0)).eval()


@pytest.mark.parametrize("family", ["qwen2", "mistral", "phi3"])
def test_greedy_32_new_tokens_equal_hf_generate(family, tmp_path):
    model = _model(family)
    art = compile_generator(model, tmp_path / family, max_context=MAX_CONTEXT, options=CompileOptions(relaxed=False))
    assert art.report["validation"]["ok"]
    with load_generator(art.path, threads=1) as gen:
        for prompt in PROMPTS[:2]:
            want = hf_greedy(model, prompt, 32)
            got = gen.generate(prompt, 32)
            assert got == want, f"{family} prompt {prompt[:6]}...: first difference at {_first_diff(got, want)}"
            assert len(set(got)) > 4  # a varied continuation, not one repeated token


def test_int8_llama_generator_meets_the_bar_and_is_smaller(llama_gen, tmp_path):
    """CompileOptions(quantize="int8") for a generator: validated with the int8 agreement bar (logits'
    cosine with the float32 model), weights about a quarter, the same tokens on 1 and 2 threads."""
    from .conftest import llama

    model = llama()
    art = compile_generator(model, tmp_path / "q8", max_context=MAX_CONTEXT,
                            options=CompileOptions(quantize="int8", relaxed=False))  # fmt: skip
    v = art.report["validation"]
    assert v["ok"] and v["format"] == "int8" and v["cosine"] >= v["bar"]["min_cosine"]
    size = lambda p: (p / "weights.bin").stat().st_size  # noqa: E731
    assert size(art.path) < 0.5 * size(llama_gen.path)
    with load_generator(art.path, threads=1) as one, load_generator(art.path, threads=2) as two:
        tokens = one.generate(PROMPTS[0], 16)
        assert tokens == two.generate(PROMPTS[0], 16) and len(tokens) == 16
