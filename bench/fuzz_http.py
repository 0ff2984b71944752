"""HTTP fuzzing of a real `wasm-torch serve` process: every answer must be below 500.

    PYTHONPATH=. python bench/fuzz_http.py                      # 20,000 requests + 1,000 raw, seed 0
    PYTHONPATH=. python bench/fuzz_http.py --requests 2000 --raw 200 --seed 3

Serves two compiled models (an FP32 MLP, an INT64 token model whose bad ids trap) from a temporary
folder, reads their metadata, and sends the cases of `wasm_torch.serve.sim.fuzz.HttpFuzzer(seed)`
from `--clients` threads over keep-alive connections (valid requests, mutations of valid ones,
header/route/outputs mutations, random documents), then `--raw` byte-level requests on fresh
sockets (malformed request lines, header floods, chunked bodies, pipelining). Afterwards: the
server must still be ready, and its own metrics must show no 5xx. Writes
bench/results/fuzz_http.json: statuses, 5xx count (and the first 20 cases that got one), the
server's RSS before, after every `--rss-every` cases and after, duration, the exact command.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from serve_process import ROOT, Server, compile_models, machine

from wasm_torch.serve.sim.fuzz import Case, HttpFuzzer, RawCase


def send(client: httpx.Client, base: str, case: Case) -> int | str:
    try:
        return client.request(
            case.method, base + case.path, content=case.body, headers=case.header_bytes()
        ).status_code
    except httpx.LocalProtocolError:
        return "not_sendable"  # httpx itself refuses the case (e.g. an illegal header value)
    except httpx.HTTPError as e:
        return f"client_error:{type(e).__name__}"


def send_raw(port: int, case: RawCase) -> int | str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(case.data)
            sock.settimeout(15)
            head = sock.recv(64)
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except TimeoutError:
        return "timeout"
    if not head:
        return "closed"
    return int(head[9:12]) if head.startswith(b"HTTP/1.") and head[9:12].isdigit() else "not_http"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--raw", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rss-every", type=int, default=2500, help="sample the server's RSS after this many")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz_http.json")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wt-fuzz-"))
    models = compile_models(work / "models")
    flags = ["--replicas", "2", "--read-timeout", "5"]
    server = Server(models, work / "server.log", *flags)
    t0 = time.perf_counter()
    try:
        server.wait_ready()
        rss_before = server.rss_bytes()
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=a.clients)) as c:
            meta = {n: c.get(f"{server.url}/v2/models/{n}").json() for n in ("mlp", "tok")}
            fz = HttpFuzzer(meta, seed=a.seed)
            cases = list(fz.cases(a.requests))
            raws = list(fz.raw_cases(a.raw))
            codes: list[int | str] = []
            rss_mb: list[float] = []  # the server's RSS after every --rss-every cases: flat, or a leak?
            with ThreadPoolExecutor(a.clients) as pool:
                for start in range(0, len(cases), a.rss_every):
                    part = cases[start : start + a.rss_every]
                    codes += pool.map(lambda case: send(c, server.url, case), part)
                    rss_mb.append(round(server.rss_bytes() / 2**20, 1))
                raw_codes = list(pool.map(lambda case: send_raw(server.port, case), raws))
            ready = c.get(f"{server.url}/v2/health/ready").status_code
        rss_after = server.rss_bytes()
        text = server.metrics()
    finally:
        server.stop()
    elapsed = time.perf_counter() - t0
    bad = [(case.label, code, case.method, case.path[:80], case.body[:160].decode("utf-8", "replace"))
           for case, code in zip(cases, codes, strict=True) if isinstance(code, int) and code >= 500]  # fmt: skip
    raw_bad = [
        (case.label, code)
        for case, code in zip(raws, raw_codes, strict=True)
        if isinstance(code, int) and code >= 500
    ]
    server_5xx = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("wasm_torch_inference_requests_total{") and 'code="5' in line
    )
    result = {
        "command": "PYTHONPATH=. python bench/fuzz_http.py " + " ".join(sys.argv[1:]),
        "server": "wasm-torch serve <2 models> " + " ".join(flags),
        "seed": a.seed,
        "requests": len(cases),
        "raw_requests": len(raws),
        "statuses": {str(k): v for k, v in sorted(Counter(map(str, codes)).items())},
        "raw_outcomes": {str(k): v for k, v in sorted(Counter(map(str, raw_codes)).items())},
        "kinds": dict(sorted(Counter(c.label.split(":")[0] for c in cases).items())),
        "http_5xx": len(bad),
        "raw_5xx": len(raw_bad),
        "server_metrics_5xx": server_5xx,
        "first_5xx": bad[:20] + raw_bad[:20],
        "ready_after": ready,
        "rss_mb_before": round(rss_before / 2**20, 1),
        "rss_mb_every": {"cases": a.rss_every, "mb": rss_mb},
        "rss_mb_after": round(rss_after / 2**20, 1),
        "seconds": round(elapsed, 1),
        "machine": machine(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "first_5xx"}, indent=1))
    return 0 if not bad and not raw_bad and ready == 200 and server_5xx == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
