"""KServe v2 encodings compared: JSON vs the binary tensor extension vs gRPC, on all-MiniLM-L6-v2
(seq 128 sentence embeddings, output [1, 384]) served by one real `wasm-torch serve` process.

    PYTHONPATH=. python bench/serve_kserve.py                  # 3 interleaved rounds, c = 1, 4, 16
    PYTHONPATH=. python bench/serve_kserve.py --quick          # 1 round of 40 requests: a smoke test

One server (REST and gRPC ports, 2 replicas, batching off so that one request is one wasm call)
answers `bench/serve_kserve_load.py`, a separate process, in each encoding in turn (the order
rotates every round). Per run, from the server's own histograms (deltas of /metrics): server time
per request (from the request reaching the app to its answer being built), queue time and wasm
time (the module call). Protocol overhead = server time - queue time - wasm time: decoding,
validation, the anomaly score, hand-off to the worker thread and encoding. The goal: binary and
gRPC add <= 5 % of the wasm time at concurrency 1. Client latency minus wasm time (transport and
the client included) is reported too. One answer per encoding is checked against PyTorch first.
Writes bench/results/serve_kserve.json and bench/results/serve_kserve.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from serve_process import ROOT, Server, machine
from serve_throughput import SEQ, build

PROTOCOLS = ("json", "binary", "grpc")
MODEL = "minilm"


def requests_npz(path: Path, n: int = 32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = np.stack([np.concatenate([[101], rng.integers(1000, 20000, SEQ - 2), [102]]) for _ in range(n)])
    arrays = {"input_ids": ids.astype(np.int64)[:, None, :], "attention_mask": np.ones((n, 1, SEQ), np.int64)}
    np.savez(path, **arrays)
    return arrays


def histograms(text: str) -> dict[str, float]:
    """sum and count of the request, queue and compute histograms for the model."""
    out = {}
    for line in text.splitlines():
        for name in ("request", "queue", "compute"):
            prefix = f"wasm_torch_inference_{name}_duration_seconds_"
            if line.startswith(prefix) and f'model="{MODEL}"' in line and ("_sum{" in line or "_count{" in line):
                key = name + ("_sum" if "_sum{" in line else "_count")
                out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def per_request_ms(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    out = {}
    for name in ("request", "queue", "compute"):
        n = d.get(name + "_count", 0.0)
        out[name] = 1e3 * d.get(name + "_sum", 0.0) / n if n else float("nan")
    return {"server_ms": out["request"], "queue_ms": out["queue"], "wasm_ms": out["compute"]}


def load(s: Server, grpc_port: int, protocol: str, npz: Path, c: int, n: int, duration: float) -> dict:
    port = grpc_port if protocol == "grpc" else s.port
    cmd = [sys.executable, str(ROOT / "bench" / "serve_kserve_load.py"), "--protocol", protocol,
           "--port", str(port), "--model", MODEL, "--inputs", str(npz), "--concurrency", str(c),
           "--requests", str(n), "--duration", str(duration)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + 120, env=env)
    return json.loads(out.stdout)


def check_answers(s: Server, grpc_port: int, model, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Cosine similarity to PyTorch of one answer per encoding (tritonclient as the client)."""
    import torch
    import tritonclient.grpc as tg
    import tritonclient.http as th

    ids, mask = arrays["input_ids"][0], arrays["attention_mask"][0]
    want = model(torch.from_numpy(ids), torch.from_numpy(mask)).detach().numpy().ravel()
    out = {}
    for protocol in PROTOCOLS:
        mod = tg if protocol == "grpc" else th
        client = mod.InferenceServerClient(f"127.0.0.1:{grpc_port if protocol == 'grpc' else s.port}")
        inputs = []
        for name, a in (("input_ids", ids), ("attention_mask", mask)):
            i = mod.InferInput(name, list(a.shape), "INT64")
            if protocol == "json":
                i.set_data_from_numpy(a, binary_data=False)
            else:
                i.set_data_from_numpy(a)
            inputs.append(i)
        outputs = [th.InferRequestedOutput("output_0", binary_data=False)] if protocol == "json" else None
        got = client.infer(MODEL, inputs, outputs=outputs).as_numpy("output_0").ravel()
        out[protocol] = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert out[protocol] > 0.9999, (protocol, out[protocol])
    return out


def summary(rs: list[dict]) -> dict:
    def med(key: str, sub: str | None = None) -> float:
        vals = [r[key][sub] if sub else r[key] for r in rs]
        return round(statistics.median(vals), 3)

    row = {
        "rounds": len(rs),
        "throughput_rps": med("throughput_rps"),
        "p50_ms": med("latency_ms", "p50"),
        "p99_ms": med("latency_ms", "p99"),
        "server_ms": med("server", "server_ms"),
        "queue_ms": med("server", "queue_ms"),
        "wasm_ms": med("server", "wasm_ms"),
        "request_bytes": rs[0]["request_bytes"],
        "non_ok": sum(r["requests"] - r["ok"] for r in rs),
    }
    protocol = [r["server"]["server_ms"] - r["server"]["queue_ms"] - r["server"]["wasm_ms"] for r in rs]
    client = [r["latency_ms"]["mean"] - r["server"]["queue_ms"] - r["server"]["wasm_ms"] for r in rs]
    ratio = [p / r["server"]["wasm_ms"] for p, r in zip(protocol, rs, strict=True)]
    row["protocol_overhead_ms"] = round(statistics.median(protocol), 3)
    row["protocol_overhead_pct_of_wasm"] = round(100 * statistics.median(ratio), 2)
    row["client_overhead_ms"] = round(statistics.median(client), 3)
    row["runs"] = rs
    return row


