"""`wasm-torch bench`: ours vs ONNX Runtime Web, ONNX Runtime native and PyTorch eager, in one run.

Per model: build it from fixed seeds, compile it with wasm_torch (wasmtime, one thread), export the
same torch model to ONNX, check that every system's output agrees with PyTorch on fresh inputs,
then time all four interleaved, one run each per round in a rotating order so drift hits all
alike: ours, ORT native and torch in this process, ORT-Web in a waiting Node subprocess (peers.py).
Median after warm-up. A failing system leaves its row in place with the error instead of stopping
the suite. Writes the JSON and a PNG (plot.py) and prints a Markdown table.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .models import LABELS, SYSTEMS, BenchCase, build, select
from .peers import (
    OrtWeb,
    node_version,
    ort_native_runner,
    ort_native_session,
    ortweb_package,
    to_onnx,
    torch_runner,
)

ATOL, RTOL = 1e-4, 1e-3  # the compile-time validation tolerance (pipeline.compile defaults)


def _outputs(y: Any) -> list[np.ndarray]:
    leaves = list(y) if isinstance(y, tuple | list) else [y]
    return [x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in leaves]


def _agreement(row: dict[str, Any], system: str, got: list[np.ndarray], want: list[np.ndarray]) -> None:
    from ..compiler.check import compare

    c = compare(got, want, ATOL, RTOL)
    key = "max_abs_err" if system == "ours" else f"{system}_max_abs_err"
    row[key] = c["max_abs_err"]
    row[f"{system}_agrees"] = c["ok"]


class SystemFailed(Exception):
    """One system raised while being timed (the others can still be timed without it)."""

    def __init__(self, system: str, error: Exception):
        super().__init__(f"{system}: {error}")
        self.system, self.error = system, error


def wall_ms(fn: Callable[[], Any]) -> Callable[[], float]:
    """A timer for an in-process system: run fn once, return the wall-clock ms."""

    def timed() -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    return timed


def interleaved_ms(
    timers: dict[str, Callable[[], float]], warmup: int, repeat: int, max_seconds: float
) -> tuple[dict[str, float], int]:
    """Median ms per system, one run of each per round, the order rotating every round; the round
    count shrinks (not below 3) so the timed rounds take about max_seconds. A timer runs its system
    once and returns that run's ms (measured where the system runs: here, or inside Node)."""
    names = list(timers)

    def one(n: str) -> float:
        try:
            return timers[n]()
        except Exception as e:
            raise SystemFailed(n, e) from e

    round_ms = 0.0
    for _ in range(max(1, warmup)):
        round_ms = sum(one(n) for n in names)
    rounds = max(min(3, repeat), min(repeat, int(1e3 * max_seconds / max(round_ms, 1e-6))))
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        for n in names[i % len(names) :] + names[: i % len(names)]:
            times[n].append(one(n))
    return {n: statistics.median(t) for n, t in times.items()}, rounds


