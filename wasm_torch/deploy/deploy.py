"""`wasm-torch deploy`: tune -> compile -> validate -> bench -> check requirements -> sign -> package.

    wasm-torch deploy pkg.mod:make --target web|serve|edge -o OUT --key keys/release.key \\
        [--max-latency-ms X] [--max-size-mb Y] [--budget 12]

What OUT holds (written to a temporary sibling first, renamed into place only when complete):

    web     site/             the static site (deploy/web.py) with the signed model in site/model/
    serve   models/<name>/    a signed artifact folder; trusted/*.pub the signer's public keys, so
                              `wasm-torch serve OUT/models --require-signed --trust OUT/trusted/...`
    edge    artifact/         the signed artifact the edge network runs, and job.json: the artifact
                              id (sha256 of manifest.json, as the coordinator names it), its inputs
                              and outputs, work, the requirements and what was measured here, and
                              the `wasm-torch job submit` command line
    all     deploy.json       the report: tuning (chosen options, measured gain), validation,
                              latency on this machine, sizes, requirements and whether they are met

Weights: with `--quantize auto` (the default) float32 when it fits --max-size-mb, else fp16, else
int8 (each validated against PyTorch with its format's agreement bar); or the format asked.

Refusals are `DeployError`s that say what was measured against what was asked, before anything is
written to OUT: weights alone over --max-size-mb in every allowed format (checked before tuning),
the compiled artifact over it, or the tuned latency over --max-latency-ms. An OUT that exists and is not empty is
refused too (deploy never overwrites). Sizes are in MB = 10^6 bytes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WasmTorchError

TARGETS = ("web", "serve", "edge")
JOB_FORMAT = "wasm-torch-edge-job/1"
REPORT = "deploy.json"


class DeployError(WasmTorchError):
    """`wasm-torch deploy` refused: a requirement cannot be met on this machine, or bad arguments."""


@dataclass(frozen=True)
class Requirements:
    max_latency_ms: float | None = None
    max_size_mb: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "max_size_mb"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and np.isfinite(v) and v > 0):
                raise DeployError(f"--{name.replace('_', '-')} must be a positive number, got {v!r}")


@dataclass
class DeployReport:
    target: str
    out: str
    name: str
    requirements: dict[str, Any]
    met: bool
    latency_ms: dict[str, float]
    size_bytes: dict[str, int]
    tuning: dict[str, Any]
    validation: dict[str, Any]
    quantize: str | None  # the weights' format: None (float32), "fp16" or "int8"
    signed_by: list[str]
    files: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DeployError(f"{out} exists and is not an empty folder; deploy never overwrites: pick a new -o")


def weights_bytes(model: Any) -> int:
    """Bytes of the model's parameters and buffers: a floor for the artifact's weights.bin."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


# Weights' size relative to float32: a floor per format (int8 keeps biases and norms in float32,
# so its real artifact is a little larger; the compiled artifact is checked against the limit again).
SHRINK = {None: 1.0, "fp16": 0.5, "int8": 0.25}
QUANTIZE_CHOICES = ("auto", "none", "fp16", "int8")


def choose_quantize(quantize: str | None, floor: int, req: Requirements) -> str | None:
    """The weights' format: as asked, or with "auto" the most precise one whose size floor meets
    --max-size-mb (float32, then fp16, then int8; each is validated against PyTorch at compile).
    Refuses before any work when even the asked (or smallest) format cannot fit."""
    if quantize not in (*QUANTIZE_CHOICES, None):
        raise DeployError(f"--quantize must be one of {list(QUANTIZE_CHOICES)}, got {quantize!r}")
    limit = None if req.max_size_mb is None else req.max_size_mb * 1e6
    asked = None if quantize in ("none", None) else quantize
    candidates = [None, "fp16", "int8"] if quantize == "auto" else [asked]
    for fmt in candidates:
        if limit is None or floor * SHRINK[fmt] <= limit:
            return fmt
    last = candidates[-1]
    raise DeployError(
        f"cannot meet --max-size-mb {req.max_size_mb:g}: the model's weights alone are {_size_mb(floor)} as float32 "
        f"parameters and buffers, at least {_size_mb(floor * SHRINK[last])} as {last or 'float32'}"
        f"{'' if quantize == 'auto' else ' (--quantize ' + str(quantize) + ')'}. Use a smaller model"
        f"{', or --quantize auto / int8' if quantize != 'auto' and last != 'int8' else ''}."
    )


