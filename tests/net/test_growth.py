"""Growth in the live network (net/growth.py, net/cache.py): holdings reports and their hostile
variants, the node graph, plans that follow demand and prune where it died out, the scheduler
steering first replicas (never checkers) to warm nodes, a node's bounded cache and the orders a
hostile coordinator might send it, and real nodes following the plan end to end."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from wasm_torch.net.cache import ArtifactCache, parse_orders
from wasm_torch.net.errors import BadMessage
from wasm_torch.net.growth import MAX_HOLDS, _jitter, node_graph, rank

from .conftest import IN_DIM, inputs


@pytest.fixture(scope="module")
def mlps(tmp_path_factory, keys):
    """Three signed artifacts of one architecture with different weights (three content hashes)."""
    import torch
    from torch.export import Dim

    import wasm_torch
    from wasm_torch.integrity.signing import load_private_key, sign_artifact

    priv, _, _ = keys.make("publisher")
    out = []
    for seed in range(3):
        torch.manual_seed(100 + seed)
        model = torch.nn.Sequential(torch.nn.Linear(IN_DIM, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
        folder = tmp_path_factory.mktemp("grow") / f"mlp{seed}"
        wasm_torch.compile(model, (torch.randn(4, IN_DIM),), folder, dynamic_shapes=({0: Dim("batch", min=1, max=16)},))
        sign_artifact(folder, [load_private_key(priv)])
        out.append((folder, model))
    return out


def _first_plan(net):
    """The growth board once the coordinator's growth thread has made its start-up plan."""
    board = net.coord.scheduler.growth
    t0 = time.monotonic()
    while board.version == 0 and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert board.version >= 1
    return board


def _report(net, signer, holds=(), rtt=None, room=4):
    return net.post("/v1/nodes/holdings", signer, {"type": "holdings", "holds": list(holds), "rtt_ms": rtt or {},
                                                   "room": room})  # fmt: skip


# ---- the holdings route -------------------------------------------------------------------------------------
def test_holdings_route_answers_orders_and_refuses_hostile_reports(net):
    s = net.register("n")
    r = _report(net, s, ["ab" * 32], {net.id: 3.5})
    assert r.status_code == 200 and r.json() == {"plan": 0, "fetch": [], "keep": [], "drop": []}
    bad = [
        (["../../etc"], {}),  # not a sha256
        (["AB" * 32], {}),  # upper case is not our spelling of a hash
        (["ab" * 32, "ab" * 32], {}),  # twice
        ([f"{i:064x}" for i in range(MAX_HOLDS + 1)], {}),  # too many
        ([], {net.id: -1}),
        ([], {net.id: 1e12}),
        ([], {net.id: True}),
        ([], {net.id: "3"}),
        ([], {"x" * 81: 1.0}),
        ([], {f"c{i}": 1.0 for i in range(17)}),
    ]
    for holds, rtt in bad:
        got = _report(net, s, holds, rtt)
        assert got.status_code == 400, (holds[:2], rtt, got.text)
        assert "error" in got.json()
    for room in (0, -1, 10**6):
        assert _report(net, s, room=room).status_code == 400
    body = s.seal({"type": "holdings", "holds": [], "rtt_ms": {}, "room": 4}, net.id)  # NaN is not JSON
    body["payload"] = body["payload"].replace('"rtt_ms":{}', '"rtt_ms":{"c":NaN}')
    assert net.client.post("/v1/nodes/holdings", json=body).status_code in (400, 401)
    extra = net.post("/v1/nodes/holdings", s, {"type": "holdings", "holds": [], "rtt_ms": {}, "room": 4, "more": 1})
    assert extra.status_code == 400
    from wasm_torch.net.wire import Signer

    stranger = Signer.generate()  # never registered
    assert _report(net, stranger).status_code == 404
    env = s.seal({"type": "holdings", "holds": [], "rtt_ms": {}, "room": 4}, net.id)
    assert net.client.post("/v1/nodes/holdings", json=env).status_code == 200
    assert net.client.post("/v1/nodes/holdings", json=env).status_code == 409  # replayed
    forged = dict(env, payload=env["payload"].replace('"room":4', '"room":9'))
    assert net.client.post("/v1/nodes/holdings", json=forged).status_code == 401  # altered after signing
    assert _report(net, s).status_code == 200  # and the coordinator still serves


