"""Governance on real coordinators: signed proposals and votes through the HTTP routes, the tally at
the proposal's stake snapshot (softmax over stakes), and execution exactly once — alone, with two
coordinators over real HTTP gossip, and after a restart. Hostile inputs: forged, double, late votes,
non-governable or invalid changes, proposers without stake, forged documents relayed by a peer."""

from __future__ import annotations

import time

import pytest

from wasm_torch.net import economy
from wasm_torch.net.gossip import Gossip
from wasm_torch.net.governance import doc_hash, proposal_doc, sign_doc, vote_doc
from wasm_torch.net.ledger import sign_entry
from wasm_torch.net.wire import Signer, now_ms

MICRO = economy.MICRO
FAST = {"vote_period_s": 1.5, "vote_settle_s": 0.2, "join_stake": 10 * MICRO}


def member(net, credits: int, name: str = "m") -> Signer:
    s = Signer.generate()
    net.grant(s.id, credits * MICRO)
    net.register(name, stake=credits * MICRO, signer=s)
    return s


def propose(net, s: Signer, changes: dict, title: str = "t"):
    return net.post("/v1/gov/propose", s, {"type": "gov-propose", "doc": proposal_doc(s, changes, title)})


def vote(net, s: Signer, pid: str, choice: str, doc: dict | None = None):
    return net.post("/v1/gov/vote", s, {"type": "gov-vote", "doc": doc or vote_doc(s, pid, choice)})


def wait_decided(nets, pid: str, timeout: float = 20.0, between=None) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if between:
            between()
        for n in nets:
            n.coord.governance.tick()
        if all(pid in n.coord.governance.executed for n in nets):
            return
        time.sleep(0.1)
    raise AssertionError(f"not decided: {[n.coord.governance.summary(pid) for n in nets]}")


def test_accepted_proposal_changes_the_parameters_once(make_net):
    net = make_net(params=FAST)
    a, b, c = member(net, 30, "a"), member(net, 20, "b"), member(net, 10, "c")
    r = propose(net, a, {"replication": 3, "price_floor": 1500}, "more checking")
    assert r.status_code == 200, r.text
    pid = r.json()["proposal"]
    for s, ch in ((a, "yes"), (b, "yes"), (c, "no")):
        assert vote(net, s, pid, ch).status_code == 200
    version = net.store.params_version
    time.sleep(1.8)
    wait_decided([net], pid)
    assert net.store.params.replication == 3 and net.store.params.price_floor == 1500
    assert net.store.params_version == version + 1
    s = net.client.get(f"/v1/gov/proposals/{pid}").json()
    assert s["executed"] == 1 and s["tally"]["accepted"] and s["tally"]["voters"] == 3
    for _ in range(3):  # ticks, replays of the same spikes: nothing more happens
        net.coord.governance.tick()
        net.coord.agreements.receive(net.id, [])
    assert net.store.params_version == version + 1
    decides = [e for e in net.store.ledger.iter_entries() if e.kind == "gov" and e.ref.startswith(f"decide:{pid}")]
    assert len(decides) == 1 and decides[0].ref.endswith(":1")


def test_rejected_below_quorum_and_majority(make_net):
    net = make_net(params={**FAST, "vote_quorum": 0.9})
    a, _b = member(net, 20, "a"), member(net, 20, "b")
    pid = propose(net, a, {"slash_rate": 0.25}).json()["proposal"]
    assert vote(net, a, pid, "yes").status_code == 200  # half the weight: below the 0.9 quorum
    time.sleep(1.8)
    wait_decided([net], pid)
    assert net.store.params.slash_rate == 0.5
    s = net.coord.governance.summary(pid)
    assert s["executed"] == 0 and "quorum" in s["tally"]["reason"]


def test_softmax_weights_follow_the_snapshot_not_later_stake(make_net):
    """Stake moved during a vote: stake bonded after admission weighs nothing, a slash after it
    changes nothing; the big staker's yes wins under softmax (temperature 50 credits)."""
    net = make_net(params=FAST)
    big, small = member(net, 200, "big"), member(net, 10, "small")
    pid = propose(net, big, {"admission": "staked"}).json()["proposal"]
    late = member(net, 500, "late")  # bonded after the snapshot
    r = vote(net, late, pid, "no")
    assert r.status_code == 403 and "snapshot" in r.json()["error"]
    assert vote(net, small, pid, "no").status_code == 200
    assert vote(net, big, pid, "yes").status_code == 200
    with net.store.tx() as tx:  # the big staker loses half its stake during the vote
        tx.issue("slash", big.id, 100 * MICRO, "test", evidence="ab" * 32)
    t = net.coord.governance.summary(pid)["tally"]
    assert t["electorate"] == 2 and t["voters"] == 2
    import math

    w_big = 1 / (1 + math.exp((10 - 200) / 50))
    assert t["yes"] == pytest.approx(w_big, rel=1e-9) and t["accepted"]


