"""MicroLoRA cost model + EWC on synthetic families with known answers: gradients against finite
differences, fitting a known function, online adaptation, forgetting with and without EWC,
persistence and refusal of damaged files."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.errors import LearningError
from wasm_torch.learn.costmodel import EWC_LAMBDA, RANK, Batch, MicroLoRACostModel
from wasm_torch.learn.synthetic import make_world


def rmse(m: MicroLoRACostModel, b: Batch) -> float:
    return float(np.sqrt(np.mean((m.predict(b.x, b.gates) - b.y) ** 2)))


def concat(*bs: Batch) -> Batch:
    return Batch(*(np.concatenate([getattr(b, k) for b in bs]) for k in ("x", "gates", "y")))


def test_defaults_are_rank_two_adapters_per_op_group_and_lambda_5000():
    m = MicroLoRACostModel(12)
    assert RANK == 2 and EWC_LAMBDA == 5000.0 and m.ewc_lambda == 5000.0
    assert m.p["A"].shape == (10 * 2, m.n_in) and m.p["B"].shape == (32, 10 * 2)
    assert not m.p["B"].any()  # LoRA: B starts at zero, so the adapters start as a no-op


def test_gradients_match_finite_differences(rng):
    w = make_world(0)
    b = w.batch("conv", 16, rng)
    m = MicroLoRACostModel(w.space.width, hidden=8, seed=1)
    m.p["B"] = rng.standard_normal(m.p["B"].shape) * 0.1
    x, s, y = b.x.astype(np.float64), b.gates.astype(np.float64), b.y.astype(np.float64)
    _, g = m._grads(x, s, y, ("W", "b", "w", "c", "A", "B"))
    eps = 1e-6
    for name in g:
        for idx in [tuple(rng.integers(d) for d in m.p[name].shape) for _ in range(4)]:
            old = m.p[name][idx]
            m.p[name][idx] = old + eps
            up = 0.5 * np.mean((m.predict(x, s) - y) ** 2)
            m.p[name][idx] = old - eps
            down = 0.5 * np.mean((m.predict(x, s) - y) ** 2)
            m.p[name][idx] = old
            assert g[name][idx] == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8), name


def test_single_step_adapt_equals_the_batch_gradient_of_one_row(rng):
    w = make_world(0)
    b = w.batch("gemm", 1, rng)
    m = MicroLoRACostModel(w.space.width, seed=2)
    m.p["B"] = rng.standard_normal(m.p["B"].shape) * 0.1
    _, g = m._grads(b.x.astype(np.float64), b.gates.astype(np.float64), b.y.astype(np.float64), ("A", "B"))
    a0, b0 = m.p["A"].copy(), m.p["B"].copy()
    m.adapt(b.x[0].astype(np.float64), b.gates[0].astype(np.float64), float(b.y[0]), lr=0.1)
    np.testing.assert_allclose(m.p["A"], a0 - 0.1 * g["A"], atol=1e-12)
    np.testing.assert_allclose(m.p["B"], b0 - 0.1 * g["B"], atol=1e-12)


def test_fit_and_adapt_learn_a_known_cost_function(rng):
    w = make_world(3)
    pre = concat(w.batch("conv", 200, rng, default_only=True), w.batch("gemm", 200, rng, default_only=True))
    test = w.batch("conv", 200, rng)
    m = MicroLoRACostModel(w.space.width, seed=0)
    assert m.fit(pre, epochs=400) < 0.01  # the base learns the default configuration's latencies
    fitted = rmse(m, test)  # ... but knows nothing of the knobs yet
    m.adapt_batch(w.batch("conv", 400, rng), epochs=6)
    assert rmse(m, test) < 0.5 * fitted  # the adapters learn them online
    # the learned model ranks configurations like the truth does (what the tuner uses it for)
    vec, gates = w.patterns("conv", 1, rng)
    encs = np.stack([w.space.encode(c) for c in w.space.all()])
    x = np.concatenate([np.repeat(vec, len(encs), 0), encs], axis=1)
    truth = w.truth(np.repeat(vec, len(encs), 0), np.repeat(gates, len(encs), 0), encs)
    pred = m.predict(x, np.repeat(gates, len(encs), 0))
    assert np.corrcoef(truth, pred)[0, 1] > 0.8


def forgetting(ewc: bool, seed: int) -> dict[str, float]:
    """Errors against the truth: on family A after learning A, on A after then learning B, and on B
    before and after learning B."""
    w = make_world(seed)
    rng = np.random.default_rng(seed + 1)
    pre = concat(w.batch("conv", 300, rng, default_only=True), w.batch("gemm", 300, rng, default_only=True))
    m = MicroLoRACostModel(w.space.width, seed=seed)
    m.fit(pre, epochs=400)
    test_a, test_b = w.batch("conv", 300, rng), w.batch("gemm", 300, rng)
    a, b = w.batch("conv", 400, rng), w.batch("gemm", 400, rng)
    m.adapt_batch(a, epochs=3)
    out = {"a_after_a": rmse(m, test_a), "b_before_b": rmse(m, test_b)}
    if ewc:
        m.consolidate(a)
    m.adapt_batch(b, epochs=3)
    return {**out, "a_after_b": rmse(m, test_a), "b_after_b": rmse(m, test_b)}


def test_ewc_limits_forgetting_of_an_earlier_family():
    seeds = range(4)
    plain = [forgetting(False, s) for s in seeds]
    ewc = [forgetting(True, s) for s in seeds]
    for p, e in zip(plain, ewc, strict=True):
        assert p["a_after_a"] == pytest.approx(e["a_after_a"])  # identical until the task boundary
        assert e["a_after_b"] < 1.05 * e["a_after_a"]  # with EWC (lambda 5000) family A is kept ...
        assert e["b_after_b"] < e["b_before_b"]  # ... and family B is still learned

    def ratio(runs: list[dict[str, float]], after: str, before: str) -> float:
        return float(np.mean([r[after] / r[before] for r in runs]))

    assert ratio(plain, "a_after_b", "a_after_a") > 1.3  # without EWC, learning B costs accuracy on A
    assert ratio(ewc, "a_after_b", "a_after_a") < 1.05
    # the price: B is learned more slowly with A's adapters anchored (bench/learn_costmodel.py)
    assert ratio(ewc, "b_after_b", "b_before_b") < 0.75


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away_from_it(rng):
    w = make_world(0)
    m = MicroLoRACostModel(w.space.width)
    a = w.batch("conv", 50, rng)
    m.adapt_batch(a)
    m.consolidate(a)
    assert m.ewc_penalty() == 0.0
    assert (m.fisher["A"] >= 0).all() and m.fisher["A"].any() and m.fisher["B"].any()
    m.adapt_batch(w.batch("gemm", 50, rng))
    assert m.ewc_penalty() > 0.0


def test_proximal_ewc_step_is_stable_for_huge_fisher(rng):
    w = make_world(0)
    m = MicroLoRACostModel(w.space.width, lr=0.5)
    a = w.batch("conv", 50, rng)
    m.adapt_batch(a)
    m.consolidate(a)
    m.fisher = {k: v + 1e6 for k, v in m.fisher.items()}  # a plain gradient step would explode
    m.adapt_batch(w.batch("gemm", 50, rng), epochs=2)
    assert np.isfinite(m.p["A"]).all() and np.abs(m.p["A"] - m.anchor["A"]).max() < 1e-3


def test_save_load_round_trip(tmp_path, rng):
    w = make_world(0)
    m = MicroLoRACostModel(w.space.width)
    a = w.batch("conv", 40, rng)
    m.fit(a, epochs=20)
    m.adapt_batch(a)
    m.consolidate(a)
    m.save(tmp_path / "cm.npz")
    again = MicroLoRACostModel.load(tmp_path / "cm.npz", w.space.width)
    np.testing.assert_array_equal(again.predict(a.x, a.gates), m.predict(a.x, a.gates))
    assert again.consolidations == 1 and again.steps == m.steps
    np.testing.assert_array_equal(again.fisher["A"], m.fisher["A"])


@pytest.mark.parametrize("damage", ["width", "nan", "negative_fisher", "truncated"])
def test_damaged_cost_model_files_are_refused(tmp_path, rng, damage):
    w = make_world(0)
    m = MicroLoRACostModel(w.space.width)
    path = tmp_path / "cm.npz"
    m.save(path)
    a = dict(np.load(path, allow_pickle=False))
    if damage == "width":
        with pytest.raises(LearningError, match="move it aside"):
            MicroLoRACostModel.load(path, w.space.width + 1)
        return
    if damage == "nan":
        a["W"][0, 0] = np.nan
    elif damage == "negative_fisher":
        a["fisher_A"][0, 0] = -1.0
    with open(path, "wb") as f:
        np.savez(f, **a)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(LearningError):
        MicroLoRACostModel.load(path, w.space.width)


def test_predict_refuses_wrong_shapes():
    m = MicroLoRACostModel(12)
    with pytest.raises(LearningError, match="cost model inputs"):
        m.predict(np.zeros((2, 5)), np.zeros((2, 10)))
