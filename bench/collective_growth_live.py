"""Growth on the real loopback network: cold loads with and without the coordinator's growth plan.

Every process is started the way users start it (`wasm-torch coordinator`, `wasm-torch node`). N
nodes, each with room for C artifacts (`--cache-artifacts`), run jobs for A artifacts (the MLP
16 -> H -> 8 with different weights: A content hashes) submitted together, replication 2. Three arms,
interleaved, same jobs and seeds:

    off         growth_period_s=0: tasks go to whichever node asks (the plain scheduler), each
                node's cache evicts its least recently used artifact
    rendezvous  growth on, homes by a hash of (artifact, node) only: steering and orders without
                Gray-Scott (blind to demand and to the node graph)
    gray-scott  growth on: the coordinator replans with Gray-Scott over the node graph; nodes
                report holdings, fetch ahead and keep what they are told; first replicas are
                steered to nodes holding or keeping the artifact (checking replicas never are)

Measured per run: cold loads (artifact downloads + verifications + module compilations) per
acknowledged result, the nodes' time spent on them, and the wall time until every job is done. The cold-load count is the
effect; time on loopback is dominated by the coordinator's fsync'd commits, not by loads.

    python bench/collective_growth_live.py [--quick]  -> bench/results/collective_growth_live.json
    python bench/collective_growth_live.py --plan-cost --out bench/results/collective_growth_plan_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from net_throughput import WASM_TORCH, free_port, funded_owner, keyfile, save, stop_all

ARMS = ("off", "rendezvous", "gray-scott")


def build(tmp: Path, n: int, hidden: int) -> tuple[list[Path], Path]:
    import torch
    from torch.export import Dim

    import wasm_torch
    from wasm_torch.integrity.signing import generate_key, sign_artifact, write_private_key, write_public_key

    key = generate_key("ed25519")
    write_private_key(key, tmp / "pub.key")
    write_public_key(key, tmp / "pub.pub")
    folders = []
    for i in range(n):
        torch.manual_seed(i)
        model = torch.nn.Sequential(torch.nn.Linear(16, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 8)).eval()
        folder = tmp / f"mlp{i}"
        wasm_torch.compile(model, (torch.randn(4, 16),), folder, dynamic_shapes=({0: Dim("batch", min=1, max=16)},))
        sign_artifact(folder, [key])
        folders.append(folder)
    return folders, tmp / "pub.pub"


def run(tmp: Path, name: str, folders: list[Path], pub: Path, a: argparse.Namespace, arm: str) -> dict:
    from wasm_torch.net.submit import submit_job

    run_dir = tmp / name
    run_dir.mkdir()
    ckey = keyfile(run_dir, "coord")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    growth = arm != "off"
    params = {"poll_s": 0.05, "heartbeat_s": a.heartbeat, "growth_period_s": a.period if growth else 0.0,
              "growth_replicas": a.homes, "lease_s": 60, "growth_planner": arm if growth else "gray-scott"}  # fmt: skip
    args = [WASM_TORCH, "coordinator", "--db", str(run_dir / "c.db"), "--port", str(port), "--key", str(ckey),
            "--trust", str(pub)] + [x for k, v in params.items() for x in ("--param", f"{k}={v}")]  # fmt: skip
    procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    nodes: list[subprocess.Popen] = []
    try:
        http, owner = funded_owner(url, ckey)
        rng = np.random.default_rng(0)
        jobs = []

        def submit(f: Path, tasks: int) -> None:
            x = rng.standard_normal((tasks, 16)).astype(np.float32)
            jobs.append(submit_job(http, owner, f, [x], batch=1)["job"])

        if a.workload == "batch":
            for f in folders:  # one big job per artifact, all at once
                submit(f, a.tasks)
        t0 = time.perf_counter()
        for i in range(a.nodes):
            cmd = [WASM_TORCH, "node", "--coordinator", url, "--key", str(keyfile(run_dir, f"n{i}")), "--trust",
                   str(pub), "--work-dir", str(run_dir / f"w{i}"), "--cache-artifacts", str(a.cache),
                   "--idle-exit", "3", "--name", f"n{i}"] + ([] if growth or a.report else ["--no-growth"])  # fmt: skip
            nodes.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        procs += nodes
        if a.workload == "stream":  # small jobs for random artifacts, arriving over time
            for k in range(a.jobs):
                submit(folders[int(rng.integers(len(folders)))], a.job_tasks)
                time.sleep(max(0.0, t0 + (k + 1) * a.gap - time.perf_counter()))
        while not all(http.get(f"/v1/jobs/{j}")["status"] == "done" for j in jobs):
            if time.perf_counter() - t0 > a.timeout:
                raise TimeoutError(f"{name}: jobs not done within {a.timeout} s")
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        status = http.get("/v1/status")
        summaries = []
        for p in nodes:
            out, _ = p.communicate(timeout=60)
            summaries.append(json.loads(out[out.index("{"):]))
        counts = {k: sum(s["artifacts"][k] for s in summaries) for k in summaries[0]["artifacts"]}
        acked = sum(s["acked"] for s in summaries)
        return {"arm": arm, "wall_s": wall, "acked": acked, **counts,
                "cold_loads_per_result": counts["loads"] / max(1, acked),
                "plans": status["growth"]["plan"], "jobs_done": len(jobs)}  # fmt: skip
    finally:
        stop_all(procs)


def plan_cost(sizes: tuple[int, ...] = (6, 1000, 3000), repeats: int = 3) -> list[dict]:
    """Seconds for one round of planning off the request path: the node graph (three coordinators'
    RTTs per node) plus one Gray-Scott plan for 8 hot artifacts with a few busy nodes each; median."""
    from wasm_torch.net.growth import _jitter, node_graph, rank

    out = []
    for n in sizes:
        rtt = {f"n{i}": {"c1": float(i % 97), "c2": float(i * 7 % 89), "c3": float(i * 13 % 83)} for i in range(n)}
        demand = {a: {v: _jitter(a, v) + (5.0 if i % 50 == 0 else 0.0) for i, v in enumerate(rtt)} for a in "ABCDEFGH"}
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rank(node_graph(rtt, 4), demand, {})
            times.append(time.perf_counter() - t0)
        out.append({"nodes": n, "artifacts": 8, "seconds": float(np.median(times))})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=6)
    ap.add_argument("--artifacts", type=int, default=6)
    ap.add_argument("--cache", type=int, default=2, help="artifacts a node holds at once")
    ap.add_argument("--homes", type=int, default=2, help="growth_replicas: nodes that keep each hot artifact")
    ap.add_argument("--workload", choices=("stream", "batch"), default="stream",
                    help="stream: --jobs jobs of --job-tasks tasks, one every --gap s, each for a random artifact; "
                    "batch: one job of --tasks tasks per artifact, all submitted at once")  # fmt: skip
    ap.add_argument("--jobs", type=int, default=120)
    ap.add_argument("--job-tasks", type=int, default=4)
    ap.add_argument("--gap", type=float, default=0.15, help="seconds between stream jobs")
    ap.add_argument("--tasks", type=int, default=60, help="batch: tasks per artifact")
    ap.add_argument("--hidden", type=int, default=512, help="MLP width: the size of what a cold load fetches")
    ap.add_argument("--period", type=float, default=1.0, help="growth_period_s")
    ap.add_argument("--heartbeat", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {ARMS}; the first is the reference")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--report", action="store_true", help="nodes report holdings in the off arm too")
    ap.add_argument("--plan-cost", action="store_true", help="only time a round of planning at 6, 1,000, 3,000 nodes")
    ap.add_argument("--quick", action="store_true", help="1 repeat, a third of the jobs or tasks")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "collective_growth_live.json"))
    a = ap.parse_args()
    if a.quick:
        a.repeats, a.tasks, a.jobs = 1, a.tasks // 3, a.jobs // 3
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if a.plan_cost:
        save({"command": "python bench/collective_growth_live.py --plan-cost", "load_avg_start": os.getloadavg(),
              "cpus": os.cpu_count(), "runs": plan_cost()}, a.out)  # fmt: skip
        return
    out: dict = {"command": "python bench/collective_growth_live.py " + " ".join(sys.argv[1:]), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "machine": platform.machine(), "load_avg_start": os.getloadavg(),
                 "config": {k: v for k, v in vars(a).items() if k != "out"}, "runs": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="wt-growth-live-") as t:
        tmp = Path(t)
        folders, pub = build(tmp, a.artifacts, a.hidden)
        out["artifact_bytes"] = sum(p.stat().st_size for p in folders[0].iterdir())
        arms = a.arms.split(",")
        for r in range(a.repeats):
            for arm in arms if r % 2 == 0 else arms[::-1]:  # interleaved, alternating order
                got = run(tmp, f"r{r}-{arm}", folders, pub, a, arm)
                out["runs"].append(got)
                print(json.dumps(got), flush=True)
    summary: dict = {}
    for arm in arms:
        rs = [r for r in out["runs"] if r["arm"] == arm]
        summary[arm] = {k: float(np.median([r[k] for r in rs])) for k in ("cold_loads_per_result", "loads", "load_ms", "wall_s")}
        for k in ("cold_loads_per_result", "load_ms", "wall_s"):  # ratios to the plain scheduler, same run
            summary[arm][k + "_ratio"] = summary[arm][k] / max(1e-9, summary[arms[0]][k])
    out["median"] = summary
    print(json.dumps(summary, indent=1))
    save(out, a.out)


if __name__ == "__main__":
    main()
