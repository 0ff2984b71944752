"""Pattern memory (SONA): pre_query / post_query / background_learn, persistence across restarts,
the journal's crash rules, refusal (never deletion) of damaged files, the k-means++ index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from wasm_torch.errors import LearningError
from wasm_torch.learn.features import DIM
from wasm_torch.learn.index import PatternIndex
from wasm_torch.learn.memory import INDEX, JOURNAL, SNAPSHOT, PatternMemory

from .patterns import synthetic_pattern


def fill(mem: PatternMemory, rng: np.random.Generator, families: int = 3, per: int = 4) -> dict[str, list]:
    """Families of nearby patterns; in family f configuration {"k": f} is 2x faster, others 0.9x."""
    out: dict[str, list] = {}
    for f in range(families):
        centre = rng.random(DIM)
        out[f"f{f}"] = []
        for j in range(per):
            p = synthetic_pattern(f"f{f}-{j}", rng, centre)
            out[f"f{f}"].append(p)
            for k in range(families):
                mem.post_query(p, {"k": k}, 0.5 if k == f else 1.0 / 0.9, 1.0, "space")
    return out


def test_pre_query_suggests_what_worked_for_similar_patterns(tmp_path, rng):
    mem = PatternMemory(tmp_path)
    fams = fill(mem, rng)
    for f, pats in fams.items():
        new = synthetic_pattern("unseen", rng, pats[0].vector)
        best = mem.pre_query(new, k=2, space="space")
        assert best[0].config == {"k": int(f[1:])}
        assert best[0].expected_gain == pytest.approx(2.0**0.5, rel=0.1)  # measured once each: shrunk by 1/2
        assert best[0].support >= 3
    assert mem.pre_query(new, space="another space") == []


def test_a_gain_measured_again_outranks_one_lucky_measurement(tmp_path, rng):
    mem = PatternMemory(tmp_path)
    p = synthetic_pattern("a", rng)
    mem.post_query(p, {"k": "lucky"}, 0.5, 1.0)  # 2.0x, once: log 2 x 1/2 = 0.35
    for _ in range(4):
        mem.post_query(p, {"k": "steady"}, 0.625, 1.0)  # 1.6x, four times: log 1.6 x 4/5 = 0.38
    best = mem.pre_query(p, k=2)
    assert [s.config["k"] for s in best] == ["steady", "lucky"]
    assert best[0].expected_gain == pytest.approx(1.6 ** 0.8)


def test_leave_one_out_excludes_the_pattern_itself(tmp_path, rng):
    mem = PatternMemory(tmp_path)
    p = synthetic_pattern("only", rng)
    mem.post_query(p, {"k": 1}, 0.5, 1.0, "s")
    assert mem.pre_query(p)[0].config == {"k": 1}
    assert mem.pre_query(p, exclude="only") == []


def test_survives_restart_before_and_after_consolidation(tmp_path, rng):
    mem = PatternMemory(tmp_path)
    fams = fill(mem, rng)
    probe = synthetic_pattern("probe", rng, fams["f1"][0].vector)
    want = mem.pre_query(probe, k=3)
    assert (tmp_path / JOURNAL).exists() and not (tmp_path / SNAPSHOT).exists()
    again = PatternMemory(tmp_path)  # from the journal alone
    assert len(again) == len(mem) == 36
    assert [s.config for s in again.pre_query(probe, k=3)] == [s.config for s in want]
    stats = again.background_learn()
    assert stats["folded"] == 36 and stats["patterns"] == 12 and stats["clusters"] >= 1
    assert (tmp_path / SNAPSHOT).exists() and (tmp_path / INDEX).exists()
    assert (tmp_path / JOURNAL).read_bytes() == b""
    third = PatternMemory(tmp_path)  # from the snapshot + index
    assert len(third) == 36 and third.index is not None and len(third.index) == 12
    assert [s.config for s in third.pre_query(probe, k=3)] == [s.config for s in want]
    third.post_query(probe, {"k": 2}, 0.1, 1.0, "space")  # 10x: after restart + one new outcome
    fourth = PatternMemory(tmp_path)
    assert len(fourth) == 37
    assert fourth.pre_query(probe, k=1)[0].config == {"k": 2}


def test_an_outcome_acknowledged_by_a_killed_process_is_kept(tmp_path):
    code = textwrap.dedent(
        f"""
        import numpy as np, os, signal, sys
        from wasm_torch.learn.features import Pattern, DIM, GROUPS
        from wasm_torch.learn.memory import PatternMemory
        mem = PatternMemory({str(tmp_path)!r})
        p = Pattern(np.ones(DIM, np.float32), np.full(len(GROUPS), 0.1, np.float32), "killed")
        for i in range(5):
            mem.post_query(p, {{"i": i}}, 0.5, 1.0, "s")
            print("ack", i, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert proc.stdout.count("ack") == 5
    assert len(PatternMemory(tmp_path)) == 5


def test_a_torn_last_journal_line_is_an_unacknowledged_write_and_ignored(tmp_path, rng):
    mem = PatternMemory(tmp_path)
    mem.post_query(synthetic_pattern("a", rng), {"k": 0}, 0.5, 1.0)
    with open(tmp_path / JOURNAL, "ab") as f:
        f.write(b'{"vector": [0.1, 0.2')  # the process died mid-append
    assert len(PatternMemory(tmp_path)) == 1


@pytest.mark.parametrize(
    "damage",
    [
        b"not json\n",
        b"[1, 2, 3]\n",
        b'{"vector": [1], "gates": [1], "key": "k", "config": {}, "latency_s": 1, "baseline_s": 1}\n',
        b'{"vector": NaN}\n',
        json.dumps({"vector": [0.0] * DIM, "gates": [0.1] * 10, "key": "k", "config": "x",
                    "latency_s": 1.0, "baseline_s": 1.0}).encode() + b"\n",
        json.dumps({"vector": [0.0] * DIM, "gates": [0.1] * 10, "key": "k", "config": {},
                    "latency_s": -1.0, "baseline_s": 1.0}).encode() + b"\n",
        b"\xff\xfe\n",
    ],
)
def test_a_damaged_journal_is_refused_and_left_alone(tmp_path, rng, damage):
    mem = PatternMemory(tmp_path)
    mem.post_query(synthetic_pattern("a", rng), {"k": 0}, 0.5, 1.0)
    with open(tmp_path / JOURNAL, "ab") as f:
        f.write(damage)
    before = (tmp_path / JOURNAL).read_bytes()
    with pytest.raises(LearningError, match="move it aside"):
        PatternMemory(tmp_path)
    assert (tmp_path / JOURNAL).read_bytes() == before


@pytest.mark.parametrize("kind", ["garbage", "pickle", "missing", "nan", "shape"])
def test_a_damaged_snapshot_is_refused_and_left_alone(tmp_path, rng, kind):
    mem = PatternMemory(tmp_path)
    mem.post_query(synthetic_pattern("a", rng), {"k": 0}, 0.5, 1.0)
    mem.background_learn()
    snap = tmp_path / SNAPSHOT
    good = dict(np.load(snap, allow_pickle=False))
    if kind == "garbage":
        snap.write_bytes(os.urandom(300))
    elif kind == "pickle":
        with open(snap, "wb") as f:
            np.savez(f, **{**good, "keys": np.array([{"evil": 1}], dtype=object)})
    elif kind == "missing":
        with open(snap, "wb") as f:
            np.savez(f, **{k: v for k, v in good.items() if k != "latency"})
    elif kind == "nan":
        with open(snap, "wb") as f:
            np.savez(f, **{**good, "latency": np.array([np.nan])})
    else:
        with open(snap, "wb") as f:
            np.savez(f, **{**good, "vectors": np.zeros((1, 3), np.float32)})
    before = snap.read_bytes()
    with pytest.raises(LearningError, match=r"trajectories\.npz"):
        PatternMemory(tmp_path)
    assert snap.read_bytes() == before


def test_outcomes_from_another_process_are_folded_not_lost(tmp_path, rng):
    a, b = PatternMemory(tmp_path), PatternMemory(tmp_path)
    a.post_query(synthetic_pattern("from-a", rng), {"k": 0}, 0.5, 1.0)
    b.post_query(synthetic_pattern("from-b", rng), {"k": 1}, 0.5, 1.0)
    a.background_learn()  # folds b's journal line too
    assert sorted(PatternMemory(tmp_path).patterns()) == ["from-a", "from-b"]


def test_index_matches_brute_force_when_probing_every_cluster(rng):
    centres = rng.random((25, DIM))  # model families: patterns come in clusters
    vecs = (centres[rng.integers(25, size=600)] + 0.05 * rng.standard_normal((600, DIM))).astype(np.float32)
    keys = [f"p{i}" for i in range(600)]
    idx = PatternIndex.build(keys, vecs)
    assert 1 < len(idx.centroids) <= 100
    hits = 0
    for _ in range(30):
        q = (centres[rng.integers(25)] + 0.05 * rng.standard_normal(DIM)).astype(np.float32)
        brute = np.argsort(np.linalg.norm(vecs - q, axis=1))[:5]
        exact = idx.query(q, 5, n_probe=len(idx.centroids))
        assert [n.row for n in exact] == list(brute)
        hits += len({n.row for n in idx.query(q, 5)} & set(brute))  # default probe: approximate
    assert hits / (30 * 5) > 0.9


def test_index_rejects_inconsistent_files(tmp_path, rng):
    vecs = rng.random((20, DIM)).astype(np.float32)
    idx = PatternIndex.build([f"p{i}" for i in range(20)], vecs)
    idx.save(tmp_path / INDEX, 20)
    again, built = PatternIndex.load(tmp_path / INDEX)
    assert built == 20 and again.keys == idx.keys
    a = dict(np.load(tmp_path / INDEX, allow_pickle=False))
    with open(tmp_path / INDEX, "wb") as f:
        np.savez(f, **{**a, "labels": np.full(20, 999)})
    with pytest.raises(LearningError, match="outside"):
        PatternIndex.load(tmp_path / INDEX)


def test_a_folder_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(LearningError, match="cannot use"):
        PatternMemory(tmp_path / "file")


def test_an_unwritable_memory_says_the_outcome_was_not_recorded(tmp_path, rng):
    mem = PatternMemory(tmp_path)
    (tmp_path / JOURNAL).mkdir()  # something in the way of the journal file
    with pytest.raises(LearningError, match="could not record"):
        mem.post_query(synthetic_pattern("a", rng), {"k": 0}, 0.5, 1.0)
