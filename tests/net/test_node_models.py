"""The Python node's mutual models: it audits a real coordinator's ledger to learn whether it pays
for results it called canonical, and it chooses among ready coordinators by its models of them and
of itself (a lease it would miss is worth little)."""

from __future__ import annotations

from wasm_torch.net.node import Node, NodeOptions


def _node(tmp_path, urls, mlp, **kw) -> Node:
    return Node(NodeOptions(urls, tmp_path / "n.key", [mlp[2]], tmp_path / "w", **kw))


def test_audit_reads_the_ledger(make_net, serve, mlp, tmp_path):
    net = make_net()
    node = _node(tmp_path, [serve(net.coord).url], mlp)
    peer = node.peers[0]
    node.register(peer)
    node._audit(peer)  # the first audit only takes a baseline
    h0 = peer.model.honesty
    with net.store.tx() as tx:
        tx.issue("earn", node.id, 5, "task:t1")
    peer.canonical_since_audit = 1
    node._audit(peer)
    assert peer.model.honesty > h0  # paid for what it said was canonical
    h1 = peer.model.honesty
    peer.canonical_since_audit = 2  # said canonical twice more, paid nothing
    node._audit(peer)
    assert peer.model.honesty < h1
    h2 = peer.model.honesty
    with net.store.tx() as tx:  # and a slash of an honest node counts against the coordinator
        tx.issue("mint", node.id, 50, "grant:t")
        tx.issue("stake", node.id, 50, "join")
    node._audit(peer)
    with net.store.tx() as tx:
        tx.issue("slash", node.id, 25, "task:t2", evidence="ab" * 32)
    node._audit(peer)
    assert peer.model.honesty < h2


def test_choice_follows_the_models(mlp, tmp_path):
    node = _node(tmp_path, ["http://127.0.0.1:9", "http://127.0.0.1:10"], mlp)
    a, b = node.peers
    for _ in range(20):
        a.model.observe_call(False)  # a stopped answering
        b.model.observe_call(True, 30.0)
    assert all(node.choose([a, b]) is b for _ in range(50))
    for _ in range(20):
        a.model.observe_call(True, 30.0)
    for _ in range(10):
        node.me.observe_run(8.0)  # this node needs ~8 s per task ...
    b.lease_s, a.lease_s = 3.0, 30.0  # ... and b's leases are 3 s: its results would be late
    assert sum(node.choose([a, b]) is a for _ in range(50)) >= 45
    rr = _node(tmp_path / "rr", ["http://127.0.0.1:9", "http://127.0.0.1:10"], mlp, choice="round-robin")
    picks = [rr.choose(rr.peers).url for _ in range(4)]
    assert picks.count("http://127.0.0.1:9") == 2
