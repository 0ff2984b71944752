"""`wasm-torch coordinator | node | ledger | job`: parsing for the edge network commands.

wasm-torch coordinator --db coord.db --port 8700 --key keys/coord.key --trust keys/publisher.pub
          [--db postgresql://user@127.0.0.1:5432/db] [--peer URL --peer-key peer.pub] [--param replication=3]
wasm-torch node --coordinator http://127.0.0.1:8700 --key keys/node.key --trust keys/publisher.pub [--stake 10]
wasm-torch job submit out/mlp x.npy --coordinator URL --key keys/me.key [--batch 1] [--priority] [--watch]
wasm-torch job watch JOB --coordinator URL          wasm-torch job fetch JOB --coordinator URL -o y.npy
wasm-torch job pipeline out/mlp2 x.npy --coordinator URL --key keys/me.key [--batch 1] -o y.npy
wasm-torch ledger balance ACCOUNT --coordinator URL | root | grant ACCOUNT CREDITS --key operator.key
wasm-torch ledger params --coordinator URL [--set k=v --key operator.key] | verify --db URL [--peer-key k.pub]
wasm-torch gov propose --coordinator URL --key me.key --set replication=3 [--title why] | vote PID yes|no
          --coordinator URL --key me.key | list --coordinator URL | show PID --coordinator URL

Kept apart from cli.py so the main parser gains one line; heavy imports (fastapi, uvicorn,
sqlalchemy) happen inside the command functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

MICRO = 1_000_000


def _account(text: str) -> str:
    """A key id, or the id of a .pub / .key file."""
    if text.startswith("ed25519:"):
        return text
    from ..integrity.signing import key_id, load_private_key, load_public_key

    p = Path(text)
    key = load_private_key(p) if p.suffix == ".key" else load_public_key(p)
    return key_id(key)


def _peer_keys(files: list[str]) -> dict[str, bytes]:
    from ..integrity.signing import key_id, load_public_key

    out = {}
    for f in files:
        k = load_public_key(f)
        out[key_id(k)] = k.public_bytes_raw()
    return out


def _credits(text: str) -> int:
    try:
        v = round(float(text) * MICRO)
    except ValueError:
        raise SystemExit(f"expected an amount of credits, got {text!r}") from None
    if v < 0:
        raise SystemExit("amounts cannot be negative")
    return v


def cmd_coordinator(a: argparse.Namespace) -> int:
    import uvicorn

    from .coordinator import Coordinator, create_app
    from .params import NetworkParams
    from .store import Store
    from .wire import Signer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signer = Signer.from_file(a.key)
    store = Store(a.db, signer, _peer_keys(a.peer_key))
    if a.param:
        changes = dict(NetworkParams.parse_assignment(s) for s in a.param)
        store.set_params(changes)
    coord = Coordinator(store, trusted_publishers=a.trust, operator_keys=_peer_keys(a.operator_key), peers=a.peer)
    print(f"coordinator {signer.id} on http://{a.host}:{a.port}/  (db {a.db}, ledger {len(store.ledger)} entries, "
          f"root {store.ledger.root()[:16]}…)", flush=True)  # fmt: skip
    uvicorn.run(create_app(coord), host=a.host, port=a.port, log_level="warning", access_log=False)
    return 0


def cmd_node(a: argparse.Namespace) -> int:
    from ..config import settings
    from .node import Fault, Node, NodeOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s node %(message)s")
    opts = NodeOptions(
        coordinators=a.coordinator, key=Path(a.key), trust=[Path(t) for t in a.trust],
        work_dir=Path(a.work_dir) if a.work_dir else settings().cache_dir / "node",
        name=a.name, memory_limit_mb=a.memory_limit, deadline_s=a.deadline, stake=_credits(a.stake),
        max_tasks=a.max_tasks, idle_exit_s=a.idle_exit, journal=Path(a.journal) if a.journal else None,
        fault=Fault.parse(a.fault), cache_artifacts=a.cache_artifacts, growth=not a.no_growth,
    )  # fmt: skip
    node = Node(opts)
    print(f"node {node.id} -> {', '.join(a.coordinator)}", flush=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: node.stop.set())
    try:
        summary = node.run()
    except KeyboardInterrupt:
        summary = node.summary()
    print(json.dumps(summary, indent=1), flush=True)
    return 0


def _http(url: str) -> Any:
    from .client import Http

    return Http(url, attempts=3)


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} > 0, got {text!r}") from None
        if not 0 < v < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} > 0, got {text!r}")
        return v

    return parse


def _load_inputs(paths: list[str]) -> list[Any]:
    import numpy as np

    from .errors import BadMessage

    out = []
    for p in paths:
        try:
            out.append(np.load(p, allow_pickle=False))
        except (ValueError, EOFError) as e:
            raise BadMessage(f"input {p} is not a .npy array ({e}); save inputs with numpy.save") from None
        if not isinstance(out[-1], np.ndarray):
            raise BadMessage(f"input {p} is a .npz archive; save each input as its own .npy file")
    return out


def _save(outs: list[Any], output: str) -> None:
    import numpy as np

    stem = Path(output)
    for k, arr in enumerate(outs):
        path = stem if k == 0 else stem.with_name(f"{stem.stem}_{k}{stem.suffix}")
        np.save(path, arr, allow_pickle=False)
        print(f"wrote {path}: {arr.dtype}{list(arr.shape)}")


def _pipeline(a: argparse.Namespace, http: Any) -> int:
    from .pipeline_job import run_pipeline
    from .wire import Signer

    def show(e: Any) -> None:
        print(f"stage {e.stage} micro-batch {e.micro_batch} {e.kind} ({e.job}), {e.done}/{e.total} stage jobs done",
              file=sys.stderr, flush=True)  # fmt: skip

    inputs = _load_inputs(a.inputs)
    outs = run_pipeline(http, Signer.from_file(a.key), a.pipeline, inputs, a.batch, priority=a.priority,
                        timeout=a.timeout, progress=show)  # fmt: skip
    _save(outs, a.output)
    return 0


def cmd_job(a: argparse.Namespace) -> int:
    import numpy as np

    from . import submit

    http = _http(a.coordinator)
    if a.job_cmd == "pipeline":
        return _pipeline(a, http)
    if a.job_cmd == "submit":
        from .wire import Signer

        inputs = [np.load(p, allow_pickle=False) for p in a.inputs]
        got = submit.submit_job(http, Signer.from_file(a.key), a.artifact, inputs, a.batch, a.priority)
        print(json.dumps(got), flush=True)
        if a.watch:
            submit.watch(http, got["job"])
        return 0
    if a.job_cmd == "watch":
        s = submit.watch(http, a.job, every=a.every)
        return 0 if s["failed"] == 0 else 1
    _save(submit.fetch_outputs(http, a.job), a.output)
    return 0


def cmd_ledger(a: argparse.Namespace) -> int:
    if a.ledger_cmd == "verify":
        return _verify(a)
    http = _http(a.coordinator)
    if a.ledger_cmd == "balance":
        got = http.get(f"/v1/ledger/balance/{_account(a.account)}")
        print(json.dumps({k: (v / MICRO if isinstance(v, int) else v) for k, v in got.items()}, indent=1))
    elif a.ledger_cmd == "root":
        print(json.dumps(http.get("/v1/ledger/root")))
    elif a.ledger_cmd == "grant":
        from .wire import Signer

        msg = {"type": "grant", "account": _account(a.account), "amount": _credits(a.amount), "note": a.note}
        signer = Signer.from_file(a.key)
        to = http.get("/v1/info")["coordinator"]
        print(json.dumps(http.post("/v1/ledger/grant", signer.seal(msg, to))))
    elif a.ledger_cmd == "params":
        if not a.set:
            print(json.dumps(http.get("/v1/info")["params"], indent=1))
            return 0
        from .params import NetworkParams
        from .wire import Signer

        if not a.key:
            raise SystemExit("changing parameters needs --key OPERATOR.key")
        changes = dict(NetworkParams.parse_assignment(s) for s in a.set)
        to = http.get("/v1/info")["coordinator"]
        msg = {"type": "params", "changes": changes}
        print(json.dumps(http.post("/v1/params", Signer.from_file(a.key).seal(msg, to)), indent=1))
    return 0


def cmd_gov(a: argparse.Namespace) -> int:
    http = _http(a.coordinator)
    if a.gov_cmd == "list":
        print(json.dumps(http.get("/v1/gov/proposals"), indent=1))
        return 0
    if a.gov_cmd == "show":
        print(json.dumps(http.get(f"/v1/gov/proposals/{a.proposal}"), indent=1))
        return 0
    from .governance import proposal_doc, vote_doc
    from .params import NetworkParams
    from .wire import Signer

    if a.gov_cmd == "propose":  # check the flags before contacting anyone
        if not a.set:
            raise SystemExit("a proposal needs at least one --set NAME=VALUE")
        changes = dict(NetworkParams.parse_assignment(s) for s in a.set)
    signer = Signer.from_file(a.key)
    to = http.get("/v1/info")["coordinator"]
    if a.gov_cmd == "propose":
        msg = {"type": "gov-propose", "doc": proposal_doc(signer, changes, a.title)}
        print(json.dumps(http.post("/v1/gov/propose", signer.seal(msg, to)), indent=1))
    else:
        msg = {"type": "gov-vote", "doc": vote_doc(signer, a.proposal, a.choice)}
        print(json.dumps(http.post("/v1/gov/vote", signer.seal(msg, to)), indent=1))
    return 0


def _verify(a: argparse.Namespace) -> int:
    """Offline: read a coordinator database, verify every entry's signature, print root and totals."""
    import sqlalchemy as sa

    from . import db
    from .ledger import Entry, Ledger
    from .wire import loads_strict

    eng = db.connect(a.db)
    with eng.connect() as conn:
        owner = conn.execute(sa.select(db.meta.c.value).where(db.meta.c.key == "coordinator")).scalar()
        rows = conn.execute(sa.select(db.ledger.c.body)).scalars().all()
    keys = _peer_keys(a.peer_key)
    led = Ledger(keys)
    bad = 0
    for body in rows:
        e = Entry.from_json(loads_strict(body, "ledger row"))
        if e.issuer not in keys:
            bad += 1
            continue
        try:
            led.add(e)
        except Exception as err:  # report every bad row, keep going
            print(f"bad entry {e.issuer}#{e.seq}: {err}", file=sys.stderr)
            bad += 1
    print(json.dumps({"coordinator": owner, "entries": len(rows), "verified": len(led), "unverified": bad,
                      "root": led.root(), "rejected": {k: len(v) for k, v in led.rejected.items()}}, indent=1))  # fmt: skip
    return 0 if bad == 0 else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("coordinator", help="run an edge-network coordinator (jobs, quorum, ledger)")
    c.add_argument("--db", default="coordinator.db", help="SQLite file (default) or postgresql://… URL")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8700)
    c.add_argument("--key", required=True, help="the coordinator's Ed25519 private key (wasm-torch keygen)")
    c.add_argument("--trust", action="append", default=[], help="trusted artifact publisher .pub (repeat)")
    c.add_argument("--peer", action="append", default=[], help="URL of a peer coordinator to gossip with (repeat)")
    c.add_argument("--peer-key", action="append", default=[], help="public key of a federation coordinator (repeat)")
    c.add_argument("--operator-key", action="append", default=[], help="public key allowed to grant and set params")
    c.add_argument("--param", action="append", default=[], help="network parameter NAME=VALUE, stored (repeat)")
    c.set_defaults(fn=cmd_coordinator)

    n = sub.add_parser("node", help="run a compute node for one or more coordinators")
    n.add_argument("--coordinator", action="append", required=True, help="coordinator URL (repeat)")
    n.add_argument("--key", required=True, help="node Ed25519 key (created if missing)")
    n.add_argument("--trust", action="append", required=True, help="trusted artifact publisher .pub (repeat)")
    n.add_argument("--work-dir", help="artifact cache (default ~/.cache/wasm_torch/node)")
    n.add_argument("--name", default="node")
    n.add_argument("--memory-limit", type=int, default=512, help="MB of linear memory per module")
    n.add_argument("--deadline", type=float, default=60.0, help="seconds per task at most")
    n.add_argument("--stake", default="0", help="credits to bond at registration")
    n.add_argument("--max-tasks", type=int, help="stop after this many acknowledged results")
    n.add_argument("--idle-exit", type=float, help="stop after this many seconds without work")
    n.add_argument("--journal", help="append one JSON line per acknowledged result")
    n.add_argument("--cache-artifacts", type=_positive(int), default=16,
                   help="artifacts held at once (on disk and loaded); the least recently used not kept by a "
                   "growth order goes first")  # fmt: skip
    n.add_argument("--no-growth", action="store_true", help="do not report holdings or follow growth orders")
    n.add_argument("--fault", action="append", default=[], help="TESTS ONLY: wrong | crash-after=N | slow=S")
    n.set_defaults(fn=cmd_node)

    j = sub.add_parser("job", help="submit a job to a coordinator, watch it, fetch its outputs")
    jsub = j.add_subparsers(dest="job_cmd", required=True)
    s = jsub.add_parser("submit")
    s.add_argument("artifact", help="signed artifact folder")
    s.add_argument("inputs", nargs="+", help=".npy per model input, split along axis 0")
    s.add_argument("--coordinator", required=True)
    s.add_argument("--key", required=True, help="the paying account's Ed25519 key")
    s.add_argument("--batch", type=int, default=1, help="rows per task")
    s.add_argument("--priority", action="store_true", help="run first, at twice the price")
    s.add_argument("--watch", action="store_true", help="show progress until done")
    w = jsub.add_parser("watch")
    w.add_argument("job")
    w.add_argument("--coordinator", required=True)
    w.add_argument("--every", type=float, default=1.0)
    f = jsub.add_parser("fetch")
    f.add_argument("job")
    f.add_argument("--coordinator", required=True)
    f.add_argument("-o", "--output", required=True, help=".npy for the first output (others get _1, _2…)")
    pp = jsub.add_parser("pipeline", help="run a partitioned model (compile(..., stages=k)) stage by stage as jobs")
    pp.add_argument("pipeline", help="pipeline folder (pipeline.json + signed stage folders)")
    pp.add_argument("inputs", nargs="+", help=".npy per model input, split along axis 0 into micro-batches")
    pp.add_argument("--coordinator", required=True)
    pp.add_argument("--key", required=True, help="the paying account's Ed25519 key")
    pp.add_argument("--batch", type=_positive(int), default=1, help="rows per micro-batch")
    pp.add_argument("--timeout", type=_positive(float), default=600.0, help="seconds one stage job may take")
    pp.add_argument("--priority", action="store_true", help="run first, at twice the price")
    pp.add_argument("-o", "--output", required=True, help=".npy for the first output (others get _1, _2…)")
    j.set_defaults(fn=cmd_job)

    led = sub.add_parser("ledger", help="credit balances, grants, Merkle root, network parameters")
    lsub = led.add_subparsers(dest="ledger_cmd", required=True)
    b = lsub.add_parser("balance")
    b.add_argument("account", help="key id, or a .pub / .key file")
    b.add_argument("--coordinator", required=True)
    r = lsub.add_parser("root")
    r.add_argument("--coordinator", required=True)
    g = lsub.add_parser("grant")
    g.add_argument("account")
    g.add_argument("amount", help="credits")
    g.add_argument("--coordinator", required=True)
    g.add_argument("--key", required=True, help="operator (or coordinator) private key")
    g.add_argument("--note", default="operator")
    p = lsub.add_parser("params")
    p.add_argument("--coordinator", required=True)
    p.add_argument("--set", action="append", default=[], help="NAME=VALUE (repeat)")
    p.add_argument("--key", help="operator private key (needed with --set)")
    gv = sub.add_parser("gov", help="governance: propose parameter changes, vote with your stake")
    gsub = gv.add_subparsers(dest="gov_cmd", required=True)
    gp = gsub.add_parser("propose", help="propose new values for governable network parameters")
    gp.add_argument("--coordinator", required=True, help="URL of the coordinator that admits the proposal")
    gp.add_argument("--key", required=True, help="your Ed25519 key (an account holding stake)")
    gp.add_argument("--set", action="append", default=[], help="NAME=VALUE (repeat): replication, price_floor, ...")
    gp.add_argument("--title", default="", help="one line saying why")
    gvote = gsub.add_parser("vote", help="vote on a proposal (one vote per member)")
    gvote.add_argument("proposal", help="proposal id (64 hex, from `gov list`)")
    gvote.add_argument("choice", choices=["yes", "no"], help="yes or no")
    gvote.add_argument("--coordinator", required=True, help="URL of any coordinator of the federation")
    gvote.add_argument("--key", required=True, help="your Ed25519 key (stake at the proposal's snapshot counts)")
    gl = gsub.add_parser("list", help="proposals, tallies so far, decisions")
    gl.add_argument("--coordinator", required=True, help="coordinator URL")
    gs = gsub.add_parser("show", help="one proposal")
    gs.add_argument("proposal", help="proposal id")
    gs.add_argument("--coordinator", required=True, help="coordinator URL")
    gv.set_defaults(fn=cmd_gov)

    v = lsub.add_parser("verify", help="offline: verify every entry in a coordinator database")
    v.add_argument("--db", required=True)
    v.add_argument("--peer-key", action="append", default=[], help="public key of every issuer to accept")
    led.set_defaults(fn=cmd_ledger)
