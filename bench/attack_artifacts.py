"""Load every malicious artifact of bench/attack_corpus.py in a subprocess and count what happens.

    PYTHONPATH=. .venv/bin/python bench/attack_artifacts.py [--out bench/results/attack_artifacts.json]

Each case is loaded with `wasm_torch.load` in a worker process (a few workers in sequence, not one
interpreter per case); if it loads, it is also called once on a valid input. The worker reports
each case before and after, so the parent knows which case a crash (the worker died, e.g. SIGSEGV
or SIGABRT) or a hang (no answer within --timeout seconds: the worker is killed) belongs to, and
starts a new worker for the rest. Outcomes:

    refused      ArtifactError (or a subclass) with a message naming the problem — what we want
    ok           loaded and computed y = 2x — wanted only for the control cases
    loaded       loaded although it is malicious (a failure)
    wrong_error  any other exception type (a failure: e.g. a raw KeyError, wasmtime.Trap)
    crash, hang  the worker process died or did not answer (failures)

Prints a table and the counts, writes JSON (with each case's error message) and exits 1 when any
case has a failure outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FAILURES = ("loaded", "wrong_error", "crash", "hang")


def _worker() -> None:
    """Read [{name, path, options, expect}] on stdin; one JSON line before and after each case."""
    import numpy as np

    import wasm_torch
    from wasm_torch.errors import ArtifactError

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for case in json.loads(sys.stdin.read()):
        print(json.dumps({"start": case["name"]}), flush=True)
        t0 = time.perf_counter()
        out: dict[str, Any] = {"done": case["name"]}
        try:
            m = wasm_torch.load(case["path"], **case["options"])
            y = m(x)
            out["outcome"] = "ok" if np.array_equal(y, 2 * x) else "loaded"
        except ArtifactError as e:
            out.update(outcome="refused", error=type(e).__name__, message=str(e))
        except BaseException as e:  # the point is to see every other kind
            out.update(outcome="wrong_error", error=f"{type(e).__module__}.{type(e).__name__}", message=str(e)[:500])
        out["ms"] = round((time.perf_counter() - t0) * 1e3, 2)
        print(json.dumps(out), flush=True)


def run(
    cases: list[Any], timeout: float = 30.0, env: dict[str, str] | None = None, worker: list[str] | None = None
) -> list[dict[str, Any]]:
    """Run the cases (attack_corpus.Case) in worker processes; one result dict per case, in order.
    `worker`: the worker command (default: this script with --worker; tests substitute a faulty one)."""
    worker = worker or [sys.executable, str(Path(__file__).resolve()), "--worker"]
    todo = [{"name": c.name, "path": str(c.folder), "options": c.options, "expect": c.expect} for c in cases]
    results: dict[str, dict[str, Any]] = {}
    while todo:
        proc = subprocess.Popen(
            worker,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(todo).encode())
        proc.stdin.close()
        current, t_start, buf = None, time.monotonic(), b""
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:  # the worker exited
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if "start" in msg:
                        current, t_start = msg["start"], time.monotonic()
                    else:
                        results[msg["done"]] = msg
                        current = None
            elif current is not None and time.monotonic() - t_start > timeout:
                proc.kill()
                results[current] = {"done": current, "outcome": "hang", "ms": round(timeout * 1e3)}
                break
        rc = proc.wait()
        if current is not None and current not in results:
            results[current] = {"done": current, "outcome": "crash", "returncode": rc}
        todo = [t for t in todo if t["name"] not in results]
        if todo and current is None and rc == 0:  # finished without reporting the rest: count them lost
            for t in todo:
                results[t["name"]] = {"done": t["name"], "outcome": "crash", "returncode": rc}
            todo = []
    out = []
    for c in cases:
        r = dict(results[c.name], name=c.name, attack=c.attack, expect=c.expect)
        want = {"ok": ("ok",), "load": ("ok", "loaded")}.get(c.expect, ("refused",))
        r["ok"] = r["outcome"] in want
        out.append(r)
    return out


def counts(results: list[dict[str, Any]]) -> dict[str, int]:
    results = [r for r in results if r["expect"] != "load"]
    malicious = [r for r in results if r["expect"] != "ok"]
    c = {k: sum(r["outcome"] == k for r in malicious) for k in ("refused", *FAILURES)}
    c["malicious"] = len(malicious)
    c["controls_ok"] = sum(r["ok"] for r in results if r["expect"] == "ok")
    c["controls"] = len(results) - len(malicious)
    return c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "attack_artifacts.json")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds a case may take before it counts as a hang")
    a = ap.parse_args(argv)
    if a.worker:
        _worker()
        return 0
    import attack_corpus

    with tempfile.TemporaryDirectory(prefix="wt-attack-") as tmp:
        t0 = time.perf_counter()
        cases = attack_corpus.build(Path(tmp) / "corpus")
        cases += attack_corpus.worst_case(Path(tmp) / "worst")
        built = time.perf_counter() - t0
        env = dict(os.environ, WASM_TORCH_CACHE=str(Path(tmp) / "cache"))
        t0 = time.perf_counter()
        results = run(cases, a.timeout, env)
        ran = time.perf_counter() - t0
    for r in results:
        flag = "  " if r["ok"] else "!!"
        print(f"{flag} {r['name']:36s} {r['outcome']:11s} {r.get('error', ''):16s} {r.get('ms', 0):8.1f} ms  "
              f"{r.get('message', '')[:90]}")  # fmt: skip
    c = counts(results)
    slowest = max((r for r in results if "ms" in r and r["expect"] != "load"), key=lambda r: r["ms"])
    worst = {r["name"]: r for r in results if r["expect"] == "load"}
    print(f"\n{c['malicious']} malicious artifacts: {c['refused']} refused (ArtifactError), {c['loaded']} loaded, "
          f"{c['wrong_error']} other errors, {c['crash']} crashes, {c['hang']} hangs; controls "
          f"{c['controls_ok']}/{c['controls']} ok. Built in {built:.1f} s, ran in {ran:.1f} s; slowest case "
          f"{slowest['name']} {slowest['ms']:.0f} ms.")  # fmt: skip
    for r in worst.values():
        print(f"largest accepted module: {r['attack']}: {r['outcome']} in {r.get('ms', 0) / 1e3:.1f} s (cold compile)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"command": "PYTHONPATH=. python bench/attack_artifacts.py", "counts": c,
                                 "build_s": round(built, 2), "run_s": round(ran, 2), "cases": results,
                                 "largest_accepted_load_ms": {k: r.get("ms") for k, r in worst.items()}},
                                indent=1))  # fmt: skip
    bad = c["loaded"] + c["wrong_error"] + c["crash"] + c["hang"] + (c["controls"] - c["controls_ok"])
    bad += sum(not r["ok"] for r in worst.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
