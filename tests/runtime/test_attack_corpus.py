"""The malicious-artifact corpus (items 2-5): over 140 hand-made artifacts — wrong entry types,
funcref/externref parameters, start functions that loop or fill memory, huge or several memories,
tables, imports, malformed and hostile manifests, paths out of the folder, symbolic links, FIFOs,
/dev/zero, forged and replayed signatures — each loaded (and, if it loads, called) in a worker
subprocess with a timeout, so a crash or a hang is detected and counted rather than taking the test
run down. Every one must be refused with an ArtifactError; the two controls must load and run.

The harness itself is tested with a worker that crashes and one that hangs, so a zero count means
something."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest

from .conftest import load_bench

pytestmark = [pytest.mark.wasm]


def test_every_malicious_artifact_is_refused_without_crash_or_hang(tmp_path, corpus):
    runner = load_bench("attack_artifacts")
    cases = corpus.build(tmp_path / "corpus")
    t0 = time.monotonic()
    results = runner.run(cases, timeout=30.0, env={"WASM_TORCH_CACHE": str(tmp_path / "cache"),
                                                   "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})  # fmt: skip
    c = runner.counts(results)
    bad = [(r["name"], r["outcome"], r.get("error"), r.get("message", "")[:200]) for r in results if not r["ok"]]
    assert not bad, bad
    assert c["malicious"] >= 80 and c["refused"] == c["malicious"] and c["controls_ok"] == c["controls"] == 2
    assert c["crash"] == c["hang"] == c["loaded"] == c["wrong_error"] == 0
    for r in results:  # a clear message: what was wrong (a file or field) and what to do
        if r["expect"] != "ok":
            assert len(r["message"]) > 40, r
    assert time.monotonic() - t0 < 120


FAULTY_WORKER = textwrap.dedent('''
    import json, os, signal, sys, time
    for case in json.loads(sys.stdin.read()):
        print(json.dumps({"start": case["name"]}), flush=True)
        if case["name"] == "boom":
            os.kill(os.getpid(), signal.SIGSEGV)
        if case["name"] == "sleep":
            time.sleep(60)
        print(json.dumps({"done": case["name"], "outcome": "refused", "error": "ArtifactError",
                          "message": "x"}), flush=True)
''')


def test_the_harness_counts_crashes_and_hangs(tmp_path, corpus):
    runner = load_bench("attack_artifacts")
    script = tmp_path / "worker.py"
    script.write_text(FAULTY_WORKER)
    cases = [corpus.Case(n, tmp_path, "fake") for n in ("a", "boom", "b", "sleep", "c")]
    results = runner.run(cases, timeout=2.0, worker=[sys.executable, str(script)])
    assert [r["outcome"] for r in results] == ["refused", "crash", "refused", "hang", "refused"]
    assert results[1]["returncode"] < 0
    c = runner.counts(results)
    assert (c["crash"], c["hang"], c["refused"]) == (1, 1, 3)