def test_hostile_governance_messages(make_net):
    net = make_net(params=FAST)
    a, b = member(net, 20, "a"), member(net, 20, "b")
    poor = Signer.generate()
    net.register("poor", signer=poor)
    assert propose(net, poor, {"replication": 3}).status_code == 403  # no stake: may not propose
    assert propose(net, a, {"vote_quorum": 0.01}).status_code == 400  # voting rules are not governable
    assert propose(net, a, {"heartbeat_s": 1.0}).status_code == 400
    r = propose(net, a, {"replication": 1})  # invalid value: named
    assert r.status_code == 400 and "replication" in r.json()["error"]
    assert propose(net, a, {}).status_code == 400
    forged = proposal_doc(a, {"replication": 3})
    forged["changes"] = {"replication": 4}  # altered after signing
    assert net.post("/v1/gov/propose", a, {"type": "gov-propose", "doc": forged}).status_code == 401
    other = proposal_doc(b, {"replication": 3})  # b's document sent in a's envelope
    assert net.post("/v1/gov/propose", a, {"type": "gov-propose", "doc": other}).status_code == 401
    doc = proposal_doc(a, {"replication": 3})
    pid = net.post("/v1/gov/propose", a, {"type": "gov-propose", "doc": doc}).json()["proposal"]
    assert net.post("/v1/gov/propose", a, {"type": "gov-propose", "doc": doc}).status_code == 409  # replayed
    # votes
    assert vote(net, a, "ab" * 32, "yes").status_code == 404
    bad = vote_doc(a, pid, "yes")
    bad["choice"] = "no"  # forged: altered after signing
    assert vote(net, a, pid, "", doc=bad).status_code == 401
    assert vote(net, a, pid, "", doc=vote_doc(b, pid, "yes")).status_code == 401  # someone else's vote
    assert vote(net, a, pid, "", doc={**vote_doc(a, pid, "yes"), "choice": "maybe"}).status_code in (400, 401)
    assert vote(net, a, pid, "yes").status_code == 200
    r = vote(net, a, pid, "no")  # double vote, other choice
    assert r.status_code == 409 and "already voted" in r.json()["error"]
    assert vote(net, a, pid, "yes").status_code == 409  # double vote, same choice
    huge = {**proposal_doc(a, {"replication": 3}), "title": "x" * 20_000}
    assert net.post("/v1/gov/propose", a, {"type": "gov-propose", "doc": huge}).status_code == 400
    time.sleep(1.6)
    r = vote(net, b, pid, "yes")  # after the deadline
    assert r.status_code == 410 and "too late" in r.json()["error"]
    assert net.client.get("/v1/gov/proposals/" + "cd" * 32).status_code == 404
    assert net.client.get("/v1/gov/doc/" + "cd" * 32).status_code == 404
    assert net.client.get("/v1/info").status_code == 200  # still serving


def test_forged_vote_relayed_by_a_peer_is_not_counted(make_net):
    """A peer coordinator's ledger entry claims a vote whose document is forged: the entry is a valid
    ledger entry (signed by the peer), the vote inside it is not — the tally ignores it."""
    peer = Signer.generate()
    net = make_net(params=FAST, peer_keys={peer.id: peer.public_raw})
    a, b = member(net, 20, "a"), member(net, 20, "b")
    pid = propose(net, a, {"replication": 3}).json()["proposal"]
    assert vote(net, a, pid, "no").status_code == 200
    fake = {**vote_doc(b, pid, "yes"), "sig": vote_doc(a, pid, "yes")["sig"]}  # b's vote, a's signature
    h = doc_hash(fake)
    e = sign_entry(peer, 1, "gov", b.id, 1, f"vote:{pid}", now_ms(), h)
    assert net.store.merge_entries([e]) == 1
    assert not net.coord.governance.accept_doc(h, fake)  # a forged document is never stored
    net.coord.governance.docs[h] = fake  # even if it were held, it is not counted
    t = net.coord.governance.summary(pid)["tally"]
    assert t["voters"] == 1 and t["yes"] == 0