# ---- the plan -------------------------------------------------------------------------------------------
def test_node_graph_uses_the_landmark_distance():
    rtt = {"a": {"c1": 10.0, "c2": 50.0}, "b": {"c1": 12.0, "c2": 48.0}, "c": {"c1": 80.0, "c2": 5.0},
           "d": {"c9": 1.0}}  # fmt: skip
    g = node_graph(rtt, 1)
    assert g.has_edge("a", "b") and not g.has_edge("a", "c")
    assert g.has_edge("c", "b") or g.has_edge("c", "a")  # c's nearest is still linked
    assert g.degree("d") == 0  # no coordinator in common: never linked


def test_homes_follow_demand_and_drop_where_it_died_out():
    rtt = {f"n{i:03d}": {"c": float(i)} for i in range(60)}  # a chain of 60 nodes
    g = node_graph(rtt, 4)
    demand = {n: _jitter("X", n) for n in rtt}
    for n in ("n000", "n001"):
        demand[n] += 20  # all of X's work ran at one end ...
    for n in ("n030", "n059"):
        demand[n] += 1  # ... while two nodes elsewhere still hold it
    ranking, drop = rank(g, {"X": demand}, {"X": {"n030", "n059"}})[0]["X"]
    assert set(ranking[:3]) <= {f"n{i:03d}" for i in range(6)}  # the best homes are where the work ran
    assert sorted(drop) == ["n030", "n059"] and not {"n030", "n059"} & set(ranking)


def test_artifacts_without_history_spread_over_nodes():
    rtt = {f"n{i}": {"c": 10.0 * i} for i in range(8)}
    g = node_graph(rtt, 2)
    demands = {a: {n: _jitter(a, n) for n in rtt} for a in "ABCDEF"}
    ranked, plans = rank(g, demands, {})
    placed = [tuple(ranked[a][0][:2]) for a in "ABCDEF"]
    assert len({n for h in placed for n in h}) >= 6  # not every artifact on the same two nodes
    assert ranked == rank(g, demands, {})[0]  # reproducible from its inputs
    # continued from its own state under the same demand, the pattern stays where it was
    again, _ = rank(g, demands, {}, start=plans)
    assert [tuple(again[a][0][:2]) for a in "ABCDEF"] == placed


def test_replan_gives_each_hot_artifact_its_homes(make_net, mlps):
    net = make_net(params={"growth_replicas": 2, "replication": 2, "growth_period_s": 3600.0})
    board = _first_plan(net)  # nothing else plans during this test
    owner = net.register("owner")
    net.grant(owner.id, 10**9)
    nodes = [net.register(f"n{i}") for i in range(5)]
    shas = []
    for folder, _ in mlps[:2]:
        r = net.job(owner, folder, inputs(4))
        assert r.status_code == 200, r.text
        shas.append(net.upload(folder))
    for i, s in enumerate(nodes):
        assert _report(net, s, [shas[0]] if i == 4 else [], {net.id: float(i)}).status_code == 200
    with net.store.engine.connect() as conn:
        stats = board.replan(conn, net.store.params)
    assert stats == {"nodes": 5, "artifacts": 2, "ms": stats["ms"]}
    ids = {s.id for s in nodes}
    for sha in shas:
        assert len(board.homes[sha]) == 2 and set(board.homes[sha]) <= ids
    for s in nodes:
        orders = _report(net, s, [shas[0]] if s is nodes[4] else [], {net.id: 1.0}).json()
        assert orders["plan"] == board.version == 2
        mine = {sha for sha in shas if s.id in board.homes[sha]}
        assert set(orders["keep"]) == mine
        fetch = {f["artifact"] for f in orders["fetch"]}
        assert fetch == mine - ({shas[0]} if s is nodes[4] else set())
        assert all(f["variant"] == "simd128" for f in orders["fetch"])
    assert net.coord.status()["growth"]["plan"] == board.version
    for s in nodes:  # room for 2: each node keeps at most one (a slot stays free for unsteered work)
        assert _report(net, s, [], {net.id: 1.0}, room=2).status_code == 200
    with net.store.engine.connect() as conn:
        board.replan(conn, net.store.params)
    kept = [sum(s.id in board.homes[sha] for sha in shas) for s in nodes]
    assert max(kept) == 1 and sum(kept) == 4  # 2 artifacts x 2 homes on 4 different nodes


