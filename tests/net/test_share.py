"""Private pattern sharing: sealed boxes (ML-KEM-768 + AES-256-GCM, signed inside) attacked byte by
byte, the coordinator's mailbox routes attacked, and two nodes with real pattern memories sharing a
differentially private summary through a real coordinator over HTTP — the receiver's warm start
picks up the sender's best configuration; the sender's accountant never releases a record twice,
across restarts."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest

from wasm_torch.learn.features import DIM, GROUPS, Pattern
from wasm_torch.learn.memory import PatternMemory
from wasm_torch.net import mailbox
from wasm_torch.net.client import Http
from wasm_torch.net.errors import BadMessage, BadSignature
from wasm_torch.net.share import (
    ShareOptions,
    Sharing,
    check_listed_key,
    key_message,
    load_or_create_kem,
    open_box,
    seal,
)
from wasm_torch.net.wire import Signer, b64e

ENTRY = {"cell": 0, "config": '{"k":1}', "sum": 1.2, "count": 3.0, "epsilon": 0.1}


@pytest.fixture
def pair(tmp_path):
    a, b = Signer.generate(), Signer.generate()
    kb = load_or_create_kem(tmp_path / "b.kem")
    return a, b, kb, kb.public_key().public_bytes_raw()


def test_box_round_trip_and_tampering(pair):
    a, b, kb, pub = pair
    box = seal(a, b.id, pub, [ENTRY])
    assert open_box(b, kb, a.id, a.public_raw, box) == [ENTRY]
    assert b'"config"' not in box and b"1.2" not in box  # the relay sees ciphertext only
    for i in (5, 1100, len(box) - 3):  # KEM ciphertext, AES-GCM body, tag
        bad = bytearray(box)
        bad[i] ^= 1
        with pytest.raises(BadMessage, match="does not decrypt"):
            open_box(b, kb, a.id, a.public_raw, bytes(bad))
    c = Signer.generate()
    with pytest.raises(BadMessage):  # claimed from someone else: the AEAD binds both ids
        open_box(b, kb, c.id, c.public_raw, box)
    with pytest.raises(BadMessage):  # not for this recipient
        open_box(c, kb, a.id, a.public_raw, box)
    with pytest.raises(BadMessage, match="between"):
        open_box(b, kb, a.id, a.public_raw, box[:500])
    forged = seal(c, b.id, pub, [ENTRY])  # sealed by c, presented as a's: id binding fails first
    with pytest.raises(BadMessage):
        open_box(b, kb, a.id, a.public_raw, forged)


def test_box_signature_and_entries_are_checked(pair, monkeypatch):
    a, b, kb, pub = pair
    c = Signer.generate()
    impostor = Signer(c.key)
    impostor.id = a.id  # signs as a with c's key
    with pytest.raises(BadSignature):
        open_box(b, kb, a.id, a.public_raw, seal(impostor, b.id, pub, [ENTRY]))
    for bad in ({**ENTRY, "sum": 1e12}, {**ENTRY, "count": -1e10}, {**ENTRY, "cell": -1}, {**ENTRY, "x": 1},
                {**ENTRY, "config": "not json"}, {**ENTRY, "epsilon": 0.0}, {**ENTRY, "sum": "1"}):  # fmt: skip
        with pytest.raises((BadMessage, ValueError)):
            open_box(b, kb, a.id, a.public_raw, seal(a, b.id, pub, [bad]))


def test_listed_keys_must_be_signed_by_their_node(pair):
    a, _b, _kb, pub = pair
    msg = key_message(a, pub)
    item = {"node": a.id, "pubkey": b64e(a.public_raw), "kem": msg["kem"], "sig": msg["sig"]}
    assert check_listed_key(item)[0] == a.id
    other = Signer.generate()
    with pytest.raises(BadSignature):
        check_listed_key({**item, "sig": key_message(other, pub)["sig"]})
    with pytest.raises(BadSignature):
        check_listed_key({**item, "pubkey": b64e(other.public_raw)})
    with pytest.raises(BadMessage):
        check_listed_key({**item, "kem": b64e(b"x" * 100)})


def _publish(net, s: Signer, tmp, name: str) -> bytes:
    pub = load_or_create_kem(tmp / f"{name}.kem").public_key().public_bytes_raw()
    r = net.post("/v1/share/key", s, key_message(s, pub))
    assert r.status_code == 200, r.text
    return pub


def test_mailbox_routes_refuse_hostile_input(make_net, tmp_path, monkeypatch):
    net = make_net()
    a, b = net.register("a"), net.register("b")
    pa, pb = _publish(net, a, tmp_path, "a"), _publish(net, b, tmp_path, "b")
    msg = key_message(a, pa)
    assert net.post("/v1/share/key", a, {**msg, "sig": key_message(b, pa)["sig"]}).status_code == 401
    assert net.post("/v1/share/key", a, {**msg, "kem": b64e(b"x" * 50)}).status_code == 400
    stranger = Signer.generate()
    assert net.post("/v1/share/key", stranger, key_message(stranger, pa)).status_code == 404  # unregistered
    keys = net.client.get("/v1/share/keys").json()["keys"]
    assert {k["node"] for k in keys} == {a.id, b.id} and all(check_listed_key(k) for k in keys)

    def send(src, to, box):
        return net.post("/v1/share/send", src, {"type": "share-send", "recipient": to, "box": b64e(box)})

    box = seal(a, b.id, pb, [ENTRY])
    assert send(a, stranger.id, box).status_code == 404
    r = send(a, a.id, box)
    assert r.status_code == 400, r.text
    assert send(a, b.id, b"x" * (300 * 1024)).status_code in (400, 413)
    assert send(a, b.id, box).status_code == 200
    r = send(a, b.id, seal(a, b.id, pb, [ENTRY]))
    assert r.status_code == 429 and "every 60 s" in r.json()["error"]
    env = a.seal({"type": "share-send", "recipient": b.id, "box": "!!"}, net.id)
    assert net.client.post("/v1/share/send", json=env).status_code == 400
    # inbox: only one's own boxes; deleted when acknowledged
    assert net.post("/v1/share/inbox", a, {"type": "share-inbox", "ack": []}).json()["boxes"] == []
    got = net.post("/v1/share/inbox", b, {"type": "share-inbox", "ack": []}).json()["boxes"]
    assert len(got) == 1 and got[0]["from"] == a.id
    again = net.post("/v1/share/inbox", b, {"type": "share-inbox", "ack": []}).json()["boxes"]
    assert again == got  # not acknowledged: still there
    assert net.post("/v1/share/inbox", b, {"type": "share-inbox", "ack": ["zz"]}).status_code == 400
    assert net.post("/v1/share/inbox", b, {"type": "share-inbox", "ack": [got[0]["id"]]}).json()["boxes"] == []
    monkeypatch.setattr(mailbox, "INBOX_MAX", 1)
    c = net.register("c")
    assert send(c, b.id, seal(c, b.id, pb, [ENTRY])).status_code == 200
    r = send(a, b.id, seal(a, b.id, pb, [ENTRY]))
    assert r.status_code == 429
    assert net.client.get("/v1/info").status_code == 200


# ---- end to end with real pattern memories -----------------------------------------------------------
CANDIDATES = [{"opt": k} for k in range(6)]


def _pattern(rng, cell: int, key: str) -> Pattern:
    gates = np.full(len(GROUPS), 0.02, np.float32)
    gates[cell] = 1.0
    gates /= gates.sum()
    vec = rng.random(DIM).astype(np.float32)
    return Pattern(vec, gates, key)


def _fill(mem: PatternMemory, rng, cell: int, best: int, models: int, tag: str) -> None:
    for m in range(models):
        p = _pattern(rng, cell, f"{tag}{m:04d}")
        for c in CANDIDATES:
            gain = 1.8 if c["opt"] == best else 0.9
            mem.post_query(p, c, 1.0 / gain, 1.0)


def test_two_nodes_share_privately_through_a_coordinator(make_net, serve, tmp_path):
    net = make_net()
    url = serve(net.coord).url
    sa_, sb = net.register("a"), net.register("b")
    rng = np.random.default_rng(0)
    mem_a, mem_b = PatternMemory(tmp_path / "mem-a"), PatternMemory(tmp_path / "mem-b")
    _fill(mem_a, rng, cell=2, best=4, models=40, tag="a")  # a knows cell 2 well: option 4 is best
    _fill(mem_b, rng, cell=5, best=1, models=3, tag="b")
    # a large epsilon so that this test checks the plumbing, not the noise (the benchmark measures that)
    oa = ShareOptions(mem_a, CANDIDATES, interval_s=60, epsilon=5.0, budget=5.0, seed=1)
    ob = ShareOptions(mem_b, CANDIDATES, interval_s=60, epsilon=5.0, budget=5.0, seed=2)
    a, b = Sharing(oa, sa_, tmp_path / "share-a"), Sharing(ob, sb, tmp_path / "share-b")
    http = Http(url, attempts=2)
    b.sync(http, net.id)  # b publishes its key first
    got = a.sync(http, net.id)
    assert got["sent"] == 1 and got["entries"] >= 1 and a.stats["released"] == 40 * 6
    b.sync(http, net.id)
    cell2 = [e for e in b.received["entries"] if e["cell"] == 2]
    assert cell2 and all(e["from"] == sa_.id for e in cell2)
    top = max(cell2, key=lambda e: e["sum"] / max(e["count"], 1))
    assert json.loads(top["config"]) == {"opt": 4}
    new = _pattern(rng, 2, "target")  # a model b has never tuned, in the cell a knows
    assert b.prime(mem_b, new) == 3 * min(8, len({e["config"] for e in cell2}))
    assert mem_b.pre_query(new, k=1)[0].config == {"opt": 4}
    # the coordinator held only ciphertext
    with net.store.engine.connect() as conn:
        import sqlalchemy as sa

        from wasm_torch.net import db

        rows = conn.execute(sa.select(db.share_boxes.c.recipient, db.share_boxes.c.box)).all()
    assert [r.recipient for r in rows] == [sa_.id]  # b's box for a waits; a's box for b was acknowledged
    assert b"opt" not in base64.b64decode(rows[0].box)  # the coordinator holds ciphertext only

    # the accountant: a's records are spent; a second sync releases nothing of them, even after a restart
    a.next_sync = 0
    assert a.sync(http, net.id)["entries"] == 0 and a.stats["released"] == 40 * 6
    a2 = Sharing(oa, sa_, tmp_path / "share-a")
    assert a2.release() == [] and all(math.isclose(v, 5.0) for v in a2.accountant.spent.values())
    _fill(mem_a, rng, cell=3, best=0, models=2, tag="n")  # new records can still be shared
    a2.release()
    assert a2.stats["released"] == 2 * 6  # exactly the new records


def test_share_options_and_damaged_state(tmp_path):
    mem = PatternMemory(tmp_path / "m")
    for bad in (30, 7200, float("nan")):
        with pytest.raises(BadMessage, match="between 60 s and 3600 s"):
            ShareOptions(mem, CANDIDATES, interval_s=bad)
    with pytest.raises(BadMessage, match="epsilon"):
        ShareOptions(mem, CANDIDATES, epsilon=0)
    with pytest.raises(BadMessage):
        ShareOptions(mem, [], interval_s=60)
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "privacy.json").write_text('{"budget": 0.1, "spent": {"r": -1}}')
    with pytest.raises(BadMessage, match=r"privacy\.json"):
        Sharing(ShareOptions(mem, CANDIDATES, interval_s=60), Signer.generate(), folder)
    assert (folder / "privacy.json").read_text().startswith('{"budget"')  # left as it was
    (folder / "privacy.json").unlink()
    (folder / "share.kem").write_bytes(b"short")
    with pytest.raises(BadMessage, match="ML-KEM"):
        Sharing(ShareOptions(mem, CANDIDATES, interval_s=60), Signer.generate(), folder)
