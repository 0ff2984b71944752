"""Honest measurement of one configuration: compiled, validated against PyTorch, and timed
*interleaved* with the default configuration in the same run.

A shared machine's speed drifts by tens of percent over minutes, so a latency measured now is not
comparable with one measured a minute ago. Each round times the default and the candidate back to
back (alternating which goes first), each sample the mean of enough calls to last `min_sample_s`.
Other processes only ever *add* time (a sample that was preempted is slower, never faster), so
each side's latency is a low quantile of its samples — the 10th percentile of 41 short (0.5 ms)
samples: enough of them run undisturbed even when the machine is overloaded, and the estimate does
not hang on the single luckiest one. Measured on our 2-core VM at load average 15, timing one
compiled model against a second copy of itself (true ratio 1.0): this setting gave 0.97–1.03
over six runs for an MLP and a CNN; 15 rounds of 2 ms samples with the 25th percentile gave
0.22–1.41 and 0.92–3.08, the minimum of 61 samples 0.94–1.81 (CNN). Two other estimators failed
too: the per-round median of candidate/default, and the thread's CPU time (`time.thread_time`
undercounts on this VM: some samples of a 1.4 ms call read 0.3 ms).
`Measurement.upper()` bounds the ratio by a paired bootstrap
over rounds; the tuner keeps a winner only when that bound is below 1. After every round the
running ratio is offered to `report`, which may stop a hopeless candidate early (Optuna's pruner
does).

`race` times several artifacts in the same rounds (order rotated each round), each against the
default: the benchmarks use it to re-measure finalists side by side instead of comparing trials
measured minutes apart.

Every instance runs on one thread (`load(..., threads=1)`): the compile options searched here do
not include the thread count, and a 2-thread call on a 2-core machine waits for its slower thread
whenever any other process runs, which made single search measurements report 1.1-1.8x "gains"
that confirmation runs and races never reproduced (bench/learn_tune.py, 2026-12-03).

`Measurer` is the seam: the tuner only calls `measure(config, report)`. Tests plant a fake one
with a known best configuration; benchmarks and users get `CompileMeasurer` (real compiles).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import LearningError

Report = Callable[[int, float], bool]  # (round, running ratio) -> stop now?



QUANTILE = 0.10  # each side's latency: this quantile of its samples (see the module docstring)


@dataclass(frozen=True)
class Measurement:
    """Per-round sample times of the candidate and of the default, measured back to back."""

    candidate: tuple[float, ...]  # seconds per call, one sample per round
    baseline: tuple[float, ...]
    stopped_early: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.candidate or len(self.candidate) != len(self.baseline):
            raise LearningError("a measurement needs the same number (>= 1) of candidate and baseline samples")

    @property
    def latency_s(self) -> float:
        return float(np.quantile(self.candidate, QUANTILE))

    @property
    def baseline_s(self) -> float:
        return float(np.quantile(self.baseline, QUANTILE))

    @property
    def ratio(self) -> float:
        """Candidate / default latency (< 1: the candidate is faster)."""
        return self.latency_s / self.baseline_s

    @property
    def gain(self) -> float:
        return 1.0 / self.ratio

    @property
    def ratios(self) -> tuple[float, ...]:
        """Candidate / default per round."""
        return tuple(c / b for c, b in zip(self.candidate, self.baseline, strict=True))

    @property
    def spread(self) -> float:
        """Median absolute deviation of the per-round ratios: how noisy the run was."""
        r = np.asarray(self.ratios)
        return float(np.median(np.abs(r - np.median(r))))

    @property
    def faster_rounds(self) -> int:
        return int(sum(1 for r in self.ratios if r < 1.0))

    def upper(self, confidence: float = 0.95, resamples: int = 2000) -> float:
        """One-sided upper confidence bound of `ratio`: rounds resampled with replacement (paired
        bootstrap, fixed seed). Below 1.0: faster than the default with that confidence."""
        c, b = np.asarray(self.candidate), np.asarray(self.baseline)
        idx = np.random.default_rng(0).integers(len(c), size=(resamples, len(c)))
        boot = np.quantile(c[idx], QUANTILE, axis=1) / np.quantile(b[idx], QUANTILE, axis=1)
        return float(np.quantile(boot, confidence))

    def merged(self, other: Measurement) -> Measurement:
        return Measurement(self.candidate + other.candidate, self.baseline + other.baseline, False,
                           {**self.info, **other.info})


class Measurer(Protocol):
    def measure(self, config: Mapping[str, Any], report: Report | None = None) -> Measurement: ...


def interleaved(
    baseline: Callable[[], Any],
    candidate: Callable[[], Any],
    rounds: int = 41,
    min_sample_s: float = 0.0005,
    report: Report | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Time two callables alternately; each sample is the mean of enough calls to last min_sample_s."""
    if rounds < 1:
        raise LearningError(f"rounds must be >= 1, got {rounds}")
    for _ in range(2):  # warm caches, JIT tiers, page faults
        baseline()
        candidate()
    t0 = timer()
    baseline()
    one = max(timer() - t0, 1e-7)
    n = max(1, int(min_sample_s / one))

    def sample(fn: Callable[[], Any]) -> float:
        t = timer()
        for _ in range(n):
            fn()
        return (timer() - t) / n

    base_t: list[float] = []
    cand_t: list[float] = []
    stopped = False
    for r in range(rounds):
        if r % 2 == 0:
            b, c = sample(baseline), sample(candidate)
        else:
            c, b = sample(candidate), sample(baseline)
        base_t.append(b)
        cand_t.append(c)
        running = float(np.quantile(cand_t, QUANTILE) / np.quantile(base_t, QUANTILE))
        if report is not None and r < rounds - 1 and report(r, running):
            stopped = True
            break
    return Measurement(tuple(cand_t), tuple(base_t), stopped, {"calls_per_sample": n})


