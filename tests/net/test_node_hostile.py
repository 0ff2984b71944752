"""A Python node against a hostile coordinator: every answer it uses — info, registration,
heartbeat, lease, balance — malformed, mistyped, oversized or absurd. The node must refuse the
answer, back off from that coordinator and keep running: never crash, spin or read without bound."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wasm_torch.net.node import Node, NodeOptions

GOOD = {
    "/v1/info": {"coordinator": "ed25519:" + "c" * 32},
    "/v1/nodes/register": {"poll_s": 0.1, "heartbeat_s": 10.0, "staked": 0, "probation": True},
    "/v1/nodes/heartbeat": {"poll_s": 0.1, "heartbeat_s": 10.0},
    "/v1/nodes/holdings": {"plan": 0, "fetch": [], "keep": [], "drop": []},
}


class Fake:
    """A coordinator that answers each path with the bytes it is told to (204 when told None)."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes | None] = {k: json.dumps(v).encode() for k, v in GOOD.items()}
        self.answers["/v1/tasks/lease"] = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                path = self.path.split("?")[0]
                if path.startswith("/v1/ledger/balance/"):
                    path = "/v1/ledger/balance"
                body = fake.answers.get(path, b'{"error": "no"}')
                if body is None:
                    self.send_response(204)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.server.shutdown()
    f.server.server_close()


def _node(fake, mlp, tmp_path) -> Node:
    node = Node(NodeOptions([fake.url], tmp_path / "k.key", [mlp[2]], tmp_path / "w"))
    node.peers[0].http.max_bytes = 4096  # small, so "oversized" stays cheap in a test
    return node


TASK = {"assignment": "as-1", "task": "t-1", "job": "j-1", "artifact": "ab" * 32, "variant": "simd128",
        "inputs": [], "units": 1, "deadline_ms": 1, "lease_s": 30.0}  # fmt: skip


@pytest.mark.parametrize("path,body", [
    ("/v1/info", b"NaN"),
    ("/v1/info", b"x" * 10_000),  # over the node's answer limit
    ("/v1/nodes/register", b'{"poll_s": "fast", "heartbeat_s": 10}'),
    ("/v1/nodes/register", b'{"poll_s": 1e-9, "heartbeat_s": 10}'),  # would make the node spin
    ("/v1/nodes/register", b'{"heartbeat_s": 10}'),
    ("/v1/nodes/register", b"[1, 2]"),
    ("/v1/nodes/heartbeat", b'{"poll_s": 0.1, "heartbeat_s": 1e12}'),  # would silence the node
    ("/v1/nodes/holdings", b'{"fetch": "everything"}'),
    ("/v1/tasks/lease", b"[]"),
    ("/v1/tasks/lease", json.dumps({**TASK, "inputs": "x"}).encode()),
    ("/v1/tasks/lease", json.dumps({k: v for k, v in TASK.items() if k != "artifact"}).encode()),
    ("/v1/tasks/lease", b'{"assignment": ' + b"1" * 9000 + b"}"),
])  # fmt: skip
def test_node_survives_hostile_answers(fake, mlp, tmp_path, path, body):
    fake.answers[path] = body
    node = _node(fake, mlp, tmp_path)
    peer = node.peers[0]
    for _ in range(3):
        assert node.step(peer) is False  # refused, backed off, still running
        peer.next_poll = peer.next_heartbeat = 0.0
    assert node.acked == 0 and not list((tmp_path / "w" / "artifacts").iterdir())
    assert 0.01 <= peer.poll_s <= 3600 and 0.01 <= peer.heartbeat_s <= 3600


def test_a_task_naming_a_path_is_failed_not_run(fake, mlp, tmp_path):
    (tmp_path / "etc").mkdir()
    fake.answers["/v1/tasks/lease"] = json.dumps({**TASK, "artifact": "../../etc"}).encode()
    node = _node(fake, mlp, tmp_path)
    assert node.step(node.peers[0]) is True  # a task: reported failed (the fake accepts the report)
    assert node.acked == 0 and (tmp_path / "etc").is_dir()


@pytest.mark.parametrize("body", [b"[]", b'{"earned": "lots"}', b'{"earned": 1, "slashed": true}', b"{"])
def test_audit_of_a_hostile_balance_counts_against_the_coordinator(fake, mlp, tmp_path, body):
    fake.answers["/v1/ledger/balance"] = body
    node = _node(fake, mlp, tmp_path)
    peer = node.peers[0]
    before = peer.model.honesty
    node._audit(peer)  # no crash
    assert peer.model.honesty <= before
