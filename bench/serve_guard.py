"""Guard overhead per request: strict JSON + v2/spec validation + anomaly score, versus a plain
json.loads + numpy conversion (what an unguarded server must do anyway).

    python bench/serve_guard.py             # writes bench/results/serve_guard.json
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wasm_torch.serve.guard import AnomalyScorer
from wasm_torch.serve.protocol import loads_strict, parse_infer_request


@dataclass(frozen=True)
class Spec:
    name: str
    dtype: str
    shape: tuple


CASES = {
    "minilm seq128 (2×INT64 1×128)": (
        [Spec("input_ids", "int64", ("batch", "seq")), Spec("attention_mask", "int64", ("batch", "seq"))],
        {"inputs": [{"name": "input_ids", "shape": [1, 128], "datatype": "INT64",
                     "data": list(range(1000, 1128))},
                    {"name": "attention_mask", "shape": [1, 128], "datatype": "INT64", "data": [1] * 128}]}),
    "mlp (FP32 8×64)": (
        [Spec("x", "float32", ("batch", 64))],
        {"inputs": [{"name": "x", "shape": [8, 64], "datatype": "FP32",
                     "data": np.random.default_rng(0).standard_normal(512).round(5).tolist()}]}),
}


def per_call_us(fn, n: int = 2000) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    out = {}
    for name, (specs, req) in CASES.items():
        raw = json.dumps(req).encode()
        scorer = AnomalyScorer(warmup=1)

        def plain(raw: bytes = raw, specs: list = specs) -> None:
            d = json.loads(raw)
            [np.asarray(t["data"], dtype=s.dtype) for t, s in zip(d["inputs"], specs, strict=True)]

        clients = itertools.count()

        def guarded(raw: bytes = raw, specs: list = specs, scorer: AnomalyScorer = scorer, clients=clients) -> None:
            r = parse_infer_request(loads_strict(raw), specs, [], 1 << 22)
            scorer.score(r.inputs, client=f"c{next(clients)}")  # a new client each time: always learns

        base, full = per_call_us(plain), per_call_us(guarded)
        out[name] = {"plain_us": round(base, 1), "guarded_us": round(full, 1),
                     "overhead_us": round(full - base, 1)}
        print(f"{name}: plain {base:.1f} µs, guarded {full:.1f} µs, overhead {full - base:.1f} µs")
    path = Path(__file__).parent / "results" / "serve_guard.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
