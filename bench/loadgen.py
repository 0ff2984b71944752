"""A closed-loop HTTP load generator, run as its own process so it does not share the server's GIL.

    python bench/loadgen.py --port 8000 --path /v2/models/minilm/infer --bodies bodies.jsonl \
        --concurrency 16 --requests 500 --duration 60

N keep-alive connections (raw asyncio HTTP/1.1, no client library in the hot path) each send a
request, wait for the whole response, record its latency and send the next, cycling through the
bodies (one JSON document per line), until `--requests` answers or `--duration` seconds. Loopback
only: any other host is refused. Prints one JSON object: counts by status, throughput, latency
percentiles (ms) and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def build_requests(host: str, port: int, path: str, bodies: list[bytes]) -> list[bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        "Connection: keep-alive\r\n"
    )
    return [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked body); returns its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


@dataclass
class Tally:
    """What the workers of one run share: the budget (answers, deadline) and what they recorded."""

    requests: int
    t_end: float
    issued: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def more(self) -> bool:
        return self.issued < self.requests and time.perf_counter() < self.t_end

    def record(self, t0: float, status: str) -> None:
        self.latencies.append(time.perf_counter() - t0)
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def http_worker(host: str, port: int, requests: list[bytes], t: Tally) -> None:
    """One keep-alive connection: send, read the whole answer, record, repeat while the budget lasts."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while t.more():
            req = requests[t.issued % len(requests)]
            t.issued += 1
            t0 = time.perf_counter()
            try:
                writer.write(req)
                await writer.drain()
                status = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                t.failures.append(f"{type(e).__name__}: {e}")
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            t.record(t0, str(status))
    finally:
        writer.close()


async def run(a: argparse.Namespace, requests: list[bytes]) -> dict:
    tally = Tally(a.requests, time.perf_counter() + a.duration)
    latencies, statuses, failures = tally.latencies, tally.statuses, tally.failures
    t0 = time.perf_counter()
    await asyncio.gather(*(http_worker(a.host, a.port, requests, tally) for _ in range(a.concurrency)))
    wall = time.perf_counter() - t0
    ok = statuses.get("200", 0)
    lat = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {
        "concurrency": a.concurrency,
        "requests": len(latencies),
        "ok": ok,
        "statuses": statuses,
        "transport_errors": len(failures),
        "first_errors": failures[:3],
        "wall_s": round(wall, 3),
        "throughput_rps": round(ok / wall, 3) if wall > 0 else 0.0,
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p90": round(float(np.percentile(lat, 90)), 2),
            "p99": round(float(np.percentile(lat, 99)), 2),
            "max": round(float(lat.max()), 2),
            "mean": round(float(lat.mean()), 2),
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True, help="e.g. /v2/models/minilm/infer")
    ap.add_argument("--bodies", required=True, help="file with one JSON request body per line")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--requests", type=int, default=200, help="stop after this many answers")
    ap.add_argument("--duration", type=float, default=60.0, help="...or after this many seconds")
    a = ap.parse_args()
    if a.host not in LOOPBACK:
        print(f"refusing to load-test {a.host}: loopback only ({', '.join(LOOPBACK)})", file=sys.stderr)
        return 2
    with open(a.bodies, "rb") as f:
        bodies = [line.strip() for line in f if line.strip()]
    if not bodies or a.concurrency < 1 or a.requests < 1:
        print("need at least one body, --concurrency >= 1 and --requests >= 1", file=sys.stderr)
        return 2
    result = asyncio.run(run(a, build_requests(a.host, a.port, a.path, bodies)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
