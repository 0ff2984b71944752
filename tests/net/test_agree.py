"""Agreement among real coordinator apps over their /v1/agree route: four members (f = 1), one of
them Byzantine — it sends both bits for every round and conflicting DECIDE spikes — and the three
correct coordinators decide the same bit, whatever they started with. Hostile spikes are refused."""

from __future__ import annotations

import random

import pytest

from wasm_torch.net.wire import Signer

INSTANCE = "ab" * 32


@pytest.fixture
def four(make_net):
    signers = [Signer.generate() for _ in range(4)]
    keys = {s.id: s.public_raw for s in signers}
    nets = [make_net(signer=s, peer_keys={k: v for k, v in keys.items() if k != s.id}) for s in signers[:3]]
    return nets, signers[3]


def exchange(src, dst) -> None:
    """One gossip-hook exchange src -> dst over HTTP: src's outbox in, dst's outbox back."""
    r = dst.post("/v1/agree", src.signer, {"type": "agree", "spikes": src.coord.agreements.outgoing()})
    assert r.status_code == 200, r.text
    from wasm_torch.net.agree import parse_spikes

    src.coord.agreements.receive(dst.id, parse_spikes(r.json()["spikes"]))


def byzantine_spikes(side: int) -> list[list]:
    out = []
    for r in range(1, 12):
        for b in (0, 1):
            out += [[INSTANCE, "est", r, b], [INSTANCE, "aux", r, (b + side) % 2]]
    return [*out, [INSTANCE, "decide", 0, side]]


@pytest.mark.parametrize("inputs", [(0, 0, 0), (1, 1, 1), (0, 1, 1), (1, 0, 0), (0, 0, 1)])
def test_three_correct_coordinators_agree_despite_a_byzantine_one(four, inputs):
    nets, byz = four
    assert all(n.coord.agreements.f == 1 and len(n.coord.agreements.members) == 4 for n in nets)
    for n, bit in zip(nets, inputs, strict=True):
        n.coord.agreements.start(INSTANCE, bit)
    rng = random.Random(sum(inputs))
    for _ in range(60):
        i, j = rng.sample(range(3), 2)
        exchange(nets[i], nets[j])
        k = rng.randrange(3)  # the Byzantine member tells each coordinator a different story
        r = nets[k].post("/v1/agree", byz, {"type": "agree", "spikes": byzantine_spikes(k % 2)})
        assert r.status_code == 200
        if all(n.coord.agreements.decided(INSTANCE) is not None for n in nets):
            break
    got = [n.coord.agreements.decided(INSTANCE) for n in nets]
    assert None not in got and len(set(got)) == 1, got
    if len(set(inputs)) == 1:
        assert got[0] == inputs[0]  # validity: a unanimous start is what is decided


def test_hostile_spikes_are_refused(four):
    nets, byz = four
    n = nets[0]
    outsider = Signer.generate()
    assert n.post("/v1/agree", outsider, {"type": "agree", "spikes": []}).status_code == 403
    for bad in ([["short", "est", 1, 0]], [[INSTANCE, "vote", 1, 0]], [[INSTANCE, "est", -1, 0]],
                [[INSTANCE, "est", 1, 2]], [[INSTANCE, "est", True, 0]], [[INSTANCE, "est", 1]], "x",
                [[INSTANCE, "est", 10**6, 0]]):  # fmt: skip
        r = n.post("/v1/agree", byz, {"type": "agree", "spikes": bad})
        assert r.status_code == 400, (bad, r.text)
    env = byz.seal({"type": "agree", "spikes": []}, n.id)
    env["sig"] = outsider.seal({"type": "agree", "spikes": []}, n.id)["sig"]
    assert n.client.post("/v1/agree", json=env).status_code == 401
    r = n.post("/v1/agree", byz, {"type": "agree", "spikes": [[INSTANCE, "est", 1, 0]] * 20_001})
    assert r.status_code in (400, 413)
    assert n.client.get("/v1/info").status_code == 200
