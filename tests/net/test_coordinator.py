"""The coordinator app end to end in-process (real app, real SQLite, real signatures): the happy
path of one job, then every route attacked — malformed, oversized, forged, replayed, late, unknown,
duplicate, wrong — each answered with a 4xx (never a 500), the right penalty, and the coordinator
still serving and its acknowledged state intact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wasm_torch.net import economy, tensors
from wasm_torch.net.wire import ENVELOPE_DOMAIN, Signer, b64e

from .conftest import artifact_files, inputs


def _job(net, mlp, n=4, credits=10):
    owner = Signer.generate()
    net.grant(owner.id, credits * economy.MICRO)
    r = net.job(owner, mlp[0], inputs(n))
    assert r.status_code == 200, r.text
    return owner, r.json()["job"]


def test_one_job_two_honest_nodes_matches_local_and_pays(net, mlp):
    owner, job = _job(net, mlp, n=6)
    a, b = net.register("a"), net.register("b")
    for _ in range(6):
        for node in (a, b):
            task = net.lease(node)
            assert task is not None
            r = net.post("/v1/tasks/result", node, net.result(mlp[0], task))
            assert r.status_code == 200, r.text
    st = net.client.get(f"/v1/jobs/{job}").json()
    assert st["status"] == "done" and st["done"] == 6 and st["reservation_left"] == 0
    outs = net.client.get(f"/v1/jobs/{job}/outputs").json()["tasks"]
    x = inputs(6)
    with __import__("torch").no_grad():
        want = mlp[1](__import__("torch").from_numpy(x)).numpy()
    got = np.concatenate([tensors.decode(t["outputs"], "o", 1 << 20)[0][1] for t in outs])
    assert np.abs(got - want).max() < 1e-5  # torch is the oracle
    led = net.store.ledger
    for node in (a, b):
        bal = led.balance(node.id)
        assert bal["earned"] > 0 and bal["balance"] == bal["earned"]  # escrowed part of it is staked
        assert net.node_row(node.id)["valid"] == 6
    ob = led.balance(owner.id)
    assert ob["reserved"] == 0 and ob["spent"] == st["spent"] and ob["available"] == 10 * economy.MICRO - st["spent"]
    assert all(v >= 0 for acct in led.accounts.values() for v in acct.view().values())


def test_cheater_loses_quorum_is_slashed_and_earns_nothing(net, mlp):
    _, job = _job(net, mlp, n=1)
    cheat = Signer.generate()
    net.grant(cheat.id, 20 * economy.MICRO)
    net.register("cheat", stake=20 * economy.MICRO, signer=cheat)
    h1, h2 = net.register("h1"), net.register("h2")
    t = net.lease(cheat)
    assert net.post("/v1/tasks/result", cheat, net.result(mlp[0], t, wrong=True)).status_code == 200
    t1 = net.lease(h1)
    r = net.post("/v1/tasks/result", h1, net.result(mlp[0], t1))
    assert r.json()["verdict"] == "replicating"  # mismatch: a third replica is needed
    t2 = net.lease(h2)
    assert t2["task"] == t["task"]
    r = net.post("/v1/tasks/result", h2, net.result(mlp[0], t2))
    assert r.json()["verdict"] == "canonical"
    bal = net.store.ledger.balance(cheat.id)
    assert bal["earned"] == 0 and bal["slashed"] == 10 * economy.MICRO and bal["staked"] == 10 * economy.MICRO
    assert net.node_row(cheat.id)["invalid"] == 1 and net.node_row(cheat.id)["reputation"] < 0.26
    slash = next(e for e in net.store.ledger.iter_entries() if e.kind == "slash")
    ev = net.client.get(f"/v1/evidence/{slash.evidence}")
    assert ev.status_code == 200
    doc = ev.json()
    # the evidence is verifiable by anyone: the cheater's own signature over its wrong hash
    env = doc["result"]
    from wasm_torch.net.wire import verify_raw

    assert verify_raw(cheat.public_raw, __import__("base64").b64decode(env["sig"]), ENVELOPE_DOMAIN + env["payload"].encode())
    assert json.loads(env["payload"])["hash"] != doc["canonical"][0] and len(doc["canonical"]) == 2
    assert net.client.get(f"/v1/jobs/{job}").json()["status"] == "done"


def test_cheater_is_cut_off_after_repeated_wrong_results(make_net, mlp):
    net = make_net(params={"min_reputation": 0.1})
    _job(net, mlp, n=8)
    cheat, h = net.register("cheat"), [net.register(f"h{i}") for i in range(3)]
    refused = False
    for _ in range(8):
        t = net.lease(cheat) if not refused else None
        if t:
            net.post("/v1/tasks/result", cheat, net.result(mlp[0], t, wrong=True))
        for node in h:
            t = net.lease(node)
            if t:
                net.post("/v1/tasks/result", node, net.result(mlp[0], t))
        r = net.post("/v1/tasks/lease", cheat, {"type": "lease"})
        refused = refused or r.status_code == 403
    assert refused and net.store.ledger.balance(cheat.id)["earned"] == 0


# ---- hostile: envelopes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,status",
    [
        (b"", 400),
        (b"not json", 400),
        (b"[]", 400),
        (b'{"payload": "{}", "sig": "AAAA"}', 401),  # a signature of the wrong length
        (b'{"payload": 1, "sig": "x"}', 400),
        (b'{"payload": "{}", "sig": "!!"}', 400),
        (b'{"payload": "{}", "sig": "AA==", "extra": 1}', 400),
        (b'{"payload": "{}", "payload": "{}", "sig": "AA=="}', 400),  # duplicate keys
        (b'{"payload": "NaN", "sig": "' + b"A" * 86 + b'=="}', 400),
    ],
)
@pytest.mark.parametrize("route", ["/v1/nodes/register", "/v1/nodes/heartbeat", "/v1/nodes/holdings", "/v1/tasks/lease",
                                   "/v1/tasks/result", "/v1/tasks/fail", "/v1/jobs", "/v1/ledger/grant",
                                   "/v1/params", "/v1/gossip", "/v1/gossip/push"])  # fmt: skip
def test_malformed_envelopes_get_4xx_on_every_route(net, route, body, status):
    r = net.client.post(route, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, (route, body, r.text)
    assert "error" in r.json()
    assert net.client.get("/v1/info").status_code == 200


def test_oversized_bodies_are_refused_before_reading(make_net):
    net = make_net(params={"max_body_bytes": 4096})
    big = b'{"payload": "' + b"x" * 10_000 + b'", "sig": ""}'
    for route in ("/v1/tasks/result", "/v1/jobs", "/v1/gossip/push"):
        r = net.client.post(route, content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
    r = net.client.post("/v1/tasks/lease", content=b"x" * 10, headers={"content-length": "99999999"})
    assert r.status_code == 413


def test_forged_signature_and_wrong_fields(net, mlp):
    node = net.register("a")
    env = node.seal({"type": "lease"}, net.id)
    payload = json.loads(env["payload"])
    payload["from"] = net.register("b").id  # claim to be someone else, keep the signature
    r = net.client.post("/v1/tasks/lease", json={"payload": json.dumps(payload), "sig": env["sig"]})
    assert r.status_code == 401 and "forged" in r.json()["error"]
    imposter = Signer.generate()
    env = imposter.seal({"type": "lease"}, net.id)
    env["payload"] = env["payload"].replace(imposter.id, node.id)
    assert net.client.post("/v1/tasks/lease", json=env).status_code == 401
    assert net.node_row(node.id)["reputation"] == economy.REPUTATION_START  # unattributable: nobody pays
    assert net.coord.scheduler.rejected.get("BadSignature", 0) >= 2
    r = net.post("/v1/tasks/lease", node, {"type": "lease", "extra": 1})
    assert r.status_code == 400 and "unexpected fields" in r.json()["error"]
    r = net.post("/v1/tasks/lease", node, {"type": "heartbeat"})
    assert r.status_code == 400
    r = net.client.post("/v1/tasks/lease", json=node.seal({"type": "lease"}, "ed25519:" + "0" * 32))
    assert r.status_code == 400 and "addressed to coordinator" in r.json()["error"]
    r = net.post("/v1/tasks/lease", Signer.generate(), {"type": "lease"})
    assert r.status_code == 404 and "register first" in r.json()["error"]


def test_replayed_and_stale_messages(net, mlp):
    _job(net, mlp, n=2)
    node = net.register("a")
    env = node.seal({"type": "lease"}, net.id)
    assert net.client.post("/v1/tasks/lease", json=env).status_code == 200
    r = net.client.post("/v1/tasks/lease", json=env)
    assert r.status_code == 409 and "replayed" in r.json()["error"]
    # a stale timestamp (beyond the clock-skew window) is refused; signed, so it costs reputation
    import wasm_torch.net.wire as wire

    text = json.dumps({"type": "lease", "from": node.id, "to": net.id, "ts": wire.now_ms() - 3_600_000,
                       "nonce": "ab" * 16})  # fmt: skip
    stale = {"payload": text, "sig": b64e(node.sign(ENVELOPE_DOMAIN + text.encode()))}
    r = net.client.post("/v1/tasks/lease", json=stale)
    assert r.status_code == 409 and "clock" in r.json()["error"]
    assert net.node_row(node.id)["offences"] == 1


def test_replayed_result_is_refused_and_pays_nothing_twice(net, mlp):
    _job(net, mlp, n=1)
    a, b = net.register("a"), net.register("b")
    ta = net.lease(a)
    env = a.seal(net.result(mlp[0], ta), net.id)
    assert net.client.post("/v1/tasks/result", json=env).status_code == 200
    assert net.client.post("/v1/tasks/result", json=env).status_code == 409  # exact replay
    # a fresh message with the same result (a retry after a lost answer) is idempotent
    r = net.post("/v1/tasks/result", a, net.result(mlp[0], ta))
    assert r.status_code == 200 and r.json()["duplicate"] is True
    # a different second result for the same assignment is a conflict and costs reputation
    r = net.post("/v1/tasks/result", a, net.result(mlp[0], ta, wrong=True))
    assert r.status_code == 409 and net.node_row(a.id)["offences"] == 1
    tb = net.lease(b)
    assert net.post("/v1/tasks/result", b, net.result(mlp[0], tb)).json()["verdict"] == "canonical"
    earned = net.store.ledger.balance(a.id)["earned"]
    assert net.client.post("/v1/tasks/result", json=env).status_code == 409
    assert net.store.ledger.balance(a.id)["earned"] == earned


def test_unknown_foreign_late_and_bad_results(make_net, mlp):
    net = make_net(params={"lease_s": 2.0})
    _job(net, mlp, n=3)
    a, b = net.register("a"), net.register("b")
    ta = net.lease(a)
    good = net.result(mlp[0], ta)
    cases = [
        ({**good, "assignment": "as-nope"}, 404, "unknown assignment"),
        ({**good, "task": "job-x-0"}, 400, "is for task"),
        ({**good, "hash": "0" * 64}, 400, "does not match"),
        ({**good, "hash": "zz"}, 400, "sha256"),
        ({**good, "units": good["units"] + 1}, 400, "work units"),
        ({**good, "outputs": []}, 400, "non-empty"),
        ({**good, "outputs": [{**good["outputs"][0], "shape": [1, 9]}]}, 400, "bytes of data"),
        ({**good, "outputs": [{**good["outputs"][0], "dtype": "float64"}]}, 400, "dtype"),
        ({**good, "outputs": [{**good["outputs"][0], "data": "***"}]}, 400, "base64"),
    ]
    offences = 0
    for payload, status, words in cases:
        r = net.post("/v1/tasks/result", a, payload)
        assert r.status_code == status and words in r.json()["error"], (payload.keys(), r.text)
        offences += 1
    assert net.node_row(a.id)["offences"] == offences
    r = net.post("/v1/tasks/result", b, good)  # b submits a's assignment
    assert r.status_code == 403 and net.node_row(b.id)["offences"] == 1
    import time

    time.sleep(max(0.0, ta["deadline_ms"] / 1000 - time.time()) + 0.3)
    r = net.post("/v1/tasks/result", a, good)
    assert r.status_code == 410 and "expired" in r.json()["error"]
    # the expired lease went back to the pool: another node gets the task
    tb = net.lease(b)
    assert tb is not None
    assert net.post("/v1/tasks/result", b, net.result(mlp[0], tb)).status_code == 200


def test_huge_task_inputs_and_bad_jobs(make_net, mlp):
    net = make_net(params={"max_task_bytes": 1024})
    owner = Signer.generate()
    net.grant(owner.id, economy.MICRO)
    r = net.job(owner, mlp[0], inputs(16), batch=16)  # 16x16 float32 = 1024 B of input: fits
    assert r.status_code == 200, r.text
    net2 = make_net()
    net2.grant(owner.id, economy.MICRO)
    sha = net2.upload(mlp[0])
    base = {"type": "job", "pubkey": b64e(owner.public_raw), "artifact": sha, "priority": False}
    bad = [
        ({**base, "tasks": []}, 400, "at least one task"),
        ({**base, "artifact": "f" * 64, "tasks": [[]]}, 404, "unknown artifact"),
        ({**base, "artifact": "nope", "tasks": [[]]}, 400, "sha256"),
        ({**base, "tasks": [tensors.encode([("input", inputs(17))])]}, 400, "outside the compiled range"),
        ({**base, "tasks": [[{**tensors.encode([("input", inputs(2))])[0], "dtype": "float64"}]]}, 400, "dtype"),
        ({**base, "tasks": [tensors.encode([("input", np.zeros((2, 16), np.int32))])]}, 400, "inputs must be"),
        ({**base, "tasks": [tensors.encode([("wrong", inputs(2))])]}, 400, "inputs must be"),
        ({**base, "tasks": [tensors.encode([("input", np.zeros((2, 15), np.float32))])]}, 400, "axis 1"),
        ({**base, "pubkey": b64e(Signer.generate().public_raw), "tasks": []}, 401, "does not belong"),
    ]
    for payload, status, words in bad:
        r = net2.post("/v1/jobs", owner, payload)
        assert r.status_code == status and words in r.json()["error"], r.text
    poor = Signer.generate()
    r = net2.job(poor, mlp[0], inputs(2))
    assert r.status_code == 402 and "refused reserve" in r.json()["error"]
    assert poor.id not in net2.store.ledger.accounts or net2.store.ledger.balance(poor.id)["balance"] == 0


def test_artifact_uploads_must_be_signed_by_a_trusted_publisher(net, mlp, tmp_path, keys):
    import shutil

    from wasm_torch.integrity.signing import load_private_key, sign_artifact

    files = artifact_files(mlp[0])
    r = net.client.post("/v1/artifacts", json={"files": {k: v for k, v in files.items() if k != "signature.json"}})
    assert r.status_code == 400 and "signature.json" in r.json()["error"]
    r = net.client.post("/v1/artifacts", json={"files": {k: v for k, v in files.items() if k != "model.wasm"}})
    assert r.status_code == 400 and "exactly" in r.json()["error"]
    r = net.client.post("/v1/artifacts", json={"files": {**files, "extra.bin": b64e(b"x")}})
    assert r.status_code == 400 and "exactly" in r.json()["error"]
    r = net.client.post("/v1/artifacts", json={"files": {**files, "../evil": b64e(b"x")}})
    assert r.status_code == 400 and "plain names" in r.json()["error"]
    tampered = dict(files, **{"weights.bin": b64e(b"\0" * len((mlp[0] / "weights.bin").read_bytes()))})
    r = net.client.post("/v1/artifacts", json={"files": tampered})
    assert r.status_code == 403 and "sha256" in r.json()["error"]
    other = tmp_path / "other"
    shutil.copytree(mlp[0], other)
    (other / "signature.json").unlink()
    sign_artifact(other, [load_private_key(keys.make("stranger")[0])])
    stranger = {n: b64e((other / n).read_bytes()) for n in files}
    r = net.client.post("/v1/artifacts", json={"files": stranger})
    assert r.status_code == 403 and "untrusted" in r.json()["error"]
    for body in (b"{}", b'{"files": []}', b'{"files": {"manifest.json": "!!"}}', b"\xff"):
        assert net.client.post("/v1/artifacts", content=body).status_code == 400
    for path in ("/v1/artifacts/" + "0" * 64 + "/model.wasm", "/v1/artifacts/x/../../etc/passwd", "/v1/jobs/nope",
                 "/v1/evidence/nope", "/web/../../cli.py", "/js/../errors.py", "/web/secret.key"):  # fmt: skip
        assert net.client.get(path).status_code == 404, path
    assert net.upload(mlp[0])  # the genuine one still goes in


def test_operator_routes_need_an_operator_key(net, mlp):
    stranger = Signer.generate()
    r = net.post("/v1/ledger/grant", stranger, {"type": "grant", "account": stranger.id, "amount": 5, "note": ""})
    assert r.status_code == 403
    r = net.post("/v1/params", stranger, {"type": "params", "changes": {"replication": 9}})
    assert r.status_code == 403
    r = net.post("/v1/params", net.signer, {"type": "params", "changes": {"replication": 1}})
    assert r.status_code == 400 and "replication must be >= 2" in r.json()["error"]
    r = net.post("/v1/params", net.signer, {"type": "params", "changes": {"bogus": 1}})
    assert r.status_code == 400 and "unknown network parameters" in r.json()["error"]
    r = net.post("/v1/params", net.signer, {"type": "params", "changes": {"replication": 3, "lease_s": 5}})
    assert r.status_code == 200 and r.json()["params"]["replication"] == 3
    assert net.client.get("/v1/info").json()["params_version"] == 1
    r = net.post("/v1/ledger/grant", net.signer, {"type": "grant", "account": "x", "amount": -5, "note": ""})
    assert r.status_code == 400


def test_gossip_routes_refuse_strangers_and_forged_entries(net):
    stranger = Signer.generate()
    r = net.post("/v1/gossip", stranger, {"type": "gossip", "root": "0" * 64, "summary": {}})
    assert r.status_code == 403
    assert net.client.get("/v1/ledger/root").status_code == 200


def test_staked_admission_and_stake_target(make_net, mlp):
    net = make_net(params={"admission": "staked", "join_stake": 5 * economy.MICRO})
    from wasm_torch.net.wire import b64e as enc

    s = Signer.generate()
    reg = {"type": "register", "pubkey": enc(s.public_raw), "name": "n", "kind": "python", "stake": 0}
    r = net.post("/v1/nodes/register", s, reg)
    assert r.status_code == 402 and "stake" in r.json()["error"]
    r = net.post("/v1/nodes/register", s, {**reg, "stake": 5 * economy.MICRO})
    assert r.status_code == 402  # no credit to bond
    net.grant(s.id, 6 * economy.MICRO)
    for _ in range(2):  # registering again with the same target does not bond twice
        r = net.post("/v1/nodes/register", s, {**reg, "stake": 5 * economy.MICRO})
        assert r.status_code == 200 and r.json()["probation"] is False
    assert net.store.ledger.balance(s.id)["staked"] == 5 * economy.MICRO
    r = net.post("/v1/nodes/register", s, {**reg, "kind": "toaster"})
    assert r.status_code == 400


def test_pages_are_served(net):
    for path, words in (("/", "wasm-torch coordinator"), ("/node", "browser node"), ("/web/node.mjs", "Ed25519"),
                        ("/web/node-worker.mjs", "verifySignature"), ("/js/wasm-torch.mjs", "WasmTorch")):  # fmt: skip
        r = net.client.get(path)
        assert r.status_code == 200 and words in r.text, path
    s = net.client.get("/v1/status").json()
    assert set(s) >= {"jobs", "nodes", "ledger", "rejected", "peers"}
