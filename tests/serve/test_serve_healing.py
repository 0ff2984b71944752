"""Self-healing: z-score detection and a ladder whose every rung really acts on the pool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wasm_torch.serve.clock import FakeClock
from wasm_torch.serve.healing import LADDER, Orchestrator, RollingZ, max_z_within_window


def test_a_z_score_inside_its_own_window_is_bounded():
    for n in (5, 10, 30):
        window = [0.0] * (n - 1) + [1e9]  # the most extreme sample possible
        mean = sum(window) / n
        std = math.sqrt(sum((w - mean) ** 2 for w in window) / n)
        assert (window[-1] - mean) / std == pytest.approx(max_z_within_window(n))
    assert max_z_within_window(10) == 3.0  # so "z > 3" over a window of 10 can never fire


def test_rolling_z_scores_against_previous_samples_only():
    z = RollingZ(window=10, min_samples=9, rel_floor=0.0)
    rng = np.random.default_rng(0)
    for v in rng.normal(10, 1, 9):
        assert z.score(float(v)) is None  # fewer than min_samples: no score yet
        z.learn(float(v))
    score = z.score(1e9)
    assert score is not None and score > max_z_within_window(10) * 1000


def test_rolling_z_floor_keeps_a_steady_baseline_from_exploding():
    z = RollingZ(min_samples=3, rel_floor=0.1)
    for _ in range(5):
        z.learn(1.0)
    assert z.score(1.05) == pytest.approx(0.5)
    assert z.score(3.0) == pytest.approx(20.0)


def x1() -> dict[str, np.ndarray]:
    return {"x": np.ones((1, 4), np.float32)}


_rng = np.random.default_rng(0)


def traffic(pool, n: int = 8) -> None:
    for _ in range(n):  # distinct inputs: the result cache must not absorb the traffic
        pool.infer({"x": _rng.standard_normal((1, 4)).astype(np.float32)})


def test_ladder_escalates_acts_and_recovers(make_pool, plan):
    pool = make_pool(replicas=2, balancer="round_robin", max_retries=0, max_batch_size=8, cache_size=16)
    clock = FakeClock()
    healer = Orchestrator(
        [pool], threshold=4.0, cooldown_ticks=0, recover_ticks=2, probation_s=5, clock=clock
    )
    for _ in range(10):  # learn a baseline
        traffic(pool)
        healer.tick()
        clock.advance(1)
    assert healer.events == []
    plan.add("slow", replica=0, seconds=0.02, times=None)
    pool.infer({"x": np.full((1, 4), 3, np.float32)})
    assert len(pool.cache) >= 1
    actions = []
    for _ in range(4):
        traffic(pool)
        healer.tick()
        clock.advance(1)
        actions.append(healer.events[-1][3])
        if actions[-1] == "clear_caches":
            assert len(pool.cache) == 0
        if actions[-1] == "reduce_batch":
            assert pool.replicas[0].max_batch == 4
    assert actions == list(LADDER[:4])
    traffic(pool)  # the restart request is served by the worker between batches
    assert pool.replicas[0].restarts == 1
    assert pool.replicas[0].isolated and not pool.replicas[1].isolated
    served_before = pool.replicas[1].completed
    traffic(pool)
    assert pool.replicas[1].completed - served_before == 8  # all traffic avoids the isolated replica
    plan.clear()
    clock.advance(5)
    healer.tick()
    assert healer.events[-1][3] == "rejoin" and not pool.replicas[0].isolated
    for _ in range(3):
        traffic(pool)
        healer.tick()
        clock.advance(1)
    assert healer.events[-1][3] == "recovered"
    assert pool.replicas[0].max_batch == 8
    (model, rid, seconds) = healer.recoveries[-1]
    assert (model, rid) == ("m", 0) and seconds > 0


def test_last_replica_is_never_isolated_safe_mode_instead(make_pool, plan):
    pool = make_pool(replicas=1, max_retries=2)
    clock = FakeClock()
    healer = Orchestrator([pool], cooldown_ticks=0, recover_ticks=2, clock=clock)
    for _ in range(10):
        traffic(pool, 4)
        healer.tick()
    plan.add("trap", times=None)
    for _ in range(5):
        for _ in range(4):
            with pytest.raises(Exception):  # noqa: B017 - trap or unavailable (breaker open)
                pool.infer(x1())
        healer.tick()
        clock.advance(1)
    acts = [e[3] for e in healer.events]
    assert acts[:4] == ["clear_caches", "reduce_batch", "restart", "safe_mode"]
    assert pool.safe_mode and not pool.replicas[0].isolated
    assert pool.replicas[0].max_queue < pool.settings.max_queue
    plan.clear()
    pool.replicas[0].breaker.reset()
    for _ in range(3):
        traffic(pool, 4)
        healer.tick()
        clock.advance(1)
    assert not pool.safe_mode
    assert [e[3] for e in healer.events][-2:] == ["recovered", "exit_safe_mode"]