# ---- the scheduler steers first replicas, never checkers --------------------------------------------------
def test_lease_prefers_warm_artifacts_for_first_replicas_only(make_net, mlps):
    net = make_net(params={"replication": 2, "growth_period_s": 3600.0})
    owner = net.register("owner")
    net.grant(owner.id, 10**9)
    (fx, _), (fy, _) = mlps[0], mlps[1]
    assert net.job(owner, fx, inputs(20)).status_code == 200  # the older job: first in line
    y = net.job(owner, fy, inputs(1))
    assert y.status_code == 200
    sha_x, sha_y = net.upload(fx), net.upload(fy)
    warm, cold, other = net.register("warm"), net.register("cold"), net.register("other")
    assert _report(net, warm, [sha_y]).status_code == 200
    assert net.lease(cold)["artifact"] == sha_x  # nothing warm: the oldest job
    got = net.lease(warm)
    assert got["artifact"] == sha_y  # holds Y: Y's first replica although X is older
    # Y's only task now needs a checker; a node holding Y is not steered to it (X's 20 fill the window)
    assert _report(net, other, [sha_y]).status_code == 200
    assert net.lease(other)["artifact"] == sha_x
    net.store.set_params({"growth_period_s": 0.0})  # growth off: no steering at all
    assert _report(net, cold, [sha_y]).status_code == 200
    assert net.lease(cold)["artifact"] == sha_x


# ---- the node's cache and hostile orders -----------------------------------------------------------------
def test_cache_is_bounded_keeps_pinned_and_deletes_only_its_own_folders(tmp_path):
    root = tmp_path / "artifacts"
    cache = ArtifactCache(root, 2)
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    for sha in (a, b, c):
        (root / sha).mkdir(parents=True)
        (root / sha / "manifest.json").write_text("{}")
    (tmp_path / "precious").write_text("user data")
    cache.pins["coord"] = {a}
    cache.held.clear()
    cache.add(a, "simd128", object(), None)
    cache.add(b, "simd128", object(), None)
    cache.add(c, "simd128", object(), None)  # over capacity: b goes (a is pinned, though older)
    assert list(cache.held) == [a, c] and not (root / b).exists() and (root / a).exists()
    assert cache.get(a, "simd128") is not None and list(cache.held) == [c, a]
    cache.drop({a, c})  # a is still pinned by the coordinator that ordered it
    assert list(cache.held) == [a] and cache.counts["dropped"] == 1
    with pytest.raises(Exception, match="64 lowercase hex"):
        cache.evict("../precious")
    assert (tmp_path / "precious").read_text() == "user data"
    again = ArtifactCache(root, 2)  # a restarted node finds what it held
    assert list(again.held) == [a]
    with pytest.raises(BadMessage):
        ArtifactCache(root, 0)


@pytest.mark.parametrize("answer", [
    [], "x", {"fetch": [{"artifact": "../../etc", "variant": "simd128"}]},
    {"drop": ["../precious"]}, {"keep": ["ab" * 32, 5]}, {"fetch": "ab"}, {"drop": ["ab" * 32] * 257},
    {"fetch": [{"artifact": "ab" * 32}]}, {"fetch": [["ab" * 32, "simd128"]]},
])  # fmt: skip
def test_hostile_orders_are_refused_whole(answer):
    with pytest.raises(BadMessage):
        parse_orders(answer)


def test_orders_parse():
    fetch, keep, drop = parse_orders({"plan": 3, "fetch": [{"artifact": "ab" * 32, "variant": "simd128"}],
                                      "keep": ["ab" * 32], "drop": ["cd" * 32]})  # fmt: skip
    assert fetch == [("ab" * 32, "simd128")] and keep == {"ab" * 32} and drop == {"cd" * 32}


