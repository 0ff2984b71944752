"""ReasoningBank: the Q-learning update by hand, persistence, surviving SIGKILL, hostile files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from wasm_torch.errors import LearningError
from wasm_torch.learn.reasoning import FORMAT, ReasoningBank, action_key, pattern_class, state_signature

from .patterns import synthetic_pattern


def test_q_update_by_hand(tmp_path):
    bank = ReasoningBank(tmp_path / "bank.json", alpha=0.5, gamma=0.5)
    a = action_key("loop", "simd")
    e = bank.record("s0", a, reward=1.0, next_state="s1")  # q = 0 + 0.5 (1 + 0.5·0 − 0) = 0.5
    assert (e.q, e.visits) == (0.5, 1)
    bank.record("s1", action_key("opt", "O3"), reward=2.0, next_state="s2")  # q(s1) = 1.0
    e = bank.record("s0", a, reward=1.0, next_state="s1")  # 0.5 + 0.5 (1 + 0.5·1.0 − 0.5) = 1.0
    assert (e.q, e.visits) == (pytest.approx(1.0), 2)
    assert bank.best_move("s0") == (a, e)
    bank.record("s3", action_key("x", 1), reward=-1.0, next_state="s0")
    assert bank.best_move("s3") is None  # nothing worth doing there


def test_persists_as_json_and_reloads(tmp_path):
    path = tmp_path / "bank.json"
    bank = ReasoningBank(path)
    bank.record("s", action_key("k", 1), 0.3, "t")
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["entries"][0]["visits"] == 1
    again = ReasoningBank(path)
    assert len(again) == 1 and again.table["s"][action_key("k", 1)].q == pytest.approx(0.3 * 0.3)


def test_state_signature_groups_models_by_kind(rng):
    p = synthetic_pattern("a", rng)
    assert state_signature(p, "space", '{"k":1}').endswith('|space|{"k":1}')
    assert pattern_class(p) == pattern_class(synthetic_pattern("a", np.random.default_rng(0)))


def test_survives_sigkill_mid_run_and_keeps_every_acknowledged_update(tmp_path):
    path = tmp_path / "bank.json"
    code = textwrap.dedent(
        f"""
        import sys
        from wasm_torch.learn.reasoning import ReasoningBank, action_key
        bank = ReasoningBank({str(path)!r}, alpha=0.5, gamma=0.0)
        i = 0
        while True:
            bank.record("s", action_key("k", i % 3), 1.0, "t")
            i += 1
            print(i, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = 0
    deadline = time.monotonic() + 120
    while acked < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked = int(line)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: kill -9 mid-loop
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -9 and acked >= 40
    bank = ReasoningBank(path)  # the restart: a valid table, nothing acknowledged lost
    visits = sum(e.visits for e in bank.table["s"].values())
    assert visits >= acked and bank.updates >= acked
    e = bank.record("s", action_key("k", 0), 1.0, "t")  # and it keeps learning
    assert e.visits >= acked // 3


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"format": "something else", "entries": []}',
        json.dumps({"format": FORMAT, "entries": {}}),
        json.dumps({"format": FORMAT, "entries": [{"state": "s", "action": "a", "q": "1", "visits": 1}]}),
        json.dumps({"format": FORMAT, "entries": [{"state": "s", "action": "a", "q": 1.0, "visits": 0}]}),
        '{"format": "' + FORMAT + '", "entries": [{"state": "s", "action": "a", "q": NaN, "visits": 1}]}',
        '{"format": "' + FORMAT + '", "entries": [{"state": "s", "action": "a", "q": Infinity, "visits": 1}]}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_hostile_bank_files_are_refused_and_left_alone(tmp_path, text):
    path = tmp_path / "bank.json"
    path.write_text(text)
    with pytest.raises(LearningError):
        ReasoningBank(path)
    assert path.read_text() == text


def test_an_oversized_bank_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "bank.json"
    path.write_text(json.dumps({"format": FORMAT, "entries": [], "pad": "x" * 200}))
    with pytest.raises(LearningError, match="limit"):
        ReasoningBank(path, max_file_bytes=100)


def test_non_finite_rewards_and_bad_hyperparameters_are_refused(tmp_path):
    bank = ReasoningBank(tmp_path / "b.json")
    with pytest.raises(LearningError, match="finite"):
        bank.record("s", "a", float("nan"), "t")
    assert not (tmp_path / "b.json").exists()
    with pytest.raises(LearningError):
        ReasoningBank(tmp_path / "c.json", alpha=0.0)
