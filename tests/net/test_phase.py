"""Heartbeat phase spreading on the real coordinator and the real Python node: the heartbeat answer
carries the repulsive-Kuramoto shift, `phase_coupling=0` turns it off, and nodes that start in step
(a restart storm) end up spread over the heartbeat period."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from wasm_torch.collective.kuramoto import order_parameter


def test_heartbeat_answer_carries_the_phase_shift(make_net):
    net = make_net(params={"heartbeat_s": 10.0})
    nodes = [net.register(f"n{i}") for i in range(6)]
    first = [net.post("/v1/nodes/heartbeat", s, {"type": "heartbeat"}).json() for s in nodes]
    assert all(f["phase_shift_s"] == 0.0 for f in first)  # a node's first heartbeat only takes its place
    assert first[-1]["phase_nodes"] == 6 and first[-1]["phase_order"] > 0.9  # all arrived together
    again = [net.post("/v1/nodes/heartbeat", s, {"type": "heartbeat"}).json() for s in nodes]
    shifts = [a["phase_shift_s"] for a in again]
    assert all(-5.0 <= x <= 5.0 for x in shifts) and max(shifts) - min(shifts) > 2.0
    # where the nodes will be once they apply the shifts: no longer together
    assert net.coord.scheduler.phases.order() < 0.85 < 0.9 < first[-1]["phase_order"]
    assert net.coord.status()["heartbeat_order"] == pytest.approx(net.coord.scheduler.phases.order(), abs=1e-4)


def test_phase_coupling_zero_turns_it_off(make_net):
    net = make_net(params={"phase_coupling": 0.0})
    s = net.register("n")
    got = net.post("/v1/nodes/heartbeat", s, {"type": "heartbeat"}).json()
    assert "phase_shift_s" not in got and net.coord.status()["heartbeat_order"] is None
    r = net.post("/v1/params", net.signer, {"type": "params", "changes": {"phase_coupling": 3.0}})
    assert r.status_code == 400 and "phase_coupling" in r.json()["error"]


def test_peer_grid_follows_the_anchor():
    from wasm_torch.net.client import Http
    from wasm_torch.net.node import Peer

    p = Peer("http://x", Http("http://x"), anchor=100.25)
    assert p.next_slot(100.0, 1.0) == pytest.approx(100.25)
    assert p.next_slot(100.25, 1.0) == pytest.approx(101.25)
    assert p.next_slot(107.9, 2.0) == pytest.approx(108.25)


@pytest.mark.slow
def test_python_nodes_started_in_step_spread_their_heartbeats(make_net, serve, mlp, tmp_path):
    """Eight real nodes start with the same phase (a restart storm); after a few heartbeat periods
    the coordinator sees their heartbeats spread over the period instead of arriving together."""
    from wasm_torch.net.node import Node, NodeOptions

    period, n = 2.0, 8
    net = make_net(params={"heartbeat_s": period, "poll_s": 0.1, "phase_coupling": 1.0})
    url = serve(net.coord).url
    nodes = [Node(NodeOptions([url], tmp_path / f"k{i}.key", [mlp[2]], tmp_path / f"w{i}", name=f"n{i}"))
             for i in range(n)]  # fmt: skip
    t0 = time.monotonic() + 0.3
    for nd in nodes:
        nd.peers[0].anchor = t0  # in step
    threads = [threading.Thread(target=nd.run, daemon=True) for nd in nodes]
    for t in threads:
        t.start()

    def spread(ph: np.ndarray) -> bool:  # no two within 1/4 of the even spacing; r1 near 0
        ph = np.sort(np.mod(ph, 2 * np.pi))
        gaps = np.diff(np.concatenate([ph, ph[:1] + 2 * np.pi]))
        return bool(order_parameter(ph) < 0.35 and gaps.min() > 0.25 * (2 * np.pi / n))

    def seen() -> tuple[np.ndarray, np.ndarray]:  # as the coordinator sees the heartbeats, as the nodes hold them
        board = net.coord.scheduler.phases
        coord = np.array(sorted(board._last[k][0] for k in board._last))
        # every anchor started at t0; without the shifts they would still be equal
        held = np.array([(nd.peers[0].anchor - t0) / period * 2 * np.pi for nd in nodes])
        return coord, held

    # Converged within 8 periods on an idle machine; a busy CI machine delays heartbeats, so look
    # every period until 20 have passed (the property is that they spread, not how fast).
    time.sleep(4 * period)
    deadline = time.monotonic() + 16 * period
    while True:
        coord, held = seen()
        if (len(coord) == n and spread(coord) and spread(held)) or time.monotonic() > deadline:
            break
        time.sleep(period)
    for nd in nodes:
        nd.stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(coord) == n
    assert spread(coord), coord
    assert spread(held), held
