"""What the HTTP limits and the off-loop encoding cost and buy, on a real server process.

    PYTHONPATH=. python bench/serve_limits.py            # writes bench/results/serve_limits.json

1. Header flood (as reported: 8 connections sending 64 MB headers added 550 MB RSS and 15 s latency):
   8 threads each try to send a 64 MB header; reported: bytes each got to send before the server
   cut it off (431 at `--max-header-kb`), the server's RSS growth, and /v2/health/live latency
   during the flood beside before it.
2. Slowloris: 200 connections dribble a header line every 0.5 s; reported: how many the server
   closed within `--read-timeout` + 1.5 s, and health latency meanwhile.
3. Big answers and the event loop: a model with a [rows, 8192] FP32 output; 2 clients keep asking
   for 64-row answers (~13 MB of JSON each) while a prober measures /v2/health/live. Two servers,
   run one after the other: encoding in a worker thread in chunks (the default) vs on the event loop
   (`offload_bytes` huge). Reported: the probe's p50/p99/max latency for each, and their ratio.

Timings depend on the machine and its load (recorded in the JSON): compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from serve_process import ROOT, Server, compile_models, free_port, machine


def probe_latencies(url: str, stop: threading.Event, every_s: float = 0.02) -> list[float]:
    out: list[float] = []
    with httpx.Client(timeout=120) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            c.get(url + "/v2/health/live")
            out.append(time.perf_counter() - t0)
            time.sleep(every_s)
    return out


def summary(lat: list[float]) -> dict:
    if not lat:
        return {}
    return {
        "n": len(lat),
        "p50_ms": round(statistics.median(lat) * 1e3, 2),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 2),
        "max_ms": round(max(lat) * 1e3, 2),
    }


def while_probing(url: str, work, at_least_s: float = 3.0) -> tuple[object, list[float]]:
    """Run `work()` while probing health; probe for at least `at_least_s` from the start."""
    stop = threading.Event()
    lat: list[float] = []
    t = threading.Thread(target=lambda: lat.extend(probe_latencies(url, stop)))
    end = time.monotonic() + at_least_s
    t.start()
    try:
        result = work()
    finally:
        time.sleep(max(0.0, end - time.monotonic()))
        stop.set()
        t.join()
    return result, lat


def header_flood(server: Server) -> dict:
    _, before = while_probing(server.url, lambda: None)
    rss0 = server.rss_bytes()
    sent: list[int] = []

    def flood() -> None:
        n = 0
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
                s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: ")
                chunk = b"a" * 65536
                while n < 64 << 20:
                    s.sendall(chunk)
                    n += len(chunk)
        except OSError:
            pass
        sent.append(n)

    def run() -> None:
        threads = [threading.Thread(target=flood) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    _, during = while_probing(server.url, run)
    return {
        "bytes_sent_before_cut_off": sorted(sent),
        "rss_growth_mb": round((server.rss_bytes() - rss0) / 2**20, 1),
        "health_before": summary(before),
        "health_during": summary(during),
    }


def slowloris(server: Server, read_timeout: float, n: int = 200) -> dict:
    closed_after: list[float] = []

    def one() -> None:
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
                s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")
                for i in range(int(4 * read_timeout)):
                    time.sleep(0.5)
                    s.sendall(b"X-%d: y\r\n" % i)
        except OSError:
            pass
        closed_after.append(time.monotonic() - t0)

    def run() -> None:
        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    _, during = while_probing(server.url, run)
    return {
        "connections": n,
        "closed_within_timeout_plus_1_5s": sum(1 for s in closed_after if s <= read_timeout + 1.5),
        "closed_after_s_max": round(max(closed_after), 2),
        "health_during": summary(during),
    }


def serve_wide(path: str, port: str, offload: str) -> None:
    """Child mode: serve the wide model with a given offload threshold (not a CLI flag)."""
    from wasm_torch.serve import ServeSettings, serve

    serve(
        path,
        port=int(port),
        settings=ServeSettings(replicas=1, offload_bytes=int(offload)),
        log_level="warning",
    )


def big_answers(wide: Path, work: Path, offload: int, seconds: float) -> dict:
    port = free_port()
    log = (work / f"wide-{offload}.log").open("wb")
    cmd = [sys.executable, __file__, "--serve-wide", str(wide), str(port), str(offload)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/v2/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
        body = {
            "inputs": [{"name": "input", "shape": [64, 4], "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        sizes: list[int] = []

        def client(stop_at: float) -> None:
            with httpx.Client(timeout=120) as c:
                while time.monotonic() < stop_at:
                    r = c.post(url + "/v2/models/wide/infer", json=body)
                    sizes.append(len(r.content) if r.status_code == 200 else -r.status_code)

        def run() -> None:
            stop_at = time.monotonic() + seconds
            threads = [threading.Thread(target=client, args=(stop_at,)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        _, lat = while_probing(url, run)
        rss = psutil.Process(proc.pid).memory_info().rss
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    return {
        "offload_bytes": offload,
        "answers": len(sizes),
        "answer_mb": round(max(sizes) / 2**20, 2) if sizes else None,
        "errors": sum(1 for s in sizes if s < 0),
        "health": summary(lat),
        "rss_mb": round(rss / 2**20, 1),
    }


def compile_wide(root: Path) -> Path:
    import torch

    import wasm_torch

    if not (root / "wide" / "manifest.json").exists():
        torch.manual_seed(0)
        m = torch.nn.Linear(4, 8192).eval()
        batch = torch.export.Dim("batch", min=1, max=64)
        wasm_torch.compile(m, (torch.randn(2, 4),), root / "wide", dynamic_shapes=({0: batch},))
    return root


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-wide":
        serve_wide(*sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="per big-answer server")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_limits.json")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wt-limits-"))
    models = compile_models(work / "models")
    read_timeout = 2.0
    flags = ["--replicas", "1", "--max-header-kb", "16", "--read-timeout", str(read_timeout)]
    server = Server(models, work / "server.log", *flags)
    try:
        server.wait_ready()
        flood = header_flood(server)
        loris = slowloris(server, read_timeout)
    finally:
        server.stop()
    wide = compile_wide(work / "models") / "wide"
    on = big_answers(wide, work, 64 * 1024, a.seconds)
    off = big_answers(wide, work, 1 << 40, a.seconds)
    ratio = (
        round(off["health"]["p99_ms"] / on["health"]["p99_ms"], 2) if on["health"] and off["health"] else None
    )
    result = {
        "command": "PYTHONPATH=. python bench/serve_limits.py " + " ".join(sys.argv[1:]),
        "server": "wasm-torch serve <2 models> " + " ".join(flags),
        "header_flood": flood,
        "slowloris": loris,
        "big_answers": {"offloaded": on, "on_event_loop": off, "health_p99_loop_over_offloaded": ratio},
        "machine": machine(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
