"""Host-side sampling against transformers' own logits processors (the oracle), seeded determinism,
the distribution of draws, and refusal of bad parameters by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from wasm_torch.errors import InputError
from wasm_torch.generate.sampling import Sampling, draw, process, softmax


def hf_process(logits: np.ndarray, context: list[int], s: Sampling) -> np.ndarray:
    ids = torch.tensor([context], dtype=torch.long)
    x = torch.tensor(logits[None], dtype=torch.float64)
    if s.repetition_penalty != 1.0:
        x = RepetitionPenaltyLogitsProcessor(float(s.repetition_penalty))(ids, x)
    if s.do_sample:
        if s.temperature != 1.0:
            x = TemperatureLogitsWarper(float(s.temperature))(ids, x)
        if s.top_k:
            x = TopKLogitsWarper(s.top_k)(ids, x)
        if s.top_p < 1.0:
            x = TopPLogitsWarper(float(s.top_p))(ids, x)
    return x[0].numpy()


SETTINGS = [
    Sampling(),
    Sampling(repetition_penalty=1.3),
    Sampling(do_sample=True, temperature=0.7),
    Sampling(do_sample=True, top_k=5),
    Sampling(do_sample=True, top_p=0.8),
    Sampling(do_sample=True, temperature=1.5, top_k=40, top_p=0.9, repetition_penalty=1.2),
    Sampling(do_sample=True, top_p=0.05),  # only the top token survives
]


@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: repr(s)[9:60])
def test_processing_equals_transformers_processors(s):
    rng = np.random.default_rng(3)
    for trial in range(20):
        logits = rng.standard_normal(200) * (3 if trial % 2 else 0.3)
        if s.top_p == 1.0:  # ties at the top (top-p's order among exact ties is torch.sort's, unstable)
            logits[rng.integers(0, 200, 5)] = logits.max()
        context = [int(x) for x in rng.integers(0, 200, 30)]
        np.testing.assert_array_equal(process(logits, context, s), hf_process(logits, context, s))


def test_greedy_is_the_first_largest_penalised_logit():
    logits = np.array([1.0, 3.0, 3.0, -2.0])
    assert Sampling().chooser()(logits, []) == 1
    assert Sampling(repetition_penalty=2.0).chooser()(logits, [1]) == 2


def test_a_seed_gives_the_same_tokens_and_different_seeds_differ():
    rng = np.random.default_rng(4)
    logits = [rng.standard_normal(100) for _ in range(30)]
    run = lambda seed: [Sampling(do_sample=True, seed=seed).chooser()(x, []) for x in logits]  # noqa: E731
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_draws_follow_the_processed_distribution():
    x = np.log(np.array([0.5, 0.25, 0.15, 0.1]))
    rng = np.random.default_rng(0)
    counts = np.bincount([draw(x, float(rng.random())) for _ in range(20000)], minlength=4) / 20000
    np.testing.assert_allclose(counts, softmax(x), atol=0.012)
    assert draw(np.array([0.0, -np.inf, 0.0, -np.inf]), 0.999999999) == 2  # never a removed token
    assert draw(np.array([-np.inf, 1.0, -np.inf]), 0.0) == 1


@pytest.mark.parametrize("bad", [
    {"temperature": 0}, {"temperature": -1.0}, {"temperature": float("nan")}, {"temperature": True},
    {"top_k": -1}, {"top_k": 2.5}, {"top_p": 0.0}, {"top_p": 1.5}, {"repetition_penalty": 0.0},
    {"seed": -1}, {"seed": 2**63}, {"seed": "7"}, {"do_sample": 1},
])  # fmt: skip
def test_bad_parameters_are_refused_by_name(bad):
    name = next(iter(bad))
    with pytest.raises(InputError, match=name):
        Sampling(**bad)
    with pytest.raises(InputError, match=name):
        Sampling.from_json(bad)


def test_from_json_refuses_unknown_parameters():
    with pytest.raises(InputError, match="unknown sampling parameters"):
        Sampling.from_json({"temperature": 1.0, "beam_width": 4})
    with pytest.raises(InputError, match="must be an object"):
        Sampling.from_json([1, 2])
