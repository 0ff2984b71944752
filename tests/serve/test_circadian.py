"""Circadian controller: load-driven phases with hysteresis and dwell (fake clock), duty-factor
gating of background jobs, the clock schedule, and the seeded day simulation."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.serve.circadian import CircadianController, CircadianSettings, Gate, Phase, clock_phase
from wasm_torch.serve.clock import FakeClock
from wasm_torch.serve.sim.circadian import (
    DayConfig,
    Job,
    default_jobs,
    queue_latencies,
    request_counts,
    simulate_day,
)

# rate follows each step's count exactly (tiny EWMA window); load = requests/s / 100
SETTINGS = CircadianSettings(
    capacity_rps=100, rest_below=0.1, active_above=0.4, hysteresis=0.05, min_dwell_s=10, window_s=1e-9
)


def drive(ctl: CircadianController, clock: FakeClock, load: float, seconds: float = 1.0) -> Phase:
    ctl.record(load * 100 * seconds)
    clock.advance(seconds)
    return ctl.update()


def test_load_driven_phases_with_hysteresis_and_dwell():
    clock = FakeClock()
    ctl = CircadianController(SETTINGS, clock)
    assert ctl.phase is Phase.ACTIVE
    assert drive(ctl, clock, 0.2) is Phase.ACTIVE  # falling, but the 10 s dwell has not passed
    assert drive(ctl, clock, 0.2, seconds=10) is Phase.DUSK
    assert drive(ctl, clock, 0.05) is Phase.DUSK  # dwell again before going further down
    assert drive(ctl, clock, 0.05, seconds=10) is Phase.REST
    assert drive(ctl, clock, 0.12) is Phase.REST  # inside the hysteresis band (0.10..0.15)
    assert drive(ctl, clock, 0.2) is Phase.DAWN  # rising: immediate
    assert drive(ctl, clock, 0.3) is Phase.DAWN  # the middle band holds dawn
    assert drive(ctl, clock, 0.5) is Phase.ACTIVE  # waking needs no dwell
    assert drive(ctl, clock, 0.37) is Phase.ACTIVE  # inside the band (0.35..0.40)
    assert drive(ctl, clock, 0.0) is Phase.ACTIVE  # a sudden lull waits out the dwell
    assert drive(ctl, clock, 0.0, seconds=10) is Phase.REST  # straight to rest when load is below rest_below
    assert drive(ctl, clock, 0.9) is Phase.ACTIVE
    assert [p for _, p in ctl.transitions] == [
        Phase.ACTIVE,
        Phase.DUSK,
        Phase.REST,
        Phase.DAWN,
        Phase.ACTIVE,
        Phase.REST,
        Phase.ACTIVE,
    ]


def test_ewma_smooths_a_single_spike():
    clock = FakeClock()
    ctl = CircadianController(
        SETTINGS.__class__(**{**SETTINGS.__dict__, "window_s": 60.0}), clock, Phase.REST
    )
    for _ in range(30):
        drive(ctl, clock, 0.02)
    assert drive(ctl, clock, 5.0) is Phase.REST  # one second at 5x capacity moves a 60 s EWMA little
    assert ctl.load == pytest.approx(0.02 + (1 - np.exp(-1 / 60)) * (5.0 - 0.02))


def test_duty_factors_and_decisions_per_phase():
    ctl = CircadianController(SETTINGS, FakeClock())
    expect = {  # duty, compute/learn, consolidate
        Phase.ACTIVE: (1.0, True, False),
        Phase.DAWN: (0.5, True, False),
        Phase.DUSK: (0.3, False, True),
        Phase.REST: (0.05, False, True),
    }
    for phase, (duty, learn, consolidate) in expect.items():
        ctl.phase = phase
        assert ctl.duty_factor == duty and ctl.should_learn == learn == ctl.should_compute
        assert ctl.should_consolidate == consolidate
        assert ctl.rate_for("duty") == duty and ctl.rate_for("always") == 1.0
        assert ctl.rate_for("learn") == (duty if learn else 0.0)
        assert ctl.rate_for("consolidate") == (1.0 if consolidate else 0.0)
    with pytest.raises(ValueError, match="unknown job kind"):
        ctl.rate_for("nap")


def test_gates_run_jobs_at_duty_times_their_nominal_rate():
    clock = FakeClock()
    ctl = CircadianController(SETTINGS, clock)
    gates = {k: Gate(ctl, 10.0, k) for k in ("duty", "learn", "consolidate", "always")}

    def runs_over(seconds: int) -> dict[str, int]:
        got = dict.fromkeys(gates, 0)
        for _ in range(seconds):
            clock.advance(1)
            for k, g in gates.items():
                got[k] += g.due()
        return got

    assert runs_over(100) == {"duty": 10, "learn": 10, "consolidate": 0, "always": 10}  # active
    ctl.phase = Phase.REST
    assert runs_over(400) == {"duty": 2, "learn": 0, "consolidate": 40, "always": 40}  # 0.05 x 40
    ctl.phase = Phase.DAWN
    assert runs_over(100) == {"duty": 5, "learn": 5, "consolidate": 0, "always": 10}


def test_gate_gives_no_catch_up_burst():
    clock = FakeClock()
    gate = Gate(CircadianController(SETTINGS, clock), 1.0, "always", max_burst=3)
    clock.advance(100)
    assert gate.due() == 3  # 100 periods owed, at most 3 now
    assert gate.due() == 1  # leftover credit is capped at one period
    assert gate.due() == 0
    with pytest.raises(ValueError):
        Gate(CircadianController(SETTINGS, clock), 0.0)


def test_clock_mode_follows_the_time_of_day():
    day = 86400.0
    assert [clock_phase(h * 3600, day) for h in (0, 7, 12, 20, 23)] == [
        Phase.REST,
        Phase.DAWN,
        Phase.ACTIVE,
        Phase.DUSK,
        Phase.REST,
    ]
    clock = FakeClock(7 * 3600)
    ctl = CircadianController(CircadianSettings(mode="clock"), clock)
    assert ctl.phase is Phase.DAWN
    ctl.record(10**6)  # load is ignored in clock mode
    clock.advance(6 * 3600)
    assert ctl.update() is Phase.ACTIVE


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "moon"},
        {"capacity_rps": 0},
        {"rest_below": 0.3, "active_above": 0.3},
        {"duty": {Phase.ACTIVE: 1.0}},
        {"duty": {p: 2.0 for p in Phase}},
    ],
)
def test_settings_are_checked(bad):
    with pytest.raises(ValueError):
        CircadianSettings(**bad)


def test_queue_model_on_a_hand_computed_case():
    # 1 core: a background run of 2 chunks at t=0 (0.5 s each), requests at 0.1 and 2.0 (0.2 s each).
    # FIFO with one chunk in the lane at a time: chunk 1 runs 0-0.5; the request (queued at 0.1,
    # before chunk 2 is queued at 0.5) runs 0.5-0.7; chunk 2 0.7-1.2; the request at 2.0 is alone.
    lat = queue_latencies(np.array([0.1, 2.0]), np.array([0.2, 0.2]), [(0.0, 1.0, 0.5)], cores=1)
    np.testing.assert_allclose(lat, [0.6, 0.2])


# ~34k requests and few background chunks: fast
SMALL_DAY = DayConfig(
    peak_rps=1.0,
    service_s=0.1,
    jobs=(
        Job("warmup", "duty", 60.0, cost_s=0.8, chunk_s=0.1),
        *[j for j in default_jobs(0.1) if j.name != "warmup"],
    ),
)


def test_day_simulation_is_deterministic_and_saves_only_gated_work():
    a, b = simulate_day(SMALL_DAY), simulate_day(SMALL_DAY)
    assert a == b
    assert (request_counts(SMALL_DAY) == request_counts(SMALL_DAY)).all()
    assert (request_counts(SMALL_DAY.with_(seed=1)) != request_counts(SMALL_DAY)).any()
    assert a["always"]["compute_saved"] == 0.0
    for schedule in ("load", "clock"):
        r = a[schedule]
        assert 0.0 < r["compute_saved"] < 1.0
        assert r["saved_per_job"]["health"] == 0.0  # "always" work is never gated
        assert r["per_job_core_s"]["consolidate"] <= a["always"]["per_job_core_s"]["consolidate"]
        assert sum(r["phase_share"].values()) == pytest.approx(1.0)
        assert r["max_warmup_gap_s"] >= a["always"]["max_warmup_gap_s"]


def test_consolidating_only_at_rest_protects_busy_latency():
    # one big job: always-on runs it hourly through the peak; the load-driven controller only in rest
    jobs = (Job("consolidate", "consolidate", 3600.0, cost_s=600.0, chunk_s=0.5),)
    r = simulate_day(SMALL_DAY.with_(jobs=jobs, cores=1))
    assert r["load"]["per_job_core_s"]["consolidate"] < r["always"]["per_job_core_s"]["consolidate"]
    assert r["load"]["busy_latency_ms"]["p99"] < r["always"]["busy_latency_ms"]["p99"]
