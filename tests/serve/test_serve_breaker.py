"""Circuit breaker: state machine under a fake clock, checked against a reference model."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from wasm_torch.serve.breaker import CircuitBreaker, State
from wasm_torch.serve.clock import FakeClock


def make(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(
        window=4, min_calls=2, failure_rate=0.5, open_s=10.0, half_open_calls=2, clock=clock
    )


def test_opens_on_failure_rate_and_fails_fast():
    clock = FakeClock()
    b = make(clock)
    assert b.allow()
    b.record(True)
    assert b.allow()
    b.record(False)  # 1 of 2 failed = 50% -> open
    assert b.state is State.OPEN
    assert not b.allow()
    clock.advance(9.99)
    assert not b.allow()


def test_half_open_lets_limited_probes_then_closes():
    clock = FakeClock()
    b = make(clock)
    for ok in (False, False):
        b.allow()
        b.record(ok)
    clock.advance(10)
    assert b.state is State.HALF_OPEN
    assert b.allow() and b.allow()
    assert not b.allow()  # only two probes
    b.record(True)
    assert b.state is State.HALF_OPEN
    b.record(True)
    assert b.state is State.CLOSED
    assert b.allow()


def test_half_open_failure_reopens_and_restarts_the_timer():
    clock = FakeClock()
    b = make(clock)
    b.force_open()
    clock.advance(10)
    assert b.allow()
    b.record(False)
    assert b.state is State.OPEN
    clock.advance(5)
    assert not b.allow()
    clock.advance(5)
    assert b.allow()


def test_released_probe_slot_can_be_reused():
    clock = FakeClock()
    b = make(clock)
    b.force_open()
    clock.advance(10)
    assert b.allow() and b.allow() and not b.allow()
    b.release()
    assert b.allow()


def test_min_calls_guards_against_early_trips():
    b = CircuitBreaker(window=10, min_calls=5, failure_rate=0.5, clock=FakeClock())
    for _ in range(4):
        b.allow()
        b.record(False)
    assert b.state is State.CLOSED
    b.allow()
    b.record(False)
    assert b.state is State.OPEN


class BreakerMachine(RuleBasedStateMachine):
    """Compare with a tiny reference model of the same semantics."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.b = make(self.clock)
        self.state, self.window, self.opened, self.probes, self.ok = "closed", [], 0.0, 0, 0
        self.pending = 0

    def _ref_state(self) -> str:
        if self.state == "open" and self.clock() - self.opened >= 10:
            self.state, self.probes, self.ok = "half", 0, 0
        return self.state

    @rule(success=st.booleans())
    def call(self, success: bool) -> None:
        st_ = self._ref_state()
        allowed = self.b.allow()
        expect = st_ == "closed" or (st_ == "half" and self.probes + self.ok < 2)
        assert allowed == expect
        if not allowed:
            return
        if st_ == "half":
            self.probes += 1
        self.b.record(success)
        if st_ == "half":
            self.probes -= 1
            if not success:
                self.state, self.opened = "open", self.clock()
            else:
                self.ok += 1
                if self.ok >= 2:
                    self.state, self.window = "closed", []
        else:
            self.window = ([*self.window, not success])[-4:]
            if len(self.window) >= 2 and sum(self.window) / len(self.window) >= 0.5:
                self.state, self.opened = "open", self.clock()

    @rule(dt=st.floats(0, 15))
    def wait(self, dt: float) -> None:
        self.clock.advance(dt)

    @invariant()
    def same_state(self) -> None:
        names = {"closed": State.CLOSED, "open": State.OPEN, "half": State.HALF_OPEN}
        assert self.b.state is names[self._ref_state()]


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
