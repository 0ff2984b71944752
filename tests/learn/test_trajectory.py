"""The trajectory ring buffer: FIFO order, capacity, snapshot round trip, refusal of bad entries."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.errors import LearningError
from wasm_torch.learn.features import DIM, GROUPS
from wasm_torch.learn.trajectory import CAPACITY, TrajectoryBuffer

G = np.full(len(GROUPS), 1.0 / len(GROUPS), np.float32)


def vec(i: int) -> np.ndarray:
    return np.full(DIM, float(i), np.float32)


def test_default_capacity_is_ten_thousand_and_fifo_evicts_the_oldest():
    assert CAPACITY == 10_000
    buf = TrajectoryBuffer(CAPACITY)
    for i in range(CAPACITY + 7):
        buf.append(vec(i), G, f"p{i}", {"i": i}, 1.0 + i, 2.0, "s", float(i))
    assert len(buf) == CAPACITY and buf.total == CAPACITY + 7
    keys = [t.key for t in buf]
    assert keys[0] == "p7" and keys[-1] == f"p{CAPACITY + 6}"  # the 7 oldest are gone, order kept
    assert [t.config["i"] for t in list(buf)[:3]] == [7, 8, 9]


def test_snapshot_round_trip_keeps_order_and_total():
    buf = TrajectoryBuffer(5)
    for i in range(8):
        buf.append(vec(i), G, f"p{i}", {"i": i, "s": "x"}, 0.5, 1.0, "space", float(i))
    arrays = buf.to_arrays()
    assert not any(a.dtype.hasobject for a in arrays.values())  # saved without pickle
    again = TrajectoryBuffer.from_arrays(arrays, 5)
    assert [t.key for t in again] == [t.key for t in buf] == ["p3", "p4", "p5", "p6", "p7"]
    assert again.total == 8
    assert next(iter(again)).gain == pytest.approx(2.0)
    smaller = TrajectoryBuffer.from_arrays(arrays, 2)  # a smaller capacity keeps the newest
    assert [t.key for t in smaller] == ["p6", "p7"]


@pytest.mark.parametrize(
    "latency, baseline",
    [(0.0, 1.0), (-1.0, 1.0), (float("nan"), 1.0), (1.0, float("inf")), (2e6, 1.0), ("1", 1.0)],
)
def test_bad_latencies_are_refused(latency, baseline):
    buf = TrajectoryBuffer(3)
    with pytest.raises(LearningError, match="seconds"):
        buf.append(vec(0), G, "p", {}, latency, baseline, "s", 0.0)
    assert len(buf) == 0


def test_bad_vectors_and_configs_are_refused():
    buf = TrajectoryBuffer(3)
    with pytest.raises(LearningError, match="float32"):
        buf.append(np.zeros(DIM + 1, np.float32), G, "p", {}, 1.0, 1.0, "s", 0.0)
    bad = vec(0)
    bad[3] = np.nan
    with pytest.raises(LearningError, match="NaN"):
        buf.append(bad, G, "p", {}, 1.0, 1.0, "s", 0.0)
    with pytest.raises(LearningError, match="JSON"):
        buf.append(vec(0), G, "p", {"f": object()}, 1.0, 1.0, "s", 0.0)
    with pytest.raises(LearningError, match="JSON"):
        buf.append(vec(0), G, "p", {"f": float("nan")}, 1.0, 1.0, "s", 0.0)
    with pytest.raises(LearningError):
        TrajectoryBuffer(0)


def test_inconsistent_snapshot_arrays_are_refused():
    buf = TrajectoryBuffer(4)
    for i in range(3):
        buf.append(vec(i), G, f"p{i}", {}, 1.0, 1.0, "s", 0.0)
    a = buf.to_arrays()
    short = {**a, "baseline": a["baseline"][:2]}
    with pytest.raises(LearningError, match="baseline"):
        TrajectoryBuffer.from_arrays(short)
    wide = {**a, "vectors": np.zeros((3, DIM + 2), np.float32)}
    with pytest.raises(LearningError, match="disagree"):
        TrajectoryBuffer.from_arrays(wide)
    broken = {**a, "configs": np.array(["{", "{}", "{}"])}
    with pytest.raises(LearningError, match="not JSON"):
        TrajectoryBuffer.from_arrays(broken)
