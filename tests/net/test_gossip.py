"""Two coordinators — one on SQLite, one on a real PostgreSQL — exchange ledger state by
anti-entropy over HTTP: they converge to the same Merkle root and balances, diverge during a
network partition (a TCP proxy that is cut), converge again when it heals, and refuse forged
or foreign entries. The PostgreSQL coordinator reloads its ledger from the database on restart."""

from __future__ import annotations

import time

import pytest

from wasm_torch.net import economy
from wasm_torch.net.client import Http, Refused
from wasm_torch.net.errors import Unreachable
from wasm_torch.net.gossip import Gossip
from wasm_torch.net.ledger import sign_entry
from wasm_torch.net.store import Store
from wasm_torch.net.wire import Signer

from .conftest import Proxy, inputs


@pytest.fixture
def pair(make_net, serve, pg_database):
    sa_, sb = Signer.generate(), Signer.generate()
    a = make_net(signer=sa_, peer_keys={sb.id: sb.public_raw})
    b = make_net(signer=sb, peer_keys={sa_.id: sa_.public_raw}, db_url=pg_database)
    pa, pb = serve(a.coord), serve(b.coord)
    to_b, to_a = Proxy(pb.port), Proxy(pa.port)
    a.gossip = Gossip(a.store, sa_, [to_b.url])
    b.gossip = Gossip(b.store, sb, [to_a.url])
    yield a, b, to_b, to_a
    to_b.close()
    to_a.close()


def _activity(net, mlp, k: int) -> None:
    """Some real ledger traffic: grants, a job (reserve + storage spend), two nodes settling tasks."""
    owner = Signer.generate()
    net.grant(owner.id, (5 + k) * economy.MICRO)
    assert net.job(owner, mlp[0], inputs(2, seed=k)).status_code == 200
    n1, n2 = net.register(f"x{k}"), net.register(f"y{k}")
    for _ in range(2):
        for n in (n1, n2):
            t = net.lease(n)
            if t:
                assert net.post("/v1/tasks/result", n, net.result(mlp[0], t)).status_code == 200


def _sync(a, b) -> None:
    for _ in range(5):
        moved = a.gossip.round(a.gossip.peers[0]) + b.gossip.round(b.gossip.peers[0])
        if not moved and a.store.ledger.root() == b.store.ledger.root():
            return
    raise AssertionError("did not converge")


def _same(a, b) -> None:
    la, lb = a.store.ledger, b.store.ledger
    assert la.root() == lb.root() and len(la) == len(lb)
    for acct in set(la.accounts) | set(lb.accounts):
        assert la.balance(acct) == lb.balance(acct)


def test_converge_partition_heal(pair, mlp):
    a, b, to_b, to_a = pair
    _activity(a, mlp, 1)
    _activity(b, mlp, 2)
    assert a.store.ledger.root() != b.store.ledger.root()
    _sync(a, b)
    _same(a, b)
    assert a.gossip.round(a.gossip.peers[0]) == 0  # equal roots: nothing moves
    to_b.cut()
    to_a.cut()
    _activity(a, mlp, 3)
    _activity(b, mlp, 4)
    with pytest.raises(Unreachable):
        a.gossip.round(a.gossip.peers[0])
    assert a.store.ledger.root() != b.store.ledger.root()
    to_b.heal()
    to_a.heal()
    _sync(a, b)
    _same(a, b)
    assert set(a.store.ledger.entries) == {a.id, b.id}
    stats = a.gossip.peer_stats()[a.gossip.peers[0]]
    assert stats["rounds"] >= 3 and stats["failures"] >= 1 and stats["coordinator"] == b.id


def test_background_gossip_converges(pair, mlp):
    a, b, _, _ = pair
    a.store.set_params({"gossip_s": 0.2})
    b.store.set_params({"gossip_s": 0.2})
    a.gossip.start()
    b.gossip.start()
    _activity(a, mlp, 5)
    _activity(b, mlp, 6)
    t0 = time.monotonic()
    while a.store.ledger.root() != b.store.ledger.root() or len(a.store.ledger) != len(b.store.ledger):
        assert time.monotonic() - t0 < 30
        time.sleep(0.1)
    a.gossip.stop()
    b.gossip.stop()
    _same(a, b)


def test_postgres_coordinator_reloads_its_ledger(pair, mlp, pg_database):
    _, b, _, _ = pair
    _activity(b, mlp, 7)
    root, n = b.store.ledger.root(), len(b.store.ledger)
    again = Store(pg_database, b.signer, {})
    assert again.ledger.root() == root and len(again.ledger) == n
    again.engine.dispose()
    with pytest.raises(Exception, match="belongs to coordinator"):
        Store(pg_database, Signer.generate())


def test_forged_foreign_and_malformed_gossip(pair, mlp):
    a, b, to_b, _ = pair
    _activity(a, mlp, 8)
    http = Http(to_b.url, attempts=1)
    mint = sign_entry(a.signer, a.store.ledger.next_seq(a.id), "mint", "thief", 10**12, "", 0)
    forged = {**mint.to_json(), "amount": 10**15}
    for entries, words in (
        ([forged], "forged"),
        ([sign_entry(Signer.generate(), 1, "mint", "thief", 5, "", 0).to_json()], "unknown issuer"),
        ([{**mint.to_json(), "kind": "steal"}], "kind"),
        ([{"seq": 1}], "missing fields"),
        (["x"], "object"),
    ):
        with pytest.raises(Refused) as e:
            http.post("/v1/gossip/push", a.signer.seal({"type": "push", "entries": entries}, b.id))
        assert e.value.status == 400 and words in e.value.message, e.value.message
    # an entry in b's own name that b never issued is refused
    fake_b = sign_entry(b.signer, 10_000, "mint", "thief", 5, "", 0)
    with pytest.raises(Refused) as e:
        http.post("/v1/gossip/push", a.signer.seal({"type": "push", "entries": [fake_b.to_json()]}, b.id))
    assert e.value.status == 400 and "never issued" in e.value.message
    for summary in ({"x": 1}, {"x": {"upto": -1, "extra": [], "n": 0, "root": "0" * 64}}, {"x": {"upto": 0}}):
        with pytest.raises(Refused) as e:
            http.post("/v1/gossip", a.signer.seal({"type": "gossip", "root": "0" * 64, "summary": summary}, b.id))
        assert e.value.status == 400
    assert "thief" not in b.store.ledger.accounts
    _sync(a, b)  # still works after all that
    _same(a, b)