def test_two_coordinators_execute_exactly_once_over_http(make_net, serve):
    sa_, sb = Signer.generate(), Signer.generate()
    a = make_net(signer=sa_, peer_keys={sb.id: sb.public_raw}, params=FAST)
    b = make_net(signer=sb, peer_keys={sa_.id: sa_.public_raw}, params=FAST)
    pa, pb = serve(a.coord), serve(b.coord)
    a.gossip = Gossip(a.store, sa_, [pb.url])
    b.gossip = Gossip(b.store, sb, [pa.url])
    for g, c in ((a.gossip, a.coord), (b.gossip, b.coord)):
        g.hooks = [c._exchange_spikes, c._fetch_docs]

    def rounds() -> None:
        for g in (a.gossip, b.gossip):
            g.round(g.peers[0])
            g.run_hooks(g.peers[0])

    m1, m2 = member(a, 30, "m1"), member(b, 30, "m2")  # stake bonded at different coordinators
    rounds()
    pid = propose(a, m1, {"replication": 3}).json()["proposal"]
    rounds()  # b learns the proposal (entry + admission document) by gossip
    assert pid in b.coord.governance.docs
    assert vote(b, m2, pid, "yes").status_code == 200  # voted at b
    assert vote(a, m1, pid, "yes").status_code == 200  # voted at a
    rounds()
    assert vote(a, m2, pid, "no").status_code == 409  # m2 already voted at b: a knows it from gossip
    time.sleep(1.8)
    va, vb = a.store.params_version, b.store.params_version
    wait_decided([a, b], pid, between=rounds)
    for n in (a, b):
        assert n.store.params.replication == 3
    assert (a.store.params_version, b.store.params_version) == (va + 1, vb + 1)
    for _ in range(4):  # more gossip, spikes re-sent, ticks: no second execution anywhere
        rounds()
        a.coord.governance.tick()
        b.coord.governance.tick()
    assert (a.store.params_version, b.store.params_version) == (va + 1, vb + 1)
    assert a.store.ledger.root() == b.store.ledger.root()
    dec = [e for e in a.store.ledger.iter_entries() if e.ref.startswith(f"decide:{pid}")]
    assert sorted(e.issuer for e in dec) == sorted([sa_.id, sb.id])  # one decide entry per coordinator
    # a restarted coordinator rebuilds its governance state from its database and does not re-execute
    from wasm_torch.net.coordinator import Coordinator
    from wasm_torch.net.store import Store

    store2 = Store(a.store.url, sa_, {sb.id: sb.public_raw})
    coord2 = Coordinator(store2, trusted_publishers=[], sweep_s=10)
    assert pid in coord2.governance.executed and coord2.governance.tick() == []
    assert store2.params_version == va + 1
    store2.engine.dispose()


def test_a_coordinator_that_missed_the_agreement_adopts_f_plus_1_decisions(make_net):
    """Three peers' decide entries (f = 1 of n = 4): a coordinator that never ran the agreement
    adopts the decision once f + 1 = 2 of them agree, and executes it once."""
    peers = [Signer.generate() for _ in range(3)]
    net = make_net(params=FAST, peer_keys={p.id: p.public_raw for p in peers})
    m = member(net, 20, "m")
    pid = propose(net, m, {"price_floor": 2000}).json()["proposal"]
    assert net.coord.agreements.f == 1
    net.store.merge_entries([sign_entry(peers[0], 1, "gov", peers[0].id, 1, f"decide:{pid}:1", now_ms(), pid)])
    assert net.coord.governance.tick() == []  # one is not enough (it could be the faulty one)
    net.store.merge_entries([sign_entry(peers[1], 1, "gov", peers[1].id, 1, f"decide:{pid}:1", now_ms(), pid)])
    assert net.coord.governance.tick() == [(pid, 1)]
    assert net.store.params.price_floor == 2000 and net.coord.governance.tick() == []


def test_admission_document_checks(make_net):
    from wasm_torch.net.governance import check_admission

    net = make_net(params=FAST)
    m = member(net, 20, "m")
    pid = propose(net, m, {"replication": 3}).json()["proposal"]
    adm = net.coord.governance.docs[pid]
    keys = net.store.ledger.keys
    check_admission(adm, keys)
    stranger = Signer.generate()
    with pytest.raises(Exception, match="not a coordinator"):
        check_admission({**adm, "coordinator": stranger.id}, keys)
    resigned = sign_doc(stranger, {k: v for k, v in adm.items() if k != "sig"})
    with pytest.raises(Exception, match="does not verify"):
        check_admission(resigned, keys)
    assert not net.coord.governance.accept_doc(doc_hash(adm), {**adm, "deadline_ms": adm["deadline_ms"] + 1})
