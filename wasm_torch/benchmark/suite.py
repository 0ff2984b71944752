"""`wasm-torch bench`: ours vs ONNX Runtime Web, ONNX Runtime native and PyTorch eager, in one run,
each at 1 and 2 threads.

Per model: build it from fixed seeds, compile it with wasm_torch, export the same torch model to
ONNX, check that every system's output agrees with PyTorch on fresh inputs, then time every system
at every thread count interleaved, one run each per round in a rotating order so drift hits all
alike: ours (`wasm_torch.load(art, threads=n)`, the build `load` picks), ORT native and torch in
this process, ORT-Web in one waiting Node subprocess per thread count (peers.py). Median after
warm-up. GFLOP/s come from the manifest's FLOP count, and ours are also given as a fraction of this
machine's SIMD128 peak (peak.py; n x the one-core peak at n threads). A failing system leaves its
row in place with the error instead of stopping the suite. Writes the JSON and a PNG (plot.py) and
prints Markdown tables.
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

from .models import LABELS, THREADS, BenchCase, build, select, system_key, systems
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
    key = "max_abs_err" if system == "ours" else f"{system}_max_abs_err"  # ours_2t_max_abs_err, ...
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

    threads = tuple(opts.get("threads", (1,)))
    try:  # ours, at every thread count (the build `load` chooses: relaxed SIMD where it can, threads)
        with _phase(row, "compile"):
            art = wasm_torch.compile(model, example, work / "wasm", atol=ATOL, rtol=RTOL)
        mem = art.manifest.raw["memory"]
        row.update(code_bytes=art.code_bytes, weights_bytes=art.weights_bytes, arena_bytes=mem["arena_bytes"])
        row["arena_unplanned_bytes"] = mem["arena_unplanned_bytes"]
        row["largest_activation_bytes"] = mem["peak_live_bytes"]
        flops = art.manifest.raw.get("work", {}).get("flops")
        if isinstance(flops, int) and not case.flops:
            row["flops"] = flops  # counted by the compiler from the graph
        for t in threads:
            key = system_key("ours", t)
            mod = wasm_torch.load(art, threads=t)
            _agreement(row, key, _outputs(mod(*arrays)), want)
            row[f"{key}_build"] = getattr(getattr(mod, "spec", None), "name", "simd128")
            if t == 1:
                row["linear_memory_bytes"] = mod.memory_bytes
            timers[key] = wall_ms(lambda mod=mod: mod(*arrays))
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
        for t in threads:
            key = system_key("ort_native", t)
            try:
                run = ort_native_runner(ort_native_session(onnx_path, t), arrays)
                _agreement(row, key, _outputs(run()), want)
                timers[key] = wall_ms(run)
            except Exception as e:
                errors[key] = _err(e)
    for t in threads:
        timers[system_key("torch", t)] = wall_ms(torch_runner(model, fresh, t))

    webs: dict[str, OrtWeb] = {}
    try:
        if "onnx_export" not in errors:
            for t in threads:
                key = system_key("ortweb", t)
                try:
                    with _phase(row, f"{key}_load"):
                        webs[key] = OrtWeb(onnx_path, arrays, work / key, package, opts["warmup"],
                                           opts["ortweb_warmup_seconds"], threads=t)  # fmt: skip
                    timers[key] = webs[key].run_once
                except Exception as e:
                    errors[key] = _err(e)
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
        for system in systems(threads):
            row[f"{system}_ms"] = round(ms[system], 4) if system in ms else None
        for key, web in webs.items():
            if key not in ms:
                continue
            try:
                res = web.close()
                if key == "ortweb":
                    row["ortweb_warmup_runs"] = res["warmup_runs"]
                    row["ortweb_runtime_bytes"] = res["runtime_bytes"]
                    row["ortweb_runtime_files"] = res["runtime_files"]
                _agreement(row, key, res["outputs"], want)
            except Exception as e:
                errors[key] = _err(e)
                row[f"{key}_ms"] = None
    finally:
        for web in webs.values():
            web.kill()  # no-op when it already exited
    return _summarise(row, errors, case, threads, opts.get("peak_gflops"))


def _summarise(
    row: dict[str, Any], errors: dict[str, str], case: BenchCase, threads: tuple[int, ...], peak: float | None
) -> dict[str, Any]:
    """Ratios, speedups, GFLOP/s (and ours as a fraction of the peak), the memory bound and the
    error fields, from the measured row."""
    for t in threads:
        ours = row.get(f"{system_key('ours', t)}_ms")
        for peer in ("ortweb", "ort_native", "torch"):
            other = row.get(f"{system_key(peer, t)}_ms")
            if ours and other:
                row[f"{system_key('ours', t)}_vs_{peer}"] = round(ours / other, 4)
        if t > 1 and ours and row.get("ours_ms"):
            row[f"ours_{t}t_speedup"] = round(row["ours_ms"] / ours, 3)  # over ours on one thread
    if case.flops:
        row["flops"] = case.flops
    if row.get("flops"):
        row["gflops"] = {
            s: round(row["flops"] / row[f"{s}_ms"] / 1e6, 3) for s in systems(threads) if row.get(f"{s}_ms")
        }
        if peak:
            for t in threads:
                g = row["gflops"].get(system_key("ours", t))
                if g:  # n threads: n x the one-core peak
                    row[f"{system_key('ours', t)}_peak_fraction"] = round(g / (peak * t), 3)
    if "largest_activation_bytes" in row and "weights_bytes" in row and "linear_memory_bytes" in row:
        bound = row["weights_bytes"] + 2 * row["largest_activation_bytes"]
        row["memory_bound_bytes"] = bound  # the goal: linear memory <= weights + 2 x largest set
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
    threads: tuple[int, ...] = THREADS,
    peak: bool = True,
    node_dir: Path | None = None,
    work_dir: Path | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the cases named (all by default) and return the result document (see docs/benchmarks.md)."""
    cases = select(models)
    package = ortweb_package(node_dir)  # fail before any work if ORT-Web is not installed
    result: dict[str, Any] = {"machine": machine(package, command)}
    if peak:  # this machine's one-core SIMD128 peak, the yardstick of every GFLOP/s figure
        from .peak import simd128_peak

        result["machine"]["simd128_peak"] = simd128_peak()
        log(f"[bench] SIMD128 peak: {result['machine']['simd128_peak']}")
    result["settings"] = {"threads": list(threads), "warmup": warmup, "repeat": repeat, "max_seconds": max_seconds}
    result["settings"]["ortweb_warmup_seconds"] = warmup_seconds
    result["settings"].update(atol=ATOL, rtol=RTOL)
    result["settings"]["peak_gflops"] = result["machine"].get("simd128_peak", {}).get("peak_gflops")
    rows = []
    with tempfile.TemporaryDirectory(prefix="wasm_torch_bench_") as tmp, _torch_threads(1):
        root = Path(work_dir) if work_dir else Path(tmp)
        for case in cases:
            t0 = time.perf_counter()
            log(f"[bench] {case.name}: {case.description} ...")
            rows.append(run_case(case, result["settings"], root / case.name, package))
            r = rows[-1]
            log(
                f"[bench] {case.name}: "
                + ", ".join(f"{k} {r.get(f'{k}_ms')} ms" for k in systems(threads))
                + f" ({time.perf_counter() - t0:.0f} s)"
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
        out += [f"{r['model']}: {s} disagrees with PyTorch" for s in LABELS if r.get(f"{s}_agrees") is False]
    return out


def _f(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def markdown_table(result: dict[str, Any]) -> str:
    """Latency at every thread count with the ratios and speedups, then sizes, memory and errors."""
    threads = tuple(result["settings"]["threads"]) if isinstance(result["settings"]["threads"], list) else (1,)
    peak = result["settings"].get("peak_gflops")
    cols = [(k, LABELS[k].replace(" (wasmtime)", "").replace(" 1.30 (Node)", "")) for k in systems(threads)]
    head = "| model | " + " | ".join(f"{lab} ms" for _, lab in cols)
    head += " | " + " | ".join(f"ours / ORT-Web {t}t" for t in threads)
    head += "".join(f" | ours {t}t speedup" for t in threads if t > 1)
    head += "".join(f" | ours {t}t % of peak" for t in threads) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:
        cells = [_f(r.get(f"{k}_ms"), ".2f") for k, _ in cols]
        cells += [_f(r.get(f"{system_key('ours', t)}_vs_ortweb"), ".2f") for t in threads]
        cells += [_f(r.get(f"ours_{t}t_speedup"), ".2f") for t in threads if t > 1]
        cells += [_f(100 * x if (x := r.get(f"{system_key('ours', t)}_peak_fraction")) else None, ".0f")
                  for t in threads]  # fmt: skip
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    lines.append("")
    head = "| model | ours build (1t / 2t) | code KB | ORT-Web runtime KB | max abs err | arena KB | largest act. KB |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:

        def kb(k: str, r: dict[str, Any] = r) -> str:
            return _f(r[k] / 1024 if r.get(k) is not None else None, ",.1f")

        built = " / ".join(str(r.get(f"{system_key('ours', t)}_build", "—")) for t in threads)
        lines.append(
            f"| {r['model']} | {built} | {kb('code_bytes')} | {kb('ortweb_runtime_bytes')} | "
            f"{_f(r.get('max_abs_err'), '.1e')} | {kb('arena_bytes')} | {kb('largest_activation_bytes')} |"
        )
    if peak:
        lines.append(f"\nSIMD128 peak (one core, wasmtime): {peak:.1f} GFLOP/s")
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
