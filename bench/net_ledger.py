"""Ledger figures at 100,000 entries: merge time, balance query latency (in process and over HTTP from a
real `wasm-torch coordinator` that loaded them from SQLite), and gossip convergence time against the
number of coordinators (in-process coordinators over loopback HTTP, ring topology).

    python bench/net_ledger.py [--entries 100000] [--coordinators 2,4,8]  -> bench/results/net_ledger.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from wasm_torch.integrity.signing import generate_key, write_private_key, write_public_key
from wasm_torch.net import db
from wasm_torch.net.ledger import Ledger, sign_entry
from wasm_torch.net.wire import Signer, canonical

sys.path.insert(0, str(Path(__file__).parent))
from net_throughput import WASM_TORCH, save


def make_entries(signers: list[Signer], n: int, accounts: int, seed: int = 0) -> list:
    """n valid entries from len(signers) issuers: grants, earnings, reservations and spends."""
    rng = random.Random(seed)
    views = {s.id: Ledger({x.id: x.public_raw for x in signers}) for s in signers}
    out = []
    while len(out) < n:
        s = rng.choice(signers)
        led = views[s.id]
        acct = f"acct-{rng.randrange(accounts)}"
        kind = rng.choices(["mint", "earn", "reserve", "spend"], [1, 4, 2, 3])[0]
        amount = rng.randint(1, 1000)
        ref = f"job:{rng.randrange(50)}"
        if led.violation(kind, s.id, acct, amount, ref) is not None:
            kind = "earn"
        e = sign_entry(s, led.next_seq(s.id), kind, acct, amount, ref, 0)
        led.add(e, verify=False)
        out.append(e)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_merge(signers, entries) -> dict:
    keys = {s.id: s.public_raw for s in signers}
    res = {}
    from wasm_torch.net.ledger import LEDGER_DOMAIN
    from wasm_torch.net.wire import b64d, verify_raw

    sample = entries[:5000]  # the peer figure: one bare Ed25519 verification, same run
    msgs = [(keys[e.issuer], b64d(e.sig, "sig"), LEDGER_DOMAIN + canonical(e.body())) for e in sample]
    t0 = time.perf_counter()
    for pub, sig, msg in msgs:
        verify_raw(pub, sig, msg)
    res["ed25519_verify_us"] = (time.perf_counter() - t0) / len(msgs) * 1e6
    for verify in (True, False):
        t0 = time.perf_counter()
        led = Ledger(keys)
        led.merge(entries, verify=verify)
        res[f"merge_{'verified' if verify else 'unverified'}_s"] = time.perf_counter() - t0
    full = led
    t0 = time.perf_counter()
    root = full.root()
    res["root_s"] = time.perf_counter() - t0
    part = Ledger(keys)
    part.merge(entries[: int(len(entries) * 0.99)], verify=False)
    t0 = time.perf_counter()
    missing = full.missing_for(part.summary(), limit=10**9)
    part.merge(missing)
    res["anti_entropy_1pct_delta_s"] = time.perf_counter() - t0
    res["delta_entries"] = len(missing)
    assert part.root() == root
    accts = list(full.accounts)
    lat = []
    for _ in range(100_000):
        a = random.choice(accts)
        t0 = time.perf_counter()
        full.balance(a)
        lat.append(time.perf_counter() - t0)
    res["balance_in_process_us"] = {"p50": pct(lat, 0.5) * 1e6, "p99": pct(lat, 0.99) * 1e6,
                                    "mean": statistics.fmean(lat) * 1e6}  # fmt: skip
    return res


def bench_http_balance(tmp: Path, signers, keyfiles, entries) -> dict:
    """A real coordinator process loads the entries from SQLite; GET /v1/ledger/balance/{account}."""
    dbfile = tmp / "ledger.db"
    eng = db.connect(str(dbfile))
    with eng.begin() as c:
        c.execute(db.meta.insert().values(key="coordinator", value=signers[0].id))
        c.execute(db.ledger.insert(), [{"issuer": e.issuer, "seq": e.seq, "hash": e.hex,
                                        "body": canonical(e.to_json()).decode()} for e in entries])  # fmt: skip
    eng.dispose()
    port = free_port()
    args = [WASM_TORCH, "coordinator", "--db", str(dbfile), "--port", str(port), "--key", str(keyfiles[0][0]),
            *[a for k in keyfiles[1:] for a in ("--peer-key", str(k[1]))]]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/v1/ledger/root")
                root = json.loads(conn.getresponse().read())
                break
            except OSError:
                time.sleep(0.05)
                if time.perf_counter() - t0 > 300:
                    raise
        startup = time.perf_counter() - t0
        accts = sorted({e.account for e in entries})
        peer = []  # the peer figure: a route that does nothing, same connection, same run
        for _ in range(3000):
            t1 = time.perf_counter()
            conn.request("GET", "/v1/ledger/root")
            conn.getresponse().read()
            peer.append(time.perf_counter() - t1)
        lat = []
        for i in range(3000):
            t1 = time.perf_counter()
            conn.request("GET", f"/v1/ledger/balance/{accts[i % len(accts)]}")
            body = conn.getresponse().read()
            lat.append(time.perf_counter() - t1)
            assert b"available" in body
        conn.close()
    finally:
        p.terminate()
        p.wait()
    return {"coordinator_startup_s": startup, "entries_loaded": root["entries"],
            "root_http_ms": {"p50": pct(peer, 0.5) * 1e3, "p99": pct(peer, 0.99) * 1e3},
            "balance_http_ms": {"p50": pct(lat, 0.5) * 1e3, "p99": pct(lat, 0.99) * 1e3,
                                "mean": statistics.fmean(lat) * 1e3}}  # fmt: skip


def bench_gossip(tmp: Path, k: int, per: int) -> dict:
    """k in-process coordinators in a ring (each gossips with the next); each first issues `per`
    entries on its own; then gossip starts (every 0.2 s) and we time until every root is equal."""
    import uvicorn

    from wasm_torch.net.coordinator import Coordinator, create_app
    from wasm_torch.net.gossip import Gossip
    from wasm_torch.net.store import Store

    signers = [Signer.generate() for _ in range(k)]
    keys = {s.id: s.public_raw for s in signers}
    ports = [free_port() for _ in range(k)]
    stores, servers = [], []
    for i, s in enumerate(signers):
        st = Store(str(tmp / f"g{k}-{i}.db"), s, {x: v for x, v in keys.items() if x != s.id})
        st.set_params({"gossip_s": 0.2})
        with st.tx() as tx:
            for j in range(per):
                tx.issue("mint", f"acct-{j % 100}", 1 + j, "")
        coord = Coordinator(st, peers=[])
        cfg = uvicorn.Config(create_app(coord), host="127.0.0.1", port=ports[i], log_level="warning")
        srv = uvicorn.Server(cfg)
        threading.Thread(target=srv.run, daemon=True).start()
        stores.append(st)
        servers.append(srv)
    time.sleep(1.0)
    gossips = [Gossip(st, signers[i], [f"http://127.0.0.1:{ports[(i + 1) % k]}"]) for i, st in enumerate(stores)]
    t0 = time.perf_counter()
    for g in gossips:
        g.start()
    while len({st.ledger.root() for st in stores}) > 1 or any(len(st.ledger) != k * per for st in stores):
        time.sleep(0.02)
        if time.perf_counter() - t0 > 300:
            raise TimeoutError(f"{k} coordinators did not converge")
    took = time.perf_counter() - t0
    for g in gossips:
        g.stop()
    for srv in servers:
        srv.should_exit = True
    rounds = sum(g.stats[g.peers[0]]["rounds"] for g in gossips)
    return {"coordinators": k, "entries_each": per, "topology": "ring", "gossip_s": 0.2, "converge_s": took,
            "rounds_total": rounds}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--coordinators", default="2,4,8")
    ap.add_argument("--gossip-entries", type=int, default=500, help="entries each coordinator issues first")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "net_ledger.json"))
    a = ap.parse_args()
    out: dict = {"command": "python bench/net_ledger.py " + " ".join(sys.argv[1:]), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="wt-net-bench-") as t:
        tmp = Path(t)
        keyfiles, signers = [], []
        for i in range(3):
            k = generate_key("ed25519")
            priv, pub = tmp / f"issuer{i}.key", tmp / f"issuer{i}.pub"
            write_private_key(k, priv)
            write_public_key(k, pub)
            keyfiles.append((priv, pub))
            signers.append(Signer(k))
        t0 = time.perf_counter()
        entries = make_entries(signers, a.entries, a.accounts)
        out["sign_s"] = time.perf_counter() - t0
        out["entries"] = len(entries)
        print(f"signed {len(entries):,} entries in {out['sign_s']:.1f} s", flush=True)
        out["merge"] = bench_merge(signers, entries)
        print(json.dumps(out["merge"], indent=1), flush=True)
        out["http"] = bench_http_balance(tmp, signers, keyfiles, entries)
        print(json.dumps(out["http"], indent=1), flush=True)
        out["gossip"] = []
        for k in (int(x) for x in a.coordinators.split(",")):
            r = bench_gossip(tmp, k, a.gossip_entries)
            out["gossip"].append(r)
            print(json.dumps(r), flush=True)
    save(out, a.out)


if __name__ == "__main__":
    main()