def race(
    fns: Sequence[Callable[[], Any]],
    rounds: int = 31,
    min_sample_s: float = 0.0005,
    timer: Callable[[], float] = time.perf_counter,
) -> list[Measurement]:
    """Time several callables in the same rounds: fns[0] is the reference (the default), each round
    samples every callable once, in an order rotated round by round, so drift and other processes
    hit all of them alike. Returns one Measurement per fns[1:], each against fns[0]'s samples of
    the same rounds. (`interleaved` is the two-callable case with early stopping.)"""
    if rounds < 1:
        raise LearningError(f"rounds must be >= 1, got {rounds}")
    if len(fns) < 2:
        raise LearningError(f"a race needs the reference and at least one candidate, got {len(fns)} callables")
    for _ in range(2):  # warm caches, JIT tiers, page faults
        for fn in fns:
            fn()
    calls = []
    for fn in fns:  # calls per sample, per callable: each sample lasts about min_sample_s
        t0 = timer()
        fn()
        calls.append(max(1, int(min_sample_s / max(timer() - t0, 1e-7))))
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        order = list(range(len(fns)))
        k = r % len(fns)
        order = order[k:] + order[:k]
        if (r // len(fns)) % 2:
            order.reverse()  # each callable also follows every other one, not always the same one
        for i in order:
            t = timer()
            for _ in range(calls[i]):
                fns[i]()
            samples[i].append((timer() - t) / calls[i])
    base = tuple(samples[0])
    return [Measurement(tuple(samples[i]), base, False, {"calls_per_sample": calls[i]}) for i in range(1, len(fns))]


class CompileMeasurer:
    """Compiles each configuration through the real pipeline (validated against PyTorch), loads it
    with wasmtime and times it interleaved with the default configuration's artifact.

    keep_artifacts: keep each configuration's compiled folder (in work_dir) for later `measure` or
    `race` calls instead of compiling it again (benchmarks re-measure finalists; the tuner does
    not need it)."""

    def __init__(
        self,
        model: Any,
        example_inputs: tuple,
        space: Any,  # CompileSpace (to_options)
        dynamic_shapes: Any = None,
        work_dir: str | Path | None = None,
        rounds: int = 41,
        min_sample_s: float = 0.0005,
        atol: float = 1e-4,
        rtol: float = 1e-3,
        keep_artifacts: bool = False,
    ) -> None:
        self.model, self.space, self.dynamic_shapes = model, space, dynamic_shapes
        self.example_inputs = tuple(example_inputs)
        self.rounds, self.min_sample_s, self.atol, self.rtol = rounds, min_sample_s, atol, rtol
        self.keep = keep_artifacts
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="wasm_torch_tune_"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.arrays = [x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x) for x in self.example_inputs]
        self.compiled = 0
        self.default_dir = self._compile(space.default(), "default")
        self._kept: dict[str, Path] = {space.key(space.default()): self.default_dir}

    def artifact(self, config: Mapping[str, Any]) -> tuple[Path, bool]:
        """The compiled (and validated) folder of one configuration, and whether it is kept (False:
        a temporary folder the caller removes with `release`)."""
        key = self.space.key(config)
        if key in self._kept:
            return self._kept[key], True
        out = self._compile(config, f"trial-{self.compiled}")
        if self.keep:
            self._kept[key] = out
        return out, self.keep

    def release(self, folder: Path, kept: bool) -> None:
        if not kept:
            shutil.rmtree(folder, ignore_errors=True)  # our own trial folder only

    def race(self, configs: Sequence[Mapping[str, Any]], rounds: int = 31, runs: int = 3) -> list[Measurement]:
        """Each configuration against the default, all timed in the same rounds (`race`), `runs`
        times with freshly loaded instances of every artifact. Each result pools the runs' samples
        and keeps the per-run ratios in `info["run_ratios"]`: their median is robust to one run
        (one instance) being off, which happens on a loaded machine. The default configuration may
        be among `configs`: a second instance of the default, a control whose true ratio is 1."""
        from ..runtime import load

        if runs < 1:
            raise LearningError(f"runs must be >= 1, got {runs}")
        built: list[tuple[Path, bool]] = []
        try:
            for c in configs:
                built.append(self.artifact(c))
            pooled: list[Measurement | None] = [None] * len(built)
            per_run: list[list[float]] = [[] for _ in built]
            for _ in range(runs):
                mods = [load(d, threads=1) for d in [self.default_dir, *(d for d, _ in built)]]
                fns = [(lambda m=m: m(*self.arrays, copy=False)) for m in mods]
                for i, m in enumerate(race(fns, rounds, self.min_sample_s)):
                    per_run[i].append(m.ratio)
                    p = pooled[i]
                    pooled[i] = m if p is None else p.merged(m)
        finally:
            for d, kept in built:
                self.release(d, kept)
        return [
            Measurement(m.candidate, m.baseline, False, {**m.info, "run_ratios": r})
            for m, r in zip(pooled, per_run, strict=True)
            if m is not None
        ]

    def _compile(self, config: Mapping[str, Any], name: str) -> Path:
        from ..compiler.pipeline import compile as compile_model

        out = self.work_dir / name
        compile_model(
            self.model,
            self.example_inputs,
            out,
            dynamic_shapes=self.dynamic_shapes,
            options=self.space.to_options(config),
            atol=self.atol,
            rtol=self.rtol,
        )
        self.compiled += 1
        return out

    def measure(self, config: Mapping[str, Any], report: Report | None = None) -> Measurement:
        from ..runtime import load

        t0 = time.perf_counter()
        folder, kept = self.artifact(config)
        try:
            mod = load(folder, threads=1)
            compile_s = time.perf_counter() - t0
            default = load(self.default_dir, threads=1)  # a fresh instance per trial, like the candidate's (see above)
            m = interleaved(
                lambda: default(*self.arrays, copy=False),
                lambda: mod(*self.arrays, copy=False),
                self.rounds,
                self.min_sample_s,
                report,
            )
        finally:
            self.release(folder, kept)
        return Measurement(m.candidate, m.baseline, m.stopped_early, {**m.info, "compile_s": compile_s})

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
