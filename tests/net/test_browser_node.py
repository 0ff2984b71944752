"""The browser node (the coordinator's /node page in headless Chromium): it registers with a WebCrypto
Ed25519 key, runs tasks in a Web Worker with the JS runtime, and its signed results agree bit for bit
and unit for unit with a Python node's; with a publisher key it does not trust, it refuses to run."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from wasm_torch.net import db, economy
from wasm_torch.net.node import Node, NodeOptions
from wasm_torch.net.wire import Signer, b64e

from .conftest import inputs

pytestmark = [pytest.mark.slow]


def _job(net, mlp, n):
    owner = Signer.generate()
    net.grant(owner.id, 10 * economy.MICRO)
    r = net.job(owner, mlp[0], inputs(n, seed=3), batch=2)
    assert r.status_code == 200, r.text
    return r.json()["job"]


def test_browser_and_python_nodes_agree(net, mlp, serve, chromium, tmp_path):
    job = _job(net, mlp, 8)  # 4 tasks of 2 rows, each needs 2 distinct nodes: both nodes run all 4
    url = serve(net.coord).url
    py = Node(NodeOptions(coordinators=[url], key=tmp_path / "py.key", trust=[mlp[2]], work_dir=tmp_path / "w",
                          max_tasks=4, idle_exit_s=120))  # fmt: skip
    t = threading.Thread(target=py.run)
    t.start()
    res = chromium(f"{url}/node?name=chromium&fresh=1&max=4", "window.__node.stopped || window.__node.fatal",
                   "JSON.parse(JSON.stringify(window.__node))", tmp_path)["result"]  # fmt: skip
    t.join(timeout=120)
    assert "fatal" not in res or not res["fatal"], res
    assert res["done"] == 4 and res["refused"] == 0 and res["failed"] == 0, res
    st = net.client.get(f"/v1/jobs/{job}").json()
    assert st["status"] == "done" and st["done"] == 4
    outs = {t["idx"]: t["hash"] for t in net.client.get(f"/v1/jobs/{job}/outputs").json()["tasks"]}
    for task, units in res["units"]:
        assert units == 1536 * 2  # the manifest's (1536 * batch), evaluated by evalDim in the worker
        assert res["hashes"][task] == outs[int(task.rsplit("-", 1)[1])]
    nodes = {n["kind"]: n for n in net.coord.status()["nodes"]}
    assert nodes["browser"]["valid"] == 4 and nodes["python"]["valid"] == 4 and nodes["browser"]["invalid"] == 0
    assert nodes["browser"]["work_units"] == nodes["python"]["work_units"] == 4 * 1536 * 2
    assert net.store.ledger.balance(nodes["browser"]["id"])["earned"] > 0


def test_browser_node_refuses_untrusted_publishers(net, mlp, serve, chromium, tmp_path, keys):
    _job(net, mlp, 2)
    url = serve(net.coord).url
    stranger = keys.make("browser-stranger")[2]
    trust = f"{stranger.id}:{b64e(stranger.public_raw)}"
    res = chromium(f"{url}/node?fresh=1&trust={trust}", "window.__node.failed >= 1 || window.__node.fatal",
                   "JSON.parse(JSON.stringify(window.__node))", tmp_path)["result"]  # fmt: skip
    assert res["done"] == 0 and res["failed"] >= 1
    assert any("not signed by a trusted publisher" in e for e in res["errors"]), res["errors"]
    with net.store.engine.connect() as c:
        rows = c.execute(sa.select(db.assignments.c.status, db.assignments.c.verdict)).all()
    assert ("failed", "untrusted") in [tuple(r) for r in rows]
