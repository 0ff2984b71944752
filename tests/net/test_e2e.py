"""The whole network on loopback, every part a real process started the way users start it:

- coordinator A: `wasm-torch coordinator` on SQLite; coordinator B: the same on PostgreSQL (a
  throwaway cluster); they gossip through TCP proxies the test can cut (a network partition);
- four `wasm-torch node` processes serving both: one honest, one returning wrong results (staked),
  one crashing while it holds a task, one slow; plus one browser node (the coordinator's /node page
  in headless Chromium, WebCrypto Ed25519 + Web Worker + the JS runtime);
- a job of 200 tasks of a compiled MLP at A and a job of 30 tasks at B.

Mid-job the coordinators are partitioned, then A is killed with SIGKILL and restarted on the same
database; then the partition heals. Checked: every output equals running the model locally (bit for
bit) and PyTorch (to float tolerance); the cheater earned nothing and was slashed; the crashed node's
tasks were reassigned and completed; no acknowledged result (the nodes' journals) or ledger entry (read
from A before the kill) is lost; the browser node's results and work units match the Python nodes';
both coordinators end with the same Merkle root and balances."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wasm_torch.net import economy
from wasm_torch.net.client import Http
from wasm_torch.net.submit import fetch_outputs, submit_job
from wasm_torch.runtime import load

from .conftest import MAX_BATCH, Proxy, free_port, inputs, parse_browser

pytestmark = [pytest.mark.slow]
TASKS_A, TASKS_B = 200, 30


def _wait(what, pred, timeout=240.0, every=0.25):
    t0 = time.monotonic()
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def _grant(http: Http, coord, account: str, credits: float) -> None:
    to = http.get("/v1/info")["coordinator"]
    http.post("/v1/ledger/grant", coord.seal({"type": "grant", "account": account,
                                              "amount": int(credits * economy.MICRO), "note": "e2e"}, to))  # fmt: skip


def _entries(http: Http, issuer: str) -> dict[int, str]:
    out, after = {}, 0
    while True:
        page = http.get(f"/v1/ledger/entries?issuer={issuer}&after={after}&limit=10000")["entries"]
        if not page:
            return out
        for e in page:
            out[e["seq"]] = e
        after = page[-1]["seq"]


def test_edge_network_end_to_end(procs, keys, mlp, pg_database, chromium, tmp_path):
    folder, model, pub = mlp
    (ka, kpa, sa), (kb, kpb, sb) = keys.make("e2e-A"), keys.make("e2e-B")
    port_a, port_b = free_port(), free_port()
    to_b, to_a = Proxy(port_b), Proxy(port_a)  # A reaches B (and B reaches A) only through these
    common = ["--param", "lease_s=3", "--param", "gossip_s=0.5", "--param", "poll_s=0.3", "--param", "heartbeat_s=2"]
    url_a, coord_a = procs.coordinator("A", ka, pub, port=port_a,
                                       extra=["--peer", to_b.url, "--peer-key", str(kpb), *common])  # fmt: skip
    url_b, _ = procs.coordinator("B", kb, pub, db=pg_database, port=port_b,
                                 extra=["--peer", to_a.url, "--peer-key", str(kpa), *common])  # fmt: skip
    ha, hb = Http(url_a), Http(url_b)

    # accounts: the job owner, and the cheater's stake (at both coordinators)
    _, _, owner = keys.make("e2e-owner")
    kc, _, cheater = keys.make("e2e-cheater")
    for h, c in ((ha, sa), (hb, sb)):
        _grant(h, c, owner.id, 100)
        _grant(h, c, cheater.id, 20)
    job_a = submit_job(ha, owner, folder, [inputs(TASKS_A, seed=1)], batch=1)["job"]
    job_b = submit_job(hb, owner, folder, [inputs(TASKS_B, seed=2)], batch=1)["job"]

    journals = {n: tmp_path / f"{n}.journal" for n in ("honest", "cheater", "crasher", "slow")}
    faults = {"honest": [], "cheater": ["--fault", "wrong", "--stake", "20"], "crasher": ["--fault", "crash-after=5"],
              "slow": ["--fault", "slow=0.3"]}  # fmt: skip
    nodes = {}
    for name, extra in faults.items():
        key = kc if name == "cheater" else keys.make(f"e2e-{name}")[0]
        nodes[name] = procs.node(name, [url_a, url_b], key, pub,
                                 extra=["--journal", str(journals[name]), "--idle-exit", "900", *extra])  # fmt: skip
    done_flag = tmp_path / "browser-may-stop"
    browser = chromium(f"{url_a}/node?name=chromium&fresh=1", "window.__node && window.__node.done >= 1",
                       "JSON.parse(JSON.stringify(window.__node))", tmp_path, timeout_ms=600_000,
                       signal=done_flag, background=True)  # fmt: skip

    # phase 1: work, then partition the coordinators
    _wait("a third of job A", lambda: ha.get(f"/v1/jobs/{job_a}")["done"] >= TASKS_A // 3)
    to_b.cut()
    to_a.cut()

    # phase 2: SIGKILL coordinator A mid-job; remember what it acknowledged first
    _wait("half of job A", lambda: ha.get(f"/v1/jobs/{job_a}")["done"] >= TASKS_A // 2)
    seen_a = _entries(ha, sa.id)
    journal_before = {n: j.read_text().splitlines() if j.exists() else [] for n, j in journals.items()}
    coord_a.send_signal(signal.SIGKILL)
    coord_a.wait(timeout=20)
    time.sleep(1.0)
    procs.coordinator("A", ka, pub, port=port_a, extra=["--peer", to_b.url, "--peer-key", str(kpb), *common])
    after_a = _entries(ha, sa.id)
    for seq, e in seen_a.items():  # every entry A had acknowledged survived the kill, unchanged
        assert after_a.get(seq) == e, f"ledger entry {seq} lost or changed by kill -9"

    # phase 3: heal; both jobs finish; the ledgers converge
    to_b.heal()
    to_a.heal()
    sa_done = _wait("job A", lambda: (s := ha.get(f"/v1/jobs/{job_a}"))["status"] == "done" and s, timeout=300)
    sb_done = _wait("job B", lambda: (s := hb.get(f"/v1/jobs/{job_b}"))["status"] == "done" and s, timeout=300)
    assert sa_done["done"] == TASKS_A and sb_done["done"] == TASKS_B and sa_done["failed"] == sb_done["failed"] == 0
    done_flag.write_text("ok")
    res = parse_browser(browser.wait(timeout=300), *browser.communicate())["result"]

    def converged():
        ra, rb = ha.get("/v1/ledger/root"), hb.get("/v1/ledger/root")
        return ra["root"] == rb["root"] and ra["entries"] == rb["entries"] and ra

    _wait("ledger convergence after the partition healed", converged, timeout=120)

    # outputs: bit-identical to a local run, and to torch within float tolerance
    m = load(folder, variant="simd128", threads=1)  # the build tasks pin
    for job, n, seed, http in ((job_a, TASKS_A, 1, ha), (job_b, TASKS_B, 2, hb)):
        got = fetch_outputs(http, job)[0]
        x = inputs(n, seed=seed)
        local = np.concatenate([m(x[i : i + MAX_BATCH]) for i in range(0, n, MAX_BATCH)])
        assert np.array_equal(got, local)
        with torch.no_grad():
            assert np.abs(got - model(torch.from_numpy(x)).numpy()).max() < 1e-4

    status_a, status_b = ha.get("/v1/status"), hb.get("/v1/status")
    by_name = {n["name"]: n for n in status_a["nodes"]}
    bal = {name: ha.get(f"/v1/ledger/balance/{by_name[name]['id']}") for name in by_name}
    # the cheater earned nothing anywhere, lost quorums and was slashed
    assert bal["cheater"]["earned"] == 0 and bal["cheater"]["slashed"] > 0
    assert by_name["cheater"]["invalid"] >= 1 and by_name["cheater"]["valid"] == 0
    assert hb.get(f"/v1/ledger/balance/{cheater.id}")["earned"] == 0
    # the crasher died holding a lease; its tasks were reassigned and completed by others
    assert nodes["crasher"].wait(timeout=5) == 17
    assert by_name["crasher"]["timeouts"] + next(
        (n["timeouts"] for n in status_b["nodes"] if n["name"] == "crasher"), 0) >= 1  # fmt: skip
    for name in ("honest", "slow", "chromium"):
        assert by_name[name]["valid"] > 0 and bal[name]["earned"] > 0, name
    # the browser node: its results were canonical and its work units equal the coordinator's
    outs = {t["idx"]: t["hash"] for t in ha.get(f"/v1/jobs/{job_a}/outputs?limit=1000")["tasks"]}
    assert res["done"] >= 1 and res["units"]
    for task, units in res["units"]:
        assert units == 1536  # (1536 * batch) at batch 1, as the Python nodes and the coordinator count
        idx = int(task.rsplit("-", 1)[1])
        if task.startswith(job_a):
            assert res["hashes"][task] == outs[idx]

    # nothing acknowledged was lost: every journaled result is in its coordinator's database
    db_a = sqlite3.connect(procs.root / "A.db")
    for name, lines in journal_before.items():
        for line in lines:
            j = json.loads(line)
            if j["coordinator"] != sa.id:
                continue
            row = db_a.execute("select status, hash from assignments where id=?", (j["assignment"],)).fetchone()
            assert row == ("submitted", j["hash"]), (name, j)
    # both coordinators agree on every balance
    for acct in {n["id"] for n in status_a["nodes"]} | {owner.id}:
        assert ha.get(f"/v1/ledger/balance/{acct}") == hb.get(f"/v1/ledger/balance/{acct}")
    for p in nodes.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    honest_log = Path(nodes["honest"].log_path)
    _wait("honest node summary", lambda: nodes["honest"].poll() is not None, timeout=60)
    assert '"peers"' in honest_log.read_text()  # per-coordinator statistics in the node's summary
    assert os.path.getsize(journals["honest"]) > 0
