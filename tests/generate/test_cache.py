"""The KV cache: correct at every position up to the max context, chunked prefill, overflow, recovery.

At each position the generator's logits and every layer's cached keys and values are compared with
the model's own forward pass with transformers' DynamicCache fed the same tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wasm_torch.errors import ContextOverflow, IndexOutOfRange
from wasm_torch.generate import load_generator

from .conftest import MAX_CONTEXT

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def _close(got: np.ndarray, want: torch.Tensor, what: str) -> None:
    w = want.detach().float().numpy()
    np.testing.assert_allclose(got, w, atol=1e-4, rtol=1e-3, err_msg=what)


@pytest.mark.parametrize("which", ["gpt2_gen", "llama_gen"])
def test_cache_matches_transformers_at_every_position(which, request):
    c = request.getfixturevalue(which)
    rng = np.random.default_rng(5)
    with load_generator(c.path, threads=1) as gen:
        ids = [int(x) for x in rng.integers(0, gen.vocab_size, MAX_CONTEXT)]
        with torch.no_grad():
            out = c.model(input_ids=torch.tensor([ids[:1]]), use_cache=True)
            logits = gen.prefill(ids[:1])
            for pos in range(1, MAX_CONTEXT + 1):
                assert gen.length == pos
                _close(logits, out.logits[0, -1], f"logits after {pos} tokens")
                for layer, kv in enumerate(out.past_key_values.layers):
                    k, v = gen.cache(layer)
                    _close(k, kv.keys[0], f"layer {layer} keys at length {pos}")
                    _close(v, kv.values[0], f"layer {layer} values at length {pos}")
                if pos == MAX_CONTEXT:
                    break
                logits = gen.step(ids[pos])
                out = c.model(input_ids=torch.tensor([[ids[pos]]]), past_key_values=out.past_key_values, use_cache=True)
        with pytest.raises(ContextOverflow, match=f"exceeds the compiled max context of {MAX_CONTEXT}"):
            gen.step(3)
        assert gen.length == MAX_CONTEXT  # nothing ran
        with pytest.raises(ContextOverflow):
            gen.generate(ids[:10], MAX_CONTEXT - 9)
        assert gen.generate(ids[:10], MAX_CONTEXT - 10)  # exactly full fits


def test_chunked_prefill_equals_one_prefill(llama_gen):
    rng = np.random.default_rng(7)
    with load_generator(llama_gen.path, threads=1) as gen:
        ids = [int(x) for x in rng.integers(0, gen.vocab_size, 40)]
        whole = gen.prefill(ids)
        k_whole, v_whole = gen.cache(1)
        gen.reset()
        for chunk in (ids[:5], ids[5:6], ids[6:31], ids[31:]):
            last = gen.feed(chunk)
        k, v = gen.cache(1)
        np.testing.assert_allclose(last, whole, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(k, k_whole, atol=1e-6)
        np.testing.assert_allclose(v, v_whole, atol=1e-6)


def test_the_kernel_refuses_a_position_past_the_cache_and_stays_usable(llama_gen):
    """The host checks first; the kernel checks too (a trap, before it writes anything)."""
    with load_generator(llama_gen.path, threads=1) as gen:
        want = gen.prefill([1, 2, 3])
        for past in (MAX_CONTEXT, MAX_CONTEXT - 1, -1, 2**40):
            ids = np.zeros((1, 2), np.int64)
            with pytest.raises(IndexOutOfRange):
                gen.module.run({"input_ids": ids, "past": np.array([past], np.int64)})
        np.testing.assert_array_equal(gen.prefill([1, 2, 3]), want)


def test_a_new_prompt_reuses_the_cache_without_clearing(gpt2_gen):
    """reset() clears nothing: a shorter second sequence never reads the first one's rows."""
    with load_generator(gpt2_gen.path, threads=1) as gen, load_generator(gpt2_gen.path, threads=1) as fresh:
        gen.generate(list(range(40, 80)), 30)
        assert gen.generate([9, 8, 7], 20) == fresh.generate([9, 8, 7], 20)
