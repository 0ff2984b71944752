"""In-process costs behind the serving throughput figures (used by bench/serve_throughput.py).

- guard_overhead: what /infer runs before compute (strict JSON, v2 + spec checks, anomaly score)
  versus the minimum any server does (json.loads + numpy), per request;
- integrity_overhead: load time with sha256 checks only, + Ed25519 & ML-DSA-65 signatures,
  + signatures and AES-256-GCM weights; and the signature check alone;
- per_row_ms: wasm compute per row at several batch sizes — what dynamic batching can save.

Variants are interleaved and medians reported (the machine is shared and noisy).
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SEQ = 128


def guard_overhead(body: dict, n: int, repeats: int) -> dict:
    """Per-request cost of the guard (what /infer runs before compute) vs the minimum any server does."""
    from dataclasses import dataclass

    from wasm_torch.serve.guard import AnomalyScorer
    from wasm_torch.serve.protocol import loads_strict, parse_infer_request

    @dataclass(frozen=True)
    class Spec:
        name: str
        dtype: str
        shape: tuple

    specs = [Spec("input_ids", "int64", ("batch", SEQ)), Spec("attention_mask", "int64", ("batch", SEQ))]
    raw, scorer = json.dumps(body).encode(), AnomalyScorer(warmup=1)

    def plain() -> None:
        d = json.loads(raw)
        [np.asarray(t["data"], dtype=s.dtype) for t, s in zip(d["inputs"], specs, strict=True)]

    clients = itertools.count()

    def guarded() -> None:  # a new client each call, so the anomaly statistics always learn (worst case)
        scorer.score(parse_infer_request(loads_strict(raw), specs, [], 1 << 22).inputs, client=f"c{next(clients)}")

    times: dict[str, list[float]] = {"plain": [], "guarded": []}
    for _ in range(repeats):  # interleaved
        for name, fn in (("plain", plain), ("guarded", guarded)):
            fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - t0) / n * 1e6)
    p, g = statistics.median(times["plain"]), statistics.median(times["guarded"])
    return {"plain_us": round(p, 1), "guarded_us": round(g, 1), "overhead_us": round(g - p, 1)}


def integrity_overhead(models: Path, repeats: int) -> dict:
    """Load time (median ms): sha256 checks only vs + signatures vs + signatures and decryption."""
    import wasm_torch
    from wasm_torch.integrity import signing
    from wasm_torch.integrity.encryption import Keyring, encrypt_artifact

    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(shutil.copytree(models / "minilm", Path(tmp) / "plain"))
        keys = [signing.generate_key("ed25519"), signing.generate_key("ml-dsa-65")]
        signing.sign_artifact(plain, keys)
        enc = Path(shutil.copytree(plain, Path(tmp) / "enc"))
        ring = Keyring()
        ring.add("bench")
        encrypt_artifact(enc, ring, "bench")
        pubs = [k.public_key() for k in keys]
        cases = {
            "sha256 only": lambda: wasm_torch.load(plain),
            "+ Ed25519 & ML-DSA-65 signatures": lambda: wasm_torch.load(plain, trusted_keys=pubs),
            "+ signatures + AES-256-GCM weights": lambda: wasm_torch.load(
                enc, trusted_keys=pubs, keyring=ring
            ),
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for fn in cases.values():
            fn()  # warm the compiled-module cache so every case measures the same compile path
        for _ in range(repeats):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
        manifest = (plain / "manifest.json").read_bytes()
        t0 = time.perf_counter()
        for _ in range(20):
            signing.verify_manifest(plain, manifest, pubs)
        verify_ms = (time.perf_counter() - t0) / 20 * 1e3
    return {
        "load_ms": {k: round(statistics.median(v), 1) for k, v in times.items()},
        "signature_check_ms": round(verify_ms, 3),
    }


def per_row_ms(models: Path, batches: tuple[int, ...], repeats: int) -> dict[str, float]:
    """Median wasm time per row (ms) of the served artifact at each batch size, in one instance."""
    import wasm_torch

    m = wasm_torch.load(models / "minilm", deadline=10.0)  # the server's default deadline
    rng = np.random.default_rng(0)
    times: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(repeats):
        for b in batches:
            ids = rng.integers(1000, 20000, (b, SEQ))
            t0 = time.perf_counter()
            m(ids, np.ones_like(ids))
            times[b].append((time.perf_counter() - t0) * 1e3 / b)
    return {str(b): round(statistics.median(v), 1) for b, v in times.items()}