@contextlib.contextmanager
def _phase(row: dict[str, Any], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        row.setdefault("phase_seconds", {})[name] = round(time.perf_counter() - t0, 2)


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def run_case(case: BenchCase, opts: dict[str, Any], work: Path, package: Path) -> dict[str, Any]:
    import wasm_torch

    work.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"model": case.name, "description": case.description}
    with _phase(row, "build"):
        model, example, fresh = build(case)
        arrays = [x.numpy() for x in fresh]
        want = _outputs(torch_runner(model, fresh)())
    row["input_shapes"] = [list(x.shape) for x in fresh]
    errors: dict[str, str] = {}
    timers: dict[str, Callable[[], float]] = {}

    try:  # ours
        with _phase(row, "compile"):
            art = wasm_torch.compile(model, example, work / "wasm", atol=ATOL, rtol=RTOL)
            mod = wasm_torch.load(art)
        _agreement(row, "ours", _outputs(mod(*arrays)), want)
        mem = art.manifest.raw["memory"]
        row.update(code_bytes=art.code_bytes, weights_bytes=art.weights_bytes, arena_bytes=mem["arena_bytes"])
        row.update(arena_unplanned_bytes=mem["arena_unplanned_bytes"], linear_memory_bytes=mod.memory_bytes)
        row["largest_activation_bytes"] = mem["peak_live_bytes"]
        timers["ours"] = wall_ms(lambda: mod(*arrays))
    except Exception as e:  # keep the row: the exact compiler error is the result
        errors["ours"] = _err(e)

    onnx_path = work / "model.onnx"
    try:
        with _phase(row, "onnx_export"):
            row.update(to_onnx(model, example, onnx_path))
        row["onnx_bytes"] = onnx_path.stat().st_size
    except Exception as e:
        errors["onnx_export"] = _err(e)
    if "onnx_export" not in errors:
        try:
            run = ort_native_runner(ort_native_session(onnx_path), arrays)
            _agreement(row, "ort_native", _outputs(run()), want)
            timers["ort_native"] = wall_ms(run)
        except Exception as e:
            errors["ort_native"] = _err(e)
    timers["torch"] = wall_ms(torch_runner(model, fresh))

    web = None
    try:
        if "onnx_export" not in errors:
            try:
                with _phase(row, "ortweb_load"):
                    web = OrtWeb(
                        onnx_path,
                        arrays,
                        work / "ortweb",
                        package,
                        opts["warmup"],
                        opts["ortweb_warmup_seconds"],
                    )
                timers["ortweb"] = web.run_once
            except Exception as e:
                errors["ortweb"] = _err(e)
        ms: dict[str, float] = {}
        with _phase(row, "timing"):
            while timers and not ms:
                try:
                    ms, row["rounds"] = interleaved_ms(
                        timers, opts["warmup"], opts["repeat"], opts["max_seconds"]
                    )
                except SystemFailed as f:  # drop the failing system, time the others again
                    errors[f.system] = _err(f.error)
                    timers.pop(f.system)
        for system in SYSTEMS:
            row[f"{system}_ms"] = round(ms[system], 4) if system in ms else None
        if web is not None and "ortweb" in ms:
            try:
                res = web.close()
                row["ortweb_warmup_runs"] = res["warmup_runs"]
                row["ortweb_runtime_bytes"] = res["runtime_bytes"]
                row["ortweb_runtime_files"] = res["runtime_files"]
                _agreement(row, "ortweb", res["outputs"], want)
            except Exception as e:
                errors["ortweb"] = _err(e)
                row["ortweb_ms"] = None
    finally:
        if web is not None:
            web.kill()  # no-op when it already exited
    return _summarise(row, errors, case)


def _summarise(row: dict[str, Any], errors: dict[str, str], case: BenchCase) -> dict[str, Any]:
    """Ratios, GFLOP/s, the memory bound and the error fields, from the measured row."""
    if row["ours_ms"] and row["ortweb_ms"]:
        row["ours_vs_ortweb"] = round(row["ours_ms"] / row["ortweb_ms"], 4)
    for peer in ("ort_native", "torch"):
        if row["ours_ms"] and row[f"{peer}_ms"]:
            row[f"ours_vs_{peer}"] = round(row["ours_ms"] / row[f"{peer}_ms"], 4)
    if case.flops:
        row["flops"] = case.flops
        row["gflops"] = {
            s: round(case.flops / row[f"{s}_ms"] / 1e6, 3) for s in SYSTEMS if row.get(f"{s}_ms")
        }
    if "largest_activation_bytes" in row and "weights_bytes" in row:
        bound = row["weights_bytes"] + 2 * row["largest_activation_bytes"]
        row["memory_bound_bytes"] = bound  # the issue's goal: linear memory <= weights + 2 x largest set
        row["memory_within_bound"] = row["linear_memory_bytes"] <= bound
        row["arena_vs_largest"] = round(row["arena_bytes"] / max(1, row["largest_activation_bytes"]), 3)
    if "ours" in errors:
        row["error"] = errors["ours"]
    if errors:
        row["errors"] = errors
    return row


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def machine(package: Path, command: str | None = None) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "wasmtime": _version("wasmtime"),
        "onnxruntime": _version("onnxruntime"),
        "onnx": _version("onnx"),
        "onnxscript": _version("onnxscript"),
        "node": node_version(),
        "onnxruntime_web": json.loads((package / "package.json").read_text())["version"],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv),
    }


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """PyTorch on n threads inside; the caller's setting afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def run_suite(
    models: list[str] | None = None,
    *,
    warmup: int = 3,
    repeat: int = 20,
    max_seconds: float = 20.0,
    warmup_seconds: float = 2.0,
    node_dir: Path | None = None,
    work_dir: Path | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the cases named (all by default) and return the result document (see docs/benchmarks.md)."""
    cases = select(models)
    package = ortweb_package(node_dir)  # fail before any work if ORT-Web is not installed
    result: dict[str, Any] = {"machine": machine(package, command)}
    result["settings"] = {"threads": 1, "warmup": warmup, "repeat": repeat, "max_seconds": max_seconds}
    result["settings"]["ortweb_warmup_seconds"] = warmup_seconds
    result["settings"].update(atol=ATOL, rtol=RTOL)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wasm_torch_bench_") as tmp, _torch_threads(1):
        root = Path(work_dir) if work_dir else Path(tmp)
        for case in cases:
            t0 = time.perf_counter()
            log(f"[bench] {case.name}: {case.description} ...")
            rows.append(run_case(case, result["settings"], root / case.name, package))
            r = rows[-1]
            log(
                f"[bench] {case.name}: ours {r.get('ours_ms')} ms, ORT-Web {r.get('ortweb_ms')} ms, "
                f"ORT {r.get('ort_native_ms')} ms, torch {r.get('torch_ms')} ms ({time.perf_counter() - t0:.0f} s)"
                + (f"  errors: {r['errors']}" if "errors" in r else "")
            )
            gc.collect()
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["rows"] = rows
    return result