def plot(rows: dict[str, dict[int, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(next(iter(rows.values())))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    width = 0.27
    for k, protocol in enumerate(PROTOCOLS):
        xs = [i + (k - 1) * width for i in range(len(levels))]
        axes[0].bar(xs, [rows[protocol][c]["throughput_rps"] for c in levels], width, label=protocol)
        axes[1].bar(xs, [rows[protocol][c]["p50_ms"] for c in levels], width, label=protocol)
        axes[1].scatter(xs, [rows[protocol][c]["p99_ms"] for c in levels], marker="_", s=200, color="k")
        axes[2].bar(xs, [rows[protocol][c]["protocol_overhead_pct_of_wasm"] for c in levels], width, label=protocol)
    for ax, title in zip(axes, ("throughput (req/s)", "latency p50 (bars), p99 (ticks), ms",
                                "protocol overhead, % of wasm time"), strict=True):  # fmt: skip
        ax.set_xticks(range(len(levels)), [f"c={c}" for c in levels])
        ax.set_title(title, fontsize=10)
    axes[2].axhline(5, color="r", linewidth=0.8, linestyle="--")
    axes[0].legend(fontsize=8)
    fig.suptitle("all-MiniLM-L6-v2, seq 128, one wasm-torch serve process", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", type=Path, default=ROOT / "out" / "bench" / "serve_throughput")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_kserve.json")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=200, help="answers per run (bounded by --duration)")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 round of 40 requests per run")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    if a.quick:
        a.requests, a.rounds = 40, 1
    levels = [int(c) for c in a.concurrency.split(",")]
    a.work_dir.mkdir(parents=True, exist_ok=True)
    model, models = build(a.work_dir)
    npz = a.work_dir / "kserve_inputs.npz"
    arrays = requests_npz(npz)
    from serve_process import free_port

    grpc_port = free_port()
    flags = ["--replicas", str(a.replicas), "--max-batch", "1", "--grpc-port", str(grpc_port)]
    s = Server(models, a.work_dir / "server-kserve.log", *flags)
    runs: dict[tuple[str, int], list[dict]] = {}
    try:
        s.wait_ready()
        cosine = check_answers(s, grpc_port, model, arrays)
        for protocol in PROTOCOLS:  # warm-up
            load(s, grpc_port, protocol, npz, a.replicas, 4 * a.replicas, 60)
        for r in range(a.rounds):
            for i, c in enumerate(levels):
                shift = (r + i) % len(PROTOCOLS)
                for protocol in PROTOCOLS[shift:] + PROTOCOLS[:shift]:
                    before = histograms(s.metrics())
                    res = load(s, grpc_port, protocol, npz, c, a.requests, a.duration)
                    res["server"] = per_request_ms(before, histograms(s.metrics()))
                    runs.setdefault((protocol, c), []).append(res)
                    srv = res["server"]
                    print(f"round {r + 1} {protocol:6} c={c:<3} {res['throughput_rps']:7.2f} req/s  "
                          f"p50 {res['latency_ms']['p50']:7.1f}  p99 {res['latency_ms']['p99']:7.1f} ms  "
                          f"server {srv['server_ms']:.2f} = queue {srv['queue_ms']:.2f} + wasm {srv['wasm_ms']:.2f} + "
                          f"{srv['server_ms'] - srv['queue_ms'] - srv['wasm_ms']:.3f} ms", flush=True)  # fmt: skip
    finally:
        s.stop()
    rows = {p: {c: summary(runs[(p, c)]) for c in levels} for p in PROTOCOLS}
    result = {
        "command": "PYTHONPATH=. " + shlex.join(["python", "bench/serve_kserve.py", *sys.argv[1:]]),
        "note": a.note,
        "machine": machine(),
        "model": f"all-MiniLM-L6-v2 sentence embedder, seq {SEQ}, output [1, 384]",
        "server": " ".join(s.command),
        "cosine_to_torch": cosine,
        "settings": {"requests": a.requests, "rounds": a.rounds, "replicas": a.replicas, "max_batch": 1},
        "rows": {p: {str(c): v for c, v in by_c.items()} for p, by_c in rows.items()},
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    plot(rows, a.out.with_suffix(".png"))
    print(f"\n{'encoding':<8}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'wasm ms':>9}"
          f"{'protocol ms':>13}{'% of wasm':>11}{'bytes in':>10}")  # fmt: skip
    for c in levels:
        for p in PROTOCOLS:
            v = rows[p][c]
            print(f"{p:<8}{c:>5}{v['throughput_rps']:>9.2f}{v['p50_ms']:>9.1f}{v['p99_ms']:>9.1f}{v['wasm_ms']:>9.2f}"
                  f"{v['protocol_overhead_ms']:>13.3f}{v['protocol_overhead_pct_of_wasm']:>11.2f}"
                  f"{v['request_bytes']:>10}")  # fmt: skip
    print(f"wrote {a.out} and {a.out.with_suffix('.png')}")
    return 0 if all(v["non_ok"] == 0 for by_c in rows.values() for v in by_c.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