# ---- end to end: real nodes follow the plan ---------------------------------------------------------------
@pytest.mark.slow
def test_nodes_follow_growth_orders_and_results_stay_right(make_net, serve, mlp, mlps, tmp_path):
    """Four real nodes with room for one artifact each run three artifacts' jobs while the
    coordinator replans every second: every node reports, no cache ever holds more than its
    capacity, every output matches torch; then a new artifact's home fetches it ahead of its tasks."""
    import torch

    from wasm_torch.net import tensors
    from wasm_torch.net.node import Node, NodeOptions

    net = make_net(params={"growth_period_s": 1.0, "heartbeat_s": 1.0, "poll_s": 0.1, "growth_replicas": 1})
    url = serve(net.coord).url
    owner = net.register("owner")
    net.grant(owner.id, 10**9)
    jobs = []
    for i, (folder, model) in enumerate(mlps):
        x = inputs(8, seed=i)
        r = net.job(owner, folder, x)
        assert r.status_code == 200, r.text
        jobs.append((r.json()["job"], model, x))
    nodes = [Node(NodeOptions([url], tmp_path / f"k{i}.key", [mlp[2]], tmp_path / f"w{i}", name=f"g{i}",
                              cache_artifacts=1, idle_exit_s=4.0)) for i in range(4)]  # fmt: skip
    most = [0] * len(nodes)

    def watch() -> None:
        while any(t.is_alive() for t in threads):
            for i, n in enumerate(nodes):
                most[i] = max(most[i], len(n.cache.held))
            time.sleep(0.01)

    threads = [threading.Thread(target=n.run) for n in nodes]
    for t in threads:
        t.start()
    w = threading.Thread(target=watch)
    w.start()
    for t in threads:
        t.join(timeout=240)
    w.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    for job_id, model, x in jobs:
        status = net.client.get(f"/v1/jobs/{job_id}").json()
        assert status["status"] == "done" and status["done"] == 8, status
        outs = net.client.get(f"/v1/jobs/{job_id}/outputs").json()["tasks"]
        got = np.concatenate([tensors.decode(o["outputs"], "o", 1 << 24)[0][1] for o in outs])
        with torch.no_grad():
            np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    growth = net.coord.status()["growth"]
    assert growth["plan"] >= 2 and growth["nodes"] == 4
    assert max(most) <= 1  # the cache bound held throughout
    # a new artifact becomes hot: after the next plan its home fetches it ahead of any task, the others do not
    fresh = net.upload(mlp[0])
    assert net.job(owner, mlp[0], inputs(2)).status_code == 200
    net.store.set_params({"growth_period_s": 3600.0, "heartbeat_s": 60.0})  # only this test plans from here on
    for n in nodes:
        n.holdings(n.peers[0])  # fresh reports
    with net.store.engine.connect() as conn:
        net.coord.scheduler.growth.replan(conn, net.store.params)
    home = net.coord.scheduler.growth.homes[fresh]
    assert len(home) == 1
    for n in nodes:
        n.holdings(n.peers[0])
        assert (fresh in n.cache.held) == (n.id in home) and len(n.cache.held) <= 1
    assert sum(n.cache.counts["prefetched"] for n in nodes) >= 1


def test_node_follows_orders_and_survives_hostile_ones(make_net, serve, mlp, tmp_path):
    """Orders reach a real node through a real coordinator: a fetch for a build that does not exist
    or is not deterministic fails without marking the artifact refused; orders naming paths are
    refused whole (nothing outside the cache is touched); a good fetch, keep and drop are followed."""
    from wasm_torch.net.growth import Orders
    from wasm_torch.net.node import Node, NodeOptions

    net = make_net(params={"growth_period_s": 3600.0})
    url = serve(net.coord).url
    board = _first_plan(net)  # and no other plan: the orders below are the test's
    sha = net.upload(mlp[0])
    node = Node(NodeOptions([url], tmp_path / "k.key", [mlp[2]], tmp_path / "w", cache_artifacts=2))
    peer = node.peers[0]
    node.register(peer)
    (tmp_path / "precious").write_text("user data")
    for bad in ("no-such-build", "relaxed"):
        board.orders[node.id] = Orders(fetch=[(sha, bad)])
        node.holdings(peer)
        assert sha not in node.cache.held and sha not in node.refused_artifacts
    board.orders[node.id] = Orders(fetch=[(sha, "simd128")], drop={"../../precious"})
    node.holdings(peer)  # the whole answer is refused: no fetch either
    assert sha not in node.cache.held and (tmp_path / "precious").exists()
    board.orders[node.id] = Orders(fetch=[(sha, "simd128")], keep={sha})
    node.holdings(peer)
    assert sha in node.cache.held and node.cache.counts["prefetched"] == 1
    assert node.module(peer, sha, "simd128")[0] is not None and node.cache.counts["loads"] == 1  # warm
    board.orders[node.id] = Orders(drop={sha})
    node.holdings(peer)
    assert sha not in node.cache.held and not (tmp_path / "w" / "artifacts" / sha).exists()
    assert (tmp_path / "precious").read_text() == "user data"


def test_board_memory_is_bounded_and_off_stores_nothing():
    from wasm_torch.net.growth import MAX_REPORTS, GrowthBoard

    board = GrowthBoard()
    board.report("n", frozenset({"ab" * 32}), {}, 4, on=False)
    assert board.reports == {}  # growth off: nothing kept
    for i in range(MAX_REPORTS + 10):
        board.report(f"n{i}", frozenset(), {}, 4)
    assert len(board.reports) == MAX_REPORTS and "n9" not in board.reports and "n10" in board.reports
    board.report("n10", frozenset(), {}, 4)  # heard from again: now the most recent ...
    board.report("new", frozenset(), {}, 4)  # ... so a newcomer pushes out n11, not n10
    assert len(board.reports) == MAX_REPORTS and "n10" in board.reports and "n11" not in board.reports