def bench(folder: Path, arrays: list[np.ndarray], seconds: float = 2.0, min_calls: int = 20) -> dict[str, float]:
    """Latency of one call on this machine: p50 / p90 over as many calls as fit in `seconds`."""
    from ..runtime import load

    mod = load(folder)
    for _ in range(3):
        mod(*arrays, copy=False)
    times, t_end = [], time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < t_end:
        t = time.perf_counter()
        mod(*arrays, copy=False)
        times.append(time.perf_counter() - t)
        if len(times) >= 100_000:
            break
    ms = np.asarray(times) * 1e3
    return {"p50": float(np.median(ms)), "p90": float(np.percentile(ms, 90)), "calls": float(len(ms))}


def _size_mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


def deploy(
    model: Any,
    example_inputs: tuple,
    out: str | Path,
    *,
    target: str,
    keys: list[str | Path],
    dynamic_shapes: Any = None,
    requirements: Requirements | None = None,
    budget: int = 12,
    memory: Any = None,
    bench_seconds: float = 2.0,
    progress: bool = False,
    name: str | None = None,
    quantize: str | None = "auto",
) -> DeployReport:
    from ..integrity.signing import key_id, load_private_key, sign_artifact
    from ..learn.memory import PatternMemory
    from ..learn.tuner import compile_tuned, tune

    t0 = time.perf_counter()
    req = requirements or Requirements()
    if target not in TARGETS:
        raise DeployError(f"--target must be one of {list(TARGETS)}, got {target!r}")
    if budget < 0:
        raise DeployError(f"--budget must be >= 0 (0 = no tuning), got {budget}")
    out = Path(out)
    _check_out(out)
    if not keys:
        raise DeployError(
            "deploy signs what it ships: give --key PRIVATE_KEY (make one with `wasm-torch keygen keys/release`)"
        )
    private = [load_private_key(k) for k in keys]  # fail on a bad key before minutes of tuning
    example_inputs = tuple(example_inputs) if isinstance(example_inputs, tuple | list) else (example_inputs,)
    name = name or out.name or "model"
    fmt = choose_quantize(quantize, weights_bytes(model), req)

    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.deploy-", dir=out.parent if out.parent.exists() else None))
    try:
        if budget > 0:
            mem = PatternMemory(memory) if memory is not None else PatternMemory()
            result = tune(model, example_inputs, budget=budget, dynamic_shapes=dynamic_shapes, memory=mem,
                          progress=progress, work_dir=stage / "tune")
            shutil.rmtree(stage / "tune", ignore_errors=True)
        else:
            result = None
        art_dir = stage / "artifact"
        if result is not None:
            art = compile_tuned(model, example_inputs, art_dir, result, dynamic_shapes, name=name, quantize=fmt)
        else:
            from ..compiler.pipeline import compile as compile_model

            art = compile_model(model, example_inputs, art_dir, dynamic_shapes=dynamic_shapes, name=name, quantize=fmt)
        raw = art.manifest.raw
        sizes = {"wasm": int(raw["files"]["model.wasm"]["bytes"]), "weights": int(raw["files"]["weights.bin"]["bytes"])}
        sizes["total"] = sizes["wasm"] + sizes["weights"]
        arrays = [x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x) for x in example_inputs]
        lat = bench(art_dir, arrays, bench_seconds)
        _require(req, sizes, lat, result)
        sign_artifact(art_dir, private, name=name)  # the release name it is served under, not the staging folder's
        files, steps = _package(target, art_dir, out, stage, name, private, raw, req, lat)
        report = DeployReport(
            target=target,
            out=str(out),
            name=name,
            requirements=asdict(req),
            met=True,
            quantize=fmt,
            latency_ms={k: round(v, 5) for k, v in lat.items()},
            size_bytes=sizes,
            tuning=result.manifest_record() if result is not None else {"skipped": "budget 0"},
            validation=raw.get("validation", {}),
            signed_by=[key_id(k) for k in private],
            files=files,
            next_steps=steps,
        )
        report.seconds = round(time.perf_counter() - t0, 1)
        (stage / "out" / REPORT).write_text(json.dumps(report.to_json(), indent=1))
        _check_out(out)  # nobody wrote there meanwhile
        if out.exists():
            out.rmdir()  # empty, checked just above
        (stage / "out").replace(out)
        return report
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _require(req: Requirements, sizes: dict[str, int], lat: dict[str, float], result: Any) -> None:
    if req.max_size_mb is not None and sizes["total"] > req.max_size_mb * 1e6:
        raise DeployError(
            f"cannot meet --max-size-mb {req.max_size_mb:g}: the compiled artifact is {_size_mb(sizes['total'])} "
            f"(model.wasm {_size_mb(sizes['wasm'])}, weights.bin {_size_mb(sizes['weights'])}). Nothing was written."
        )
    if req.max_latency_ms is not None and lat["p50"] > req.max_latency_ms:
        tuned = ""
        if result is not None:
            tuned = (
                f" after tuning ({result.measured} trials; chosen options are {result.gain:.3f}x the default's "
                f"speed{'' if result.significant else ', no significant gain found'})"
            )
        raise DeployError(
            f"cannot meet --max-latency-ms {req.max_latency_ms:g} on this machine: one call takes "
            f"{lat['p50']:.3f} ms (median of {int(lat['calls'])} calls){tuned}. Nothing was written. "
            "A larger --budget, a smaller model, or a faster machine may help."
        )


