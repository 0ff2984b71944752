"""Hostile and malformed input to the generator: bad token ids, budgets and parameters through the
Python API, and forged generator manifests (the `state` / `generator` sections), each refused with
an error that names what is wrong — and the stateless path, which can never read another call's cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

import wasm_torch
from wasm_torch.errors import ArtifactError, ContextOverflow, InputError, IntegrityError
from wasm_torch.generate import Generator, Sampling, load_generator

from .conftest import MAX_CONTEXT

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


@pytest.mark.parametrize("prompt, match", [
    ([], "empty"), ([-1], "token id -1 at position 0"), ([1, 10**6], "token id 1000000 at position 1"),
    ([1.5, 2.0], "must be integers"), ("hello", "got text"), ([[1, 2], [3, 4]], "1-D"), ([True, 3], "integers"),
    (np.array([3, 2**40]), "token id"), ([2**70], "integers|token id"),
])  # fmt: skip
def test_bad_prompts_are_refused_before_anything_runs(gpt2_gen, prompt, match):
    with load_generator(gpt2_gen.path, threads=1) as gen:
        with pytest.raises(InputError, match=match):
            gen.generate(prompt, 4)
        with pytest.raises(InputError):
            gen.prefill(prompt)
        assert gen.module.stats()["calls"] == 0


def test_budgets_and_stops_are_checked(gpt2_gen):
    with load_generator(gpt2_gen.path, threads=1) as gen:
        for bad in (-1, 1.5, True, "8", None):
            with pytest.raises(InputError, match="max_new_tokens"):
                gen.generate([1, 2], bad)
        with pytest.raises(ContextOverflow, match=f"= {MAX_CONTEXT + 1} exceeds"):
            gen.generate(list(range(MAX_CONTEXT)), 1)
        with pytest.raises(InputError, match="stop tokens"):
            gen.generate([1, 2], 4, stop=[gen.vocab_size])
        with pytest.raises(InputError, match="sampling must be a Sampling"):
            gen.generate([1, 2], 4, {"temperature": 0.5})
        assert gen.generate([1, 2], 0) == []
        assert gen.module.stats()["calls"] == 0
        with pytest.raises(InputError, match="layer 7"):
            gen.cache(7)
        with pytest.raises(InputError, match="top_p"):
            gen.generate([1, 2], 2, Sampling(top_p=2.0))


def _tamper(path, edit) -> None:
    raw = json.loads((path / "manifest.json").read_text())
    edit(raw)
    (path / "manifest.json").write_text(json.dumps(raw))


def _first_input(raw):
    return raw["inputs"][0]


FORGERIES = {
    "state overlaps an input": (lambda r: r["state"][0].update(offset=_first_input(r)["offset"]), "overlaps"),
    "state overlaps state": (lambda r: r["state"][1].update(offset=r["state"][0]["offset"]), "overlaps"),
    "state past the arena": (lambda r: r["state"][0].update(offset=r["memory"]["arena_bytes"]), "past arena_bytes"),
    "symbolic state": (lambda r: r["state"][0]["shape"].__setitem__(0, "seq"), "must be integers"),
    "state without generator": (lambda r: r.pop("generator"), "present together"),
    "generator without state": (lambda r: r.pop("state"), "present together"),
    "empty state": (lambda r: r.update(state=[]), "is empty"),
    "state named like an input": (lambda r: r["state"][0].update(name="input_ids"), "also an input"),
    "wrong format": (lambda r: r["generator"].update(format="wasm-torch-generator/9"), "generator.format"),
    "max context off the symbol": (lambda r: r["generator"].update(max_context=MAX_CONTEXT + 1), "max_context"),
    "ids not an input": (lambda r: r["generator"].update(input_ids="nope"), "generator.input_ids"),
    "past is the ids": (lambda r: r["generator"].update(past="input_ids"), "generator.past"),
    "logits wrong size": (lambda r: r["generator"].update(vocab_size=7), "generator.logits"),
    "eos outside vocab": (lambda r: r["generator"].update(eos_token_ids=[10**6]), "eos_token_ids"),
    "eos a bool": (lambda r: r["generator"].update(eos_token_ids=[True]), "eos_token_ids"),
    "tokenizer not listed": (lambda r: r["generator"].update(tokenizer="other.json"), "generator.tokenizer"),
    "tokenizer a path": (lambda r: r["generator"].update(tokenizer="../tokenizer.json"), "generator.tokenizer"),
    "unknown generator key": (lambda r: r["generator"].update(chat_template="x"), "unknown keys"),
    "model not an object": (lambda r: r["generator"].update(model=[1]), "generator.model"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_generator_manifests_are_refused_by_name(gpt2_gen, copy_of, name):
    edit, match = FORGERIES[name]
    path = copy_of(gpt2_gen)
    _tamper(path, edit)
    with pytest.raises(ArtifactError, match=match):
        load_generator(path, threads=1)
    with pytest.raises(ArtifactError):  # the plain runtime parses with the same strict schema
        wasm_torch.load(path, threads=1)


def test_a_tampered_tokenizer_is_refused(gpt2_gen, copy_of):
    path = copy_of(gpt2_gen)
    text = (path / "tokenizer.json").read_text()
    (path / "tokenizer.json").write_text(text.replace('"<|endoftext|>"', '"<|evil|>"', 1))
    with pytest.raises(IntegrityError, match=r"tokenizer\.json"):
        load_generator(path, threads=1)


def test_a_plain_model_is_not_a_generator(tmp_path):
    import torch

    art = wasm_torch.compile(torch.nn.Linear(4, 2).eval(), (torch.randn(1, 4),), tmp_path / "lin",
                             options=wasm_torch.CompileOptions(threads=False, relaxed=False))  # fmt: skip
    with pytest.raises(ArtifactError, match="not a text generator"):
        load_generator(art.path)


def test_a_generator_needs_a_stateful_module(gpt2_gen):
    with pytest.raises(ArtifactError, match="stateful=True"):
        Generator(gpt2_gen.path, module=wasm_torch.load(gpt2_gen.path, threads=1))


def test_stateless_calls_never_see_another_calls_cache(gpt2_gen):
    """A plain load (a server's /infer pool) zeroes the cache before every call: a call's result is a
    function of its own inputs, whatever ran before on the instance."""
    m = wasm_torch.load(gpt2_gen.path, threads=1)
    assert not m.stateful
    probe = {"input_ids": np.array([[7, 8]], np.int64), "past": np.array([10], np.int64)}
    first = m.run(probe)["logits"]
    for secret in ([1] * 10, list(range(20, 30)), [99] * 10):
        m.run({"input_ids": np.array([secret], np.int64), "past": np.array([0], np.int64)})
        np.testing.assert_array_equal(m.run(probe)["logits"], first)
    with load_generator(gpt2_gen.path, threads=1) as gen:  # and past=0 is exactly the prefill
        want = gen.prefill([3, 4, 5])
    got = m.run({"input_ids": np.array([[3, 4, 5]], np.int64), "past": np.array([0], np.int64)})["logits"][0]
    np.testing.assert_array_equal(got, want)
