"""Serving throughput of all-MiniLM-L6-v2 (seq 128) over loopback, with and without dynamic batching.

    PYTHONPATH=. python bench/serve_throughput.py                 # full run
    PYTHONPATH=. python bench/serve_throughput.py --quick --note "busy machine"

The model is a sentence embedder (MiniLM + masked mean pooling + L2 normalisation, output
[batch, 384]) compiled once with a dynamic batch dim (max 16) into out/bench/ and reused. Two
`wasm-torch serve` processes (uvicorn) run side by side on 127.0.0.1 — `--max-batch 1` (no batching)
and `--max-batch 8` — and `bench/loadgen.py`, a separate process with N keep-alive connections,
drives them in turn at each concurrency (interleaved, `--rounds` times; medians are reported).
Batch sizes come from the server's /metrics (histogram deltas per run). Before any load, one
answer is checked against PyTorch. Also measured in process (bench/serve_costs.py): the guard's
cost per request (strict JSON + v2/spec checks + anomaly score vs a plain json.loads + numpy), the
integrity cost at load (sha256 only vs + Ed25519 & ML-DSA-65 signatures vs + AES-256-GCM weights)
and the wasm time per row at batch 1, 4 and 8. Writes bench/results/serve_throughput.json and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from serve_costs import guard_overhead, integrity_overhead, per_row_ms

ROOT = Path(__file__).resolve().parent.parent
MAX_BATCH_COMPILED, SEQ = 16, 128


def sentence_embedder():
    import torch

    from wasm_torch.zoo import minilm

    class SentenceEmbedder(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            h = self.m(input_ids, attention_mask)
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * w).sum(1) / w.sum(1).clamp(min=1e-9)
            return e / torch.sqrt((e * e).sum(-1, keepdim=True)).clamp(min=1e-12)

    return SentenceEmbedder(minilm()[0]).eval()


def build(work: Path):
    """(torch model, models dir holding the 'minilm' artifact), compiling only if it is missing."""
    import torch
    from torch.export import Dim

    import wasm_torch

    torch.set_num_threads(1)
    model = sentence_embedder()
    art = work / "models" / "minilm"
    if not (art / "manifest.json").exists():
        ids = torch.randint(1000, 20000, (2, SEQ), generator=torch.Generator().manual_seed(0))
        b = Dim("batch", min=1, max=MAX_BATCH_COMPILED)
        print(f"compiling MiniLM sentence embedder (seq {SEQ}, batch 1..{MAX_BATCH_COMPILED}) to {art} ...")
        wasm_torch.compile(
            model,
            (ids, torch.ones_like(ids)),
            art,
            dynamic_shapes={"input_ids": {0: b}, "attention_mask": {0: b}},
        )
    return model, art.parent


def bodies(n: int = 32) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        ids = np.concatenate([[101], rng.integers(1000, 20000, SEQ - 2), [102]]).astype(np.int64)
        out.append(
            {
                "inputs": [
                    {"name": "input_ids", "shape": [1, SEQ], "datatype": "INT64", "data": ids.tolist()},
                    {"name": "attention_mask", "shape": [1, SEQ], "datatype": "INT64", "data": [1] * SEQ},
                ]
            }
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port: int, path: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET"
    )
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """One `wasm-torch serve` subprocess on loopback (stopped by its own pid)."""

    def __init__(self, models: Path, log: Path, replicas: int, max_batch: int, delay_ms: float) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "wasm_torch.cli", "serve", str(models), "--port", str(self.port)]
        cmd += ["--replicas", str(replicas), "--max-batch", str(max_batch), "--batch-delay-ms", str(delay_ms)]
        cmd += ["--no-grpc"]  # two servers side by side: gRPC's default port would clash
        shown = [os.path.relpath(c, ROOT) if c == str(models) else c for c in cmd[3:]]
        self.command = "wasm-torch " + " ".join(shown)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300.0) -> None:
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if http(self.port, "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready after {timeout} s; see {self.log.name}")

    def batch_histogram(self) -> dict[str, float]:
        text = http(self.port, "/metrics")[1].decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("wasm_torch_inference_batch_size_") and 'model="minilm"' in line:
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def batch_stats(before: dict[str, float], after: dict[str, float]) -> dict:
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    count = d.get('wasm_torch_inference_batch_size_count{model="minilm"}', 0.0)
    total = d.get('wasm_torch_inference_batch_size_sum{model="minilm"}', 0.0)
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), v)
        for k, v in d.items()
        if "_bucket" in k and 'le="+Inf"' not in k
    )
    dist, prev = {}, 0.0
    for le, cum in buckets:
        if cum - prev > 0:
            dist[f"<={int(le)}"] = int(cum - prev)
        prev = cum
    return {"batches": int(count), "mean_batch": round(total / count, 2) if count else 0.0, "histogram": dist}


def loadgen(port: int, bodies_file: Path, concurrency: int, requests: int, duration: float) -> dict:
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "loadgen.py"),
        "--port",
        str(port),
        "--bodies",
        str(bodies_file),
    ]
    cmd += ["--path", "/v2/models/minilm/infer", "--concurrency", str(concurrency)]
    cmd += ["--requests", str(requests), "--duration", str(duration)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + 120)
    return json.loads(out.stdout)


def summary(mode: str, concurrency: int, rs: list[dict]) -> dict:
    """Medians over the rounds of one (mode, concurrency) cell."""

    def med(f) -> float:
        return round(statistics.median(f(r) for r in rs), 2)

    return {
        "mode": mode,
        "concurrency": concurrency,
        "rounds": len(rs),
        "throughput_rps": med(lambda r: r["throughput_rps"]),
        "p50_ms": med(lambda r: r["latency_ms"]["p50"]),
        "p99_ms": med(lambda r: r["latency_ms"]["p99"]),
        "mean_batch": med(lambda r: r["batches"]["mean_batch"]),
        "answers": sum(r["requests"] for r in rs),
        "non_200": sum(r["requests"] - r["ok"] for r in rs),
        "runs": rs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", type=Path, default=ROOT / "out" / "bench" / "serve_throughput")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_throughput.json")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=400, help="answers per run (bounded by --duration)")
    ap.add_argument("--duration", type=float, default=90.0, help="seconds per run at most")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved sweeps; medians are reported")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--batch-delay-ms", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true", help="1 round of 48 requests per run: a smoke test")
    ap.add_argument("--note", default="", help="e.g. 'busy machine': stored with the results")
    a = ap.parse_args()
    if a.quick:
        a.requests, a.rounds, a.duration = 48, 1, 60.0
    levels = [int(c) for c in a.concurrency.split(",")]
    a.work_dir.mkdir(parents=True, exist_ok=True)
    model, models = build(a.work_dir)
    reqs = bodies()
    bodies_file = a.work_dir / "bodies.jsonl"
    bodies_file.write_text("".join(json.dumps(b) + "\n" for b in reqs))
    modes = {"no batching": 1, "batching": a.max_batch}
    servers = {
        m: Server(models, a.work_dir / f"server-{b}.log", a.replicas, b, a.batch_delay_ms)
        for m, b in modes.items()
    }
    runs: dict[tuple[str, int], list[dict]] = {}
    try:
        for s in servers.values():
            s.wait_ready()
        import torch

        x = reqs[0]["inputs"]
        ids, mask = (torch.tensor(t["data"]).reshape(1, SEQ) for t in x)
        want = model(ids, mask).detach().numpy().ravel()
        for name, s in servers.items():  # correctness first, then warm-up
            status, raw = http(s.port, "/v2/models/minilm/infer", reqs[0])
            got = np.array(json.loads(raw)["outputs"][0]["data"], np.float32)
            cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
            assert status == 200 and cos > 0.9999, (name, status, cos)
            loadgen(s.port, bodies_file, a.replicas, 2 * a.replicas, 60)
        for r in range(a.rounds):
            for i, c in enumerate(levels):
                order = list(servers.items())  # alternate which mode goes first, against order effects
                for name, s in order if (r + i) % 2 == 0 else order[::-1]:
                    before = s.batch_histogram()
                    res = loadgen(s.port, bodies_file, c, a.requests, a.duration)
                    res["batches"] = batch_stats(before, s.batch_histogram())
                    runs.setdefault((name, c), []).append(res)
                    print(
                        f"round {r + 1} {name:12} c={c:<3} {res['throughput_rps']:7.2f} req/s  "
                        f"p50 {res['latency_ms']['p50']:8.1f} ms  p99 {res['latency_ms']['p99']:8.1f} ms  "
                        f"mean batch {res['batches']['mean_batch']}",
                        flush=True,
                    )
        commands = {name: s.command for name, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()
    rows = [
        summary(name, c, rs)
        for (name, c), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0] != "no batching"))
    ]
    guard = guard_overhead(reqs[0], 300 if a.quick else 2000, 3 if a.quick else 7)
    integrity = integrity_overhead(models, 3 if a.quick else 7)
    per_row = per_row_ms(models, (1, 4, 8), 3 if a.quick else 7)
    result = {
        "command": "PYTHONPATH=. " + shlex.join(["python", "bench/serve_throughput.py", *sys.argv[1:]]),
        "note": a.note,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "model": f"all-MiniLM-L6-v2 sentence embedder, seq {SEQ}, compiled batch 1..{MAX_BATCH_COMPILED}",
        "servers": commands,
        "settings": {
            "requests": a.requests,
            "duration_s": a.duration,
            "rounds": a.rounds,
            "replicas": a.replicas,
            "max_batch": a.max_batch,
            "batch_delay_ms": a.batch_delay_ms,
        },
        "rows": rows,
        "guard_overhead": guard,
        "integrity_overhead": integrity,
        "wasm_ms_per_row_by_batch": per_row,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(
        f"\n{'mode':<13}{'conc':>5}{'req/s':>9}{'p50 ms':>10}{'p99 ms':>10}{'mean batch':>12}{'non-200':>9}"
    )
    for r in rows:
        print(
            f"{r['mode']:<13}{r['concurrency']:>5}{r['throughput_rps']:>9.2f}{r['p50_ms']:>10.1f}"
            f"{r['p99_ms']:>10.1f}{r['mean_batch']:>12.2f}{r['non_200']:>9}"
        )
    print(
        f"guard per request: {guard['plain_us']} µs plain vs {guard['guarded_us']} µs guarded "
        f"(+{guard['overhead_us']} µs)"
    )
    print(
        "load time: "
        + ", ".join(f"{k} {v} ms" for k, v in integrity["load_ms"].items())
        + f"; signature check alone {integrity['signature_check_ms']} ms"
    )
    print("wasm ms per row by batch size (in process): " + ", ".join(f"{b}: {v}" for b, v in per_row.items()))
    print(f"wrote {a.out}" + (f"  ({a.note})" if a.note else ""))
    return 0 if all(r["non_200"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