def _package(
    target: str,
    art_dir: Path,
    out: Path,
    stage: Path,
    name: str,
    private: list[Any],
    raw: dict[str, Any],
    req: Requirements,
    lat: dict[str, float],
) -> tuple[list[str], list[str]]:
    import hashlib

    from ..artifact import MANIFEST
    from ..integrity.signing import key_id, write_public_key
    from ..learn.machine import current_machine
    from .web import package_site

    dest = stage / "out"
    dest.mkdir()
    if target == "web":
        package_site(art_dir, dest / "site")
        steps = [f"python {out}/site/serve.py 8000   # then open http://127.0.0.1:8000/"]
    elif target == "serve":
        shutil.copytree(art_dir, dest / "models" / name)
        (dest / "trusted").mkdir()
        trust = []
        for k in private:
            p = dest / "trusted" / f"{key_id(k).replace(':', '-')}.pub"
            write_public_key(k, p)
            trust.append(f"--trust {out}/trusted/{p.name}")
        steps = [f"wasm-torch serve {out}/models --require-signed {' '.join(trust)}"]
    else:
        shutil.copytree(art_dir, dest / "artifact")
        sha = hashlib.sha256((art_dir / MANIFEST).read_bytes()).hexdigest()
        job = {
            "format": JOB_FORMAT,
            "artifact": "artifact",
            "artifact_sha256": sha,
            "name": name,
            "inputs": raw["inputs"],
            "outputs": raw["outputs"],
            "symbols": raw.get("symbols", []),
            "work": raw.get("work", {}),
            "requirements": asdict(req),
            "measured_here": {"latency_ms_p50": round(lat["p50"], 5), "machine": current_machine().key},
            "signed_by": [key_id(k) for k in private],
            "submit": f"wasm-torch job submit {out}/artifact INPUT.npy --coordinator URL --key YOUR.key",
        }
        (dest / "job.json").write_text(json.dumps(job, indent=1))
        steps = [job["submit"]]
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    return [*files, REPORT], steps