def problems(result: dict[str, Any]) -> list[str]:
    """Errors and disagreements with PyTorch, one line each (empty = a clean run)."""
    out = []
    for r in result["rows"]:
        out += [f"{r['model']}: {s}: {e}" for s, e in r.get("errors", {}).items()]
        out += [f"{r['model']}: {s} disagrees with PyTorch" for s in SYSTEMS if r.get(f"{s}_agrees") is False]
    return out


def _f(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def markdown_table(result: dict[str, Any]) -> str:
    head = "| model | ours ms | ORT-Web ms | ORT native ms | PyTorch ms | ours / ORT-Web | ours / ORT | "
    head += "code KB | ORT-Web runtime KB | max abs err | arena KB | largest act. KB |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:

        def kb(k: str, r: dict[str, Any] = r) -> str:
            return _f(r[k] / 1024 if r.get(k) is not None else None, ",.1f")

        lines.append(
            f"| {r['model']} | {_f(r.get('ours_ms'), '.2f')} | {_f(r.get('ortweb_ms'), '.2f')} | "
            f"{_f(r.get('ort_native_ms'), '.2f')} | {_f(r.get('torch_ms'), '.2f')} | "
            f"{_f(r.get('ours_vs_ortweb'), '.2f')} | {_f(r.get('ours_vs_ort_native'), '.2f')} | "
            f"{kb('code_bytes')} | {kb('ortweb_runtime_bytes')} | {_f(r.get('max_abs_err'), '.1e')} | "
            f"{kb('arena_bytes')} | {kb('largest_activation_bytes')} |"
        )
    for r in result["rows"]:
        if "gflops" in r:
            g = ", ".join(f"{LABELS[s]} {v:.1f}" for s, v in r["gflops"].items())
            lines.append(f"\n{r['model']} GFLOP/s: {g}")
    return "\n".join(lines)


def bench(
    models: list[str] | None,
    out: Path,
    png: Path | None = None,
    *,
    quick: bool = False,
    **options: Any,
) -> tuple[dict[str, Any], list[str]]:
    """Run the suite, write `out` (JSON) and the PNG beside it, print the table; returns (result, problems).

    quick: one warm-up and three timed rounds, no ORT-Web warm-up floor (for tests and smoke runs;
    the timings mean little).
    """
    from .plot import plot

    if quick:
        options.update(warmup=1, repeat=3, warmup_seconds=0.0)
    result = run_suite(models, **options)
    result["settings"]["quick"] = quick
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    png = plot(result, Path(png) if png else out.with_suffix(".png"))
    print(f"\n{markdown_table(result)}\n\nwrote {out} and {png}")
    found = problems(result)
    for p in found:
        print(f"problem: {p}")
    return result, found
