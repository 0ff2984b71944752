"""Tasks per second through one real coordinator with 1, 2 and 4 real nodes, against running the same
tasks locally. Every process is started the way users start it (`wasm-torch coordinator`, `wasm-torch
node`); the model is a small MLP (16 -> 32 -> 8), one row per task, so the figures measure the network's
own cost (two signed HTTP round trips, SQLite commits with synchronous=FULL, quorum, ledger entries).

    python bench/net_throughput.py [--tasks 2000] [--window 20]  -> bench/results/net_throughput.json

results/s: acknowledged results per second, summed over nodes (a 1-node network can never validate:
replication needs 2 distinct nodes, so it is measured over a fixed window); validated tasks/s: tasks
that reached a quorum per second (each costs 2 results). Local: the same tasks through
wasm_torch.load(..., variant="simd128", threads=1) in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

WASM_TORCH = str(Path(sys.executable).parent / "wasm-torch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(tmp: Path) -> tuple[Path, Path]:
    import torch
    from torch.export import Dim

    import wasm_torch
    from wasm_torch.integrity.signing import generate_key, sign_artifact, write_private_key, write_public_key

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
    folder = tmp / "mlp"
    wasm_torch.compile(model, (torch.randn(4, 16),), folder, dynamic_shapes=({0: Dim("batch", min=1, max=16)},))
    key = generate_key("ed25519")
    write_private_key(key, tmp / "pub.key")
    write_public_key(key, tmp / "pub.pub")
    sign_artifact(folder, [key])
    return folder, tmp / "pub.pub"


def keyfile(tmp: Path, name: str) -> Path:
    from wasm_torch.integrity.signing import generate_key, write_private_key, write_public_key

    k = generate_key("ed25519")
    write_private_key(k, tmp / f"{name}.key")
    write_public_key(k, tmp / f"{name}.pub")
    return tmp / f"{name}.key"


def local_rate(folder: Path, x: np.ndarray) -> float:
    from wasm_torch.net import tensors
    from wasm_torch.runtime import load

    m = load(folder, variant="simd128", threads=1)
    rows = [x[i : i + 1] for i in range(len(x))]
    t0 = time.perf_counter()
    for r in rows:  # what a node does per task, minus the network: run + canonical hash
        y = m(r)
        tensors.output_hash([("output_0", y)])
    return len(rows) / (time.perf_counter() - t0)


def run_network(tmp: Path, folder: Path, pub: Path, n_nodes: int, tasks: int, window: float) -> dict:
    from wasm_torch.net.submit import submit_job

    run = tmp / f"run{n_nodes}"
    run.mkdir()
    ckey = keyfile(run, "coord")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs = [subprocess.Popen([WASM_TORCH, "coordinator", "--db", str(run / "c.db"), "--port", str(port), "--key",
                               str(ckey), "--trust", str(pub), "--param", "poll_s=0.05", "--param", "lease_s=30"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        http, owner = funded_owner(url, ckey)
        x = np.random.default_rng(0).standard_normal((tasks, 16)).astype(np.float32)
        job = submit_job(http, owner, folder, [x], batch=1)["job"]
        journals = [run / f"n{i}.journal" for i in range(n_nodes)]
        for i in range(n_nodes):
            procs.append(subprocess.Popen(
                [WASM_TORCH, "node", "--coordinator", url, "--key", str(keyfile(run, f"n{i}")), "--trust", str(pub),
                 "--work-dir", str(run / f"w{i}"), "--journal", str(journals[i]), "--idle-exit", "600"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip

        def acked() -> int:
            return sum(len(j.read_text().splitlines()) for j in journals if j.exists())

        while acked() == 0:
            time.sleep(0.05)
        t0, a0, d0 = time.perf_counter(), acked(), http.get(f"/v1/jobs/{job}")["done"]
        while time.perf_counter() - t0 < window:
            s = http.get(f"/v1/jobs/{job}")
            if s["status"] == "done":
                break
            time.sleep(0.1)
        dt = time.perf_counter() - t0
        s = http.get(f"/v1/jobs/{job}")
        return {"nodes": n_nodes, "seconds": dt, "results": acked() - a0, "results_per_s": (acked() - a0) / dt,
                "validated": s["done"] - d0, "validated_tasks_per_s": (s["done"] - d0) / dt,
                "job_done": s["status"] == "done"}  # fmt: skip
    finally:
        stop_all(procs)


def funded_owner(url: str, coordinator_key: Path) -> tuple[Any, Any]:
    """(an HTTP client that waits for the coordinator at `url`, a new job owner granted 1,000 credits)."""
    from wasm_torch.net.client import Http
    from wasm_torch.net.economy import MICRO
    from wasm_torch.net.wire import Signer

    http = Http(url, attempts=None, backoff=0.1, max_backoff=0.5)
    coord = Signer.from_file(coordinator_key)
    to = http.get("/v1/info")["coordinator"]
    owner = Signer.generate()
    http.post("/v1/ledger/grant", coord.seal({"type": "grant", "account": owner.id, "amount": 1000 * MICRO,
                                              "note": "bench"}, to))  # fmt: skip
    return http, owner


def save(out: dict, path_text: str) -> None:
    """Write a benchmark's JSON (with the load average at the end) and say where."""
    out["load_avg_end"] = os.getloadavg()
    path = Path(path_text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}", file=sys.stderr)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process still running (newest first), then wait; kill what does not stop."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000, help="more than the nodes finish in the window")
    ap.add_argument("--window", type=float, default=20.0, help="seconds measured per configuration at most")
    ap.add_argument("--nodes", default="1,2,4")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "net_throughput.json"))
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out: dict = {"command": "python bench/net_throughput.py " + " ".join(sys.argv[1:]), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "load_avg_start": os.getloadavg(), "runs": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="wt-net-tput-") as t:
        tmp = Path(t)
        folder, pub = build(tmp)
        x = np.random.default_rng(0).standard_normal((a.tasks, 16)).astype(np.float32)
        out["local_tasks_per_s"] = local_rate(folder, x)
        print(f"local: {out['local_tasks_per_s']:.0f} tasks/s", flush=True)
        for n in (int(v) for v in a.nodes.split(",")):
            r = run_network(tmp, folder, pub, n, a.tasks, a.window)
            r["local_over_network_results"] = out["local_tasks_per_s"] / max(1e-9, r["results_per_s"])
            out["runs"].append(r)
            print(json.dumps(r), flush=True)
    save(out, a.out)


if __name__ == "__main__":
    main()
