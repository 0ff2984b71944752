"""The Python node against a real coordinator over HTTP: it runs only signed, intact modules, pins
the build variant, honours its memory cap, retries through a coordinator restart, and its work
units equal the coordinator's."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from wasm_torch.errors import ArtifactError
from wasm_torch.net import economy
from wasm_torch.net.node import Fault, Node, NodeOptions
from wasm_torch.net.wire import Signer

from .conftest import MAX_BATCH, free_port, inputs


def _opts(tmp: Path, url: str, trust: Path, **kw) -> NodeOptions:
    return NodeOptions(coordinators=[url], key=tmp / f"node-{len(list(tmp.glob('node-*')))}.key", trust=[trust],
                       work_dir=tmp / "work", **kw)  # fmt: skip


def _funded_job(net, mlp, n=4, batch=1):
    owner = Signer.generate()
    net.grant(owner.id, 10 * economy.MICRO)
    r = net.job(owner, mlp[0], inputs(n), batch=batch)
    assert r.status_code == 200, r.text
    return r.json()["job"]


def test_two_nodes_complete_a_job_with_units_equal_to_the_coordinators(net, mlp, serve, tmp_path):
    job = _funded_job(net, mlp, n=6, batch=3)
    url = serve(net.coord).url
    summaries = []
    nodes = [Node(_opts(tmp_path / f"n{i}", url, mlp[2], max_tasks=2, idle_exit_s=20)) for i in range(2)]
    threads = [threading.Thread(target=lambda n=n: summaries.append(n.run())) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert net.client.get(f"/v1/jobs/{job}").json()["done"] == 2
    assert sum(s["acked"] for s in summaries) == 4
    for s in summaries:
        assert all(p["done"] == 2 and p["refused"] == 0 for p in s["peers"].values())
    # units the nodes reported were accepted only because they equal the coordinator's (from the manifest)
    manifest = json.loads((mlp[0] / "manifest.json").read_text())
    assert manifest["work"]["flops"] == "(1536 * batch)"
    assert {r["work_units"] for r in net.coord.status()["nodes"]} == {2 * 1536 * 3}


def test_node_refuses_modules_not_signed_by_a_key_it_trusts(net, mlp, serve, tmp_path, keys):
    _funded_job(net, mlp, n=1)
    url = serve(net.coord).url
    _, stranger_pub, _ = keys.make("someone-else")
    node = Node(_opts(tmp_path, url, stranger_pub, idle_exit_s=3))
    node.run()
    assert node.acked == 0 and node.refused_artifacts
    assert not any(Path(tmp_path / "work" / "artifacts").iterdir())  # nothing unverified is kept
    a = net.coord.status()
    assert a["nodes"][0]["valid"] == 0 and a["jobs"][0]["running"] == 0  # reported failed, back in the pool


def test_node_refuses_a_tampered_artifact_from_a_compromised_coordinator(net, mlp, serve, tmp_path):
    _funded_job(net, mlp, n=1)
    url = serve(net.coord).url
    db = net.store.url
    sha = next(iter(json.loads(urllib.request.urlopen(url + "/v1/status").read())["jobs"]))["artifact"]
    with sqlite3.connect(db) as c:  # the coordinator's stored weights are swapped after upload
        q = "from artifact_files where sha=? and name='weights.bin'"
        w = c.execute("select data " + q, (sha,)).fetchone()[0]
        c.execute("update artifact_files set data=? where sha=? and name='weights.bin'", (bytes(len(w)), sha))
    node = Node(_opts(tmp_path, url, mlp[2], idle_exit_s=3))
    node.run()
    assert node.acked == 0 and sha in node.refused_artifacts


def test_node_never_runs_without_trusted_keys(tmp_path):
    with pytest.raises(ArtifactError, match="trusted publisher"):
        Node(NodeOptions(coordinators=["http://127.0.0.1:9"], key=tmp_path / "k.key", trust=[], work_dir=tmp_path))


def test_memory_cap_below_the_model_is_reported_not_run(net, mlp, serve, tmp_path):
    _funded_job(net, mlp, n=1)
    url = serve(net.coord).url
    node = Node(_opts(tmp_path, url, mlp[2], idle_exit_s=3, memory_limit_mb=0))
    node.run()
    assert node.acked == 0
    with net.store.engine.connect() as c:
        import sqlalchemy as sa

        from wasm_torch.net import db

        rows = c.execute(sa.select(db.assignments.c.status, db.assignments.c.verdict)).all()
    assert [tuple(r) for r in rows] == [("failed", "limit")]


def test_wrong_fault_changes_the_hash_only(tmp_path, mlp):
    from wasm_torch.net import tensors
    from wasm_torch.runtime import load

    m = load(mlp[0], variant="simd128", threads=1)
    x = inputs(2)
    good = [("output_0", m(x))]
    bad = [("output_0", __import__("wasm_torch.net.node", fromlist=["_tamper"])._tamper(m(x)))]
    assert tensors.output_hash(good) != tensors.output_hash(bad)
    assert Fault.parse(["wrong", "slow=0.5", "crash-after=3"]) == Fault(True, 3, 0.5)
    with pytest.raises(Exception, match="unknown --fault"):
        Fault.parse(["explode"])


@pytest.mark.slow
def test_node_survives_a_coordinator_restart(procs, keys, mlp, tmp_path):
    """A real `wasm-torch coordinator` is stopped mid-job and started again on the same database and
    port; the `wasm-torch node` keeps retrying with backoff and the job completes."""
    ckey, _, csigner = keys.make("coord-restart")
    port = free_port()
    url, coord = procs.coordinator("c", ckey, mlp[2], port=port, extra=["--param", "lease_s=5"])
    from wasm_torch.net.client import Http
    from wasm_torch.net.submit import submit_job

    http = Http(url)
    _, _, owner = keys.make("owner-restart")
    http.post("/v1/ledger/grant", csigner.seal({"type": "grant", "account": owner.id, "amount": 10 * economy.MICRO,
                                                 "note": "t"}, csigner.id))  # fmt: skip
    job = submit_job(http, owner, mlp[0], [inputs(24)], batch=1)["job"]
    n1, n2 = keys.make("restart-n1")[0], keys.make("restart-n2")[0]
    nodes = [procs.node(n, [url], k, mlp[2], extra=["--idle-exit", "60", "--fault", "slow=0.1"])
             for n, k in (("n1", n1), ("n2", n2))]  # fmt: skip
    t0 = time.monotonic()
    while http.get(f"/v1/jobs/{job}")["done"] < 4:
        assert time.monotonic() - t0 < 120
        time.sleep(0.2)
    coord.terminate()
    coord.wait(timeout=20)
    time.sleep(2.0)  # the nodes find nobody home and back off
    url2, _ = procs.coordinator("c", ckey, mlp[2], port=port)
    assert url2 == url
    t0 = time.monotonic()
    while (s := http.get(f"/v1/jobs/{job}"))["status"] != "done":
        assert time.monotonic() - t0 < 180, s
        time.sleep(0.3)
    assert s["done"] == 24 and s["failed"] == 0
    from wasm_torch.net.submit import fetch_outputs
    from wasm_torch.runtime import load

    got = fetch_outputs(http, job)[0]
    m = load(mlp[0], variant="simd128", threads=1)
    x = inputs(24)
    want = np.concatenate([m(x[i : i + MAX_BATCH]) for i in range(0, 24, MAX_BATCH)])
    assert np.array_equal(got, want)
    for p in nodes:
        assert p.poll() is None or p.returncode == 0
