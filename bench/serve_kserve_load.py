"""A closed-loop load generator for the three KServe v2 encodings, run as its own process.

    python bench/serve_kserve_load.py --protocol binary --port 8000 --model minilm \
        --inputs inputs.npz --concurrency 4 --requests 200 --duration 60

`--inputs` is an .npz of the request tensors (loaded with allow_pickle=False), one array per input
name with a leading request axis: request k sends row k of every array (cycling). Each request is
encoded once, before the clock starts:

- json:   HTTP/1.1, a JSON body (`data` lists), JSON answer;
- binary: HTTP/1.1, the binary tensor extension both ways (`binary_data_size`, `binary_data_output`);
- grpc:   ModelInfer with `raw_input_contents` over one HTTP/2 channel (grpc.aio), raw answer.

N workers each send a request, wait for the whole answer, record its latency and send the next, until
`--requests` answers or `--duration` seconds. Loopback only. Prints one JSON object: counts by status,
throughput, latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LOOPBACK, Tally, http_worker

V2 = {"int64": "INT64", "int32": "INT32", "float32": "FP32", "float64": "FP64", "bool": "BOOL"}


def tensors(row: dict[str, np.ndarray]) -> list[dict]:
    return [{"name": n, "shape": list(a.shape), "datatype": V2[a.dtype.name]} for n, a in row.items()]


def http_frames(host: str, port: int, model: str, rows: list[dict[str, np.ndarray]], binary: bool) -> list[bytes]:
    out = []
    for row in rows:
        head = f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n"
        if binary:
            doc = {"inputs": [{**t, "parameters": {"binary_data_size": a.nbytes}}
                              for t, a in zip(tensors(row), row.values(), strict=True)],
                   "parameters": {"binary_data_output": True}}  # fmt: skip
            text = json.dumps(doc).encode()
            body = text + b"".join(np.ascontiguousarray(a).tobytes() for a in row.values())
            head += f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(text)}\r\n"
        else:
            doc = {"inputs": [{**t, "data": a.ravel().tolist()} for t, a in zip(tensors(row), row.values(), strict=True)]}
            body = json.dumps(doc).encode()
            head += "Content-Type: application/json\r\n"
        out.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return out


def grpc_messages(model: str, rows: list[dict[str, np.ndarray]]) -> list[bytes]:
    from wasm_torch.serve.grpc import proto

    out = []
    for row in rows:
        m = proto.ModelInferRequest(model_name=model)
        for t, a in zip(tensors(row), row.values(), strict=True):
            m.inputs.add(**t)
            m.raw_input_contents.append(np.ascontiguousarray(a).tobytes())
        out.append(m.SerializeToString())
    return out


async def run(a: argparse.Namespace, payloads: list[bytes]) -> dict:
    tally = Tally(a.requests, time.perf_counter() + a.duration)
    latencies, statuses, failures = tally.latencies, tally.statuses, tally.failures
    channel = None
    if a.protocol == "grpc":
        import grpc

        channel = grpc.aio.insecure_channel(
            f"{a.host}:{a.port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    async def grpc_worker() -> None:
        import grpc

        while tally.more():
            msg = payloads[tally.issued % len(payloads)]
            tally.issued += 1
            t0 = time.perf_counter()
            try:
                await call(msg, timeout=120)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
            tally.record(t0, code)

    def worker() -> Any:
        return grpc_worker() if a.protocol == "grpc" else http_worker(a.host, a.port, payloads, tally)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(a.concurrency)))
    wall = time.perf_counter() - t0
    if channel is not None:
        await channel.close()
    ok = statuses.get("200", 0) + statuses.get("OK", 0)
    lat = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {
        "protocol": a.protocol,
        "concurrency": a.concurrency,
        "requests": len(latencies),
        "ok": ok,
        "statuses": statuses,
        "transport_errors": len(failures),
        "first_errors": failures[:3],
        "request_bytes": int(np.mean([len(p) for p in payloads])),
        "wall_s": round(wall, 3),
        "throughput_rps": round(ok / wall, 3) if wall > 0 else 0.0,
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 3),
            "p99": round(float(np.percentile(lat, 99)), 3),
            "mean": round(float(lat.mean()), 3),
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=("json", "binary", "grpc"), required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True, help="the REST port, or the gRPC port with --protocol grpc")
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True, help=".npz: one array per input, leading axis = request")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0)
    a = ap.parse_args()
    if a.host not in LOOPBACK:
        print(f"refusing to load-test {a.host}: loopback only", file=sys.stderr)
        return 2
    with np.load(a.inputs, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    n = min(len(v) for v in arrays.values())
    rows = [{k: v[i] for k, v in arrays.items()} for i in range(n)]
    if a.protocol == "grpc":
        payloads = grpc_messages(a.model, rows)
    else:
        payloads = http_frames(a.host, a.port, a.model, rows, a.protocol == "binary")
    print(json.dumps(asyncio.run(run(a, payloads))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
