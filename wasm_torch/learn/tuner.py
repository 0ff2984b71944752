"""The autotuner: Optuna searches the compile options by measured trials, warm-started by what the
pattern memory, the ReasoningBank and the MicroLoRA cost model already know.

    result = tune(model, inputs, budget=20)              # CompileMeasurer: real compiles, this machine
    art = compile_tuned(model, inputs, "out/m", result)  # the chosen options + a `tuning` manifest record

Order of a run:
1. the model's pattern (features.py); the default configuration is recorded as trial 0 with
   ratio 1.0 (it is the reference every trial is timed against, so it needs no trial of its own);
2. warm start, enqueued before anything else: `pre_query` suggestions, the ReasoningBank's best
   known moves from the default, the cost model's best-predicted configurations (when trained);
3. Optuna's TPE sampler proposes the rest (ask/tell, so a configuration measured once is never
   measured again); a percentile pruner stops a trial whose running ratio after ten rounds is in
   the worst quarter of what earlier trials had at that point;
4. every measurement is recorded at once: `post_query` (fsynced), one MicroLoRA step (the
   confirmation runs of step 5 too);
5. the best is re-measured (`confirm` more interleaved runs, each with fresh instances of both
   artifacts) and kept only if every run finds it faster and the upper 95 % bootstrap bound of the
   pooled ratio is below 1 (measure.py); otherwise the result is the default configuration with
   gain 1.0 — selection among noisy trials favours lucky ones;
6. the ReasoningBank learns from every pair of measured configurations one knob apart.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LearningError, WasmTorchError
from .costmodel import MicroLoRACostModel
from .features import Pattern
from .measure import Measurement, Measurer
from .memory import PatternMemory
from .reasoning import BANK, ReasoningBank, action_key, state_signature
from .space import SearchSpace

MIN_BUDGET = 1
COST_MODEL_MIN_STEPS = 20  # the cost model's suggestions count once it has learned from this many


def cost_model_path(folder: Path, space: SearchSpace) -> Path:
    return folder / f"costmodel-{space.id}.npz"


def load_cost_model(folder: Path, space: SearchSpace) -> MicroLoRACostModel:
    path = cost_model_path(folder, space)
    return MicroLoRACostModel.load(path, space.width) if path.exists() else MicroLoRACostModel(space.width)


@dataclass
class Trial:
    config: dict[str, Any]
    source: str  # "default" | "memory" | "reasoning bank" | "cost model" | "search"
    ratio: float | None = None  # candidate / default latency (measure.py); None = failed
    state: str = "complete"  # complete | pruned | failed
    error: str = ""
    measurement: Measurement | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config": self.config, "source": self.source, "state": self.state}
        if self.ratio is not None:
            out["ratio"] = round(self.ratio, 5)
        if self.measurement is not None:
            out["spread"] = round(self.measurement.spread, 5)
            out["rounds"] = len(self.measurement.ratios)
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class TuneResult:
    space: SearchSpace
    config: dict[str, Any]  # what to compile with (the default when no significant gain was found)
    gain: float  # default latency / chosen latency, from the confirmation run (1.0 for the default)
    significant: bool
    confirm: Measurement | None
    search_best: dict[str, Any]  # the best configuration found by the search, before confirmation
    search_best_gain: float
    trials: list[Trial] = field(default_factory=list)
    pattern_key: str = ""
    seconds: float = 0.0
    confirm_runs: list[Measurement] = field(default_factory=list)  # the runs pooled into `confirm`

    @property
    def measured(self) -> int:
        return sum(1 for t in self.trials if t.source != "default")

    def options(self) -> Any:
        to = getattr(self.space, "to_options", None)
        if to is None:
            raise LearningError("this search space is not the compiler's: it has no CompileOptions")
        return to(self.config)

    def manifest_record(self) -> dict[str, Any]:
        """The manifest's `tuning` field: what was chosen, what it gained, how it was measured."""
        c = self.confirm
        return {
            "config": self.config,
            "gain": round(self.gain, 4),
            "significant": self.significant,
            "search_best": self.search_best,
            "search_best_gain": round(self.search_best_gain, 4),
            "baseline_ms": round(c.baseline_s * 1e3, 5) if c else None,
            "tuned_ms": round(c.latency_s * 1e3, 5) if c else None,
            "confirm_rounds": len(c.ratios) if c else 0,
            "faster_rounds": c.faster_rounds if c else 0,
            "ratio_upper95": round(c.upper(0.95), 4) if c else None,
            "trials": self.measured,
            "pruned": sum(1 for t in self.trials if t.state == "pruned"),
            "failed": sum(1 for t in self.trials if t.state == "failed"),
            "warm_start": [t.source for t in self.trials if t.source not in ("default", "search")],
            "space": self.space.id,
            "pattern": self.pattern_key,
            "seconds": round(self.seconds, 1),
            "method": "optuna TPE + 75th-percentile pruner; interleaved rounds vs the default (10th-percentile latencies); kept only if the bootstrap upper 95% bound of the ratio is < 1",
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.manifest_record(), "trials": [t.to_json() for t in self.trials]}


class Tuner:
    def __init__(
        self,
        space: SearchSpace,
        measurer: Measurer,
        pattern: Pattern,
        memory: PatternMemory | None = None,
        seed: int = 0,
        learn: bool = True,
        warm_start: bool = True,
        progress: bool = True,
    ) -> None:
        self.space, self.measurer, self.pattern = space, measurer, pattern
        self.memory, self.seed, self.learn, self.warm, self.progress = memory, seed, learn, warm_start, progress
        folder = memory.folder if memory is not None else None
        self.bank = ReasoningBank(folder / BANK) if folder is not None else None
        self.cost = load_cost_model(folder, space) if folder is not None else None
        self.trials: list[Trial] = []
        self._seen: dict[str, Trial] = {}

    # ---- warm start ---------------------------------------------------------------------------------
    def warm_start(self, limit: int) -> list[tuple[dict[str, Any], str]]:
        out: list[tuple[dict[str, Any], str]] = []
        seen = {self.space.key(self.space.default())}

        def add(cfg: Mapping[str, Any], source: str) -> None:
            try:
                full = self.space.complete(cfg)
            except LearningError:
                return  # recorded under an older space: skip
            k = self.space.key(full)
            if k not in seen and len(out) < limit:
                seen.add(k)
                out.append((full, source))

        if not self.warm or limit <= 0:
            return out
        if self.memory is not None:
            for s in self.memory.pre_query(self.pattern, k=3, space=self.space.id):
                if s.expected_gain > 1.0:
                    add(s.config, "memory")
        if self.bank is not None:
            cfg = self.space.default()
            for _ in range(2):  # follow the best known moves from the default
                move = self.bank.best_move(state_signature(self.pattern, self.space.id, self.space.key(cfg)))
                if move is None:
                    break
                knob, value = json.loads(move[0])
                if knob not in {k.name for k in self.space}:
                    break
                cfg = {**cfg, knob: value}
                add(cfg, "reasoning bank")
        if self.cost is not None and self.cost.steps >= COST_MODEL_MIN_STEPS:
            for cfg in self._cost_model_best(2):
                add(cfg, "cost model")
        return out

    def _cost_model_best(self, k: int) -> list[dict[str, Any]]:
        assert self.cost is not None
        rng = np.random.default_rng(self.seed)
        cands = self.space.all() if self.space.size <= 20_000 else [self.space.sample(rng) for _ in range(20_000)]
        enc = np.stack([self.space.encode(c) for c in cands])
        x = np.concatenate([np.repeat(self.pattern.vector[None, :], len(cands), 0), enc], axis=1)
        pred = self.cost.predict(x, np.repeat(self.pattern.gates[None, :], len(cands), 0))
        default = self.cost.predict(
            np.concatenate([self.pattern.vector, self.space.encode(self.space.default())])[None, :],
            self.pattern.gates[None, :],
        )[0]
        order = np.argsort(pred)
        return [cands[i] for i in order[:k] if pred[i] < default]

    # ---- the search -----------------------------------------------------------------------------------
    def run(self, budget: int, confirm: int = 3) -> TuneResult:
        import optuna

        if budget < MIN_BUDGET:
            raise LearningError(f"budget must be at least {MIN_BUDGET} measured trial(s), got {budget}")
        t0 = time.perf_counter()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions = {k.name: optuna.distributions.CategoricalDistribution(k.choices) for k in self.space}
        study = optuna.create_study(
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=max(3, budget // 4)),
            # stop a trial whose running ratio after 10 rounds is in the worst quarter of earlier trials'
            pruner=optuna.pruners.PercentilePruner(75.0, n_startup_trials=3, n_warmup_steps=9),
        )
        default = self.space.default()
        study.add_trial(optuna.trial.create_trial(params=default, distributions=distributions, value=1.0))
        self._record(Trial(default, "default", 1.0))
        sources: dict[str, str] = {}
        for cfg, source in self.warm_start(limit=max(1, budget // 2)):
            study.enqueue_trial(cfg)
            sources[self.space.key(cfg)] = source
        bar = self._bar(budget)
        measured, asked = 0, 0
        while measured < budget and asked < 20 * budget + 50:
            asked += 1
            trial = study.ask(distributions)
            cfg = {k.name: trial.params[k.name] for k in self.space}
            key = self.space.key(cfg)
            if key in self._seen:  # measured before: tell Optuna the answer without measuring again
                old = self._seen[key]
                if old.state == "complete" and old.ratio is not None:
                    study.tell(trial, old.ratio)
                else:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED if old.state == "pruned" else
                               optuna.trial.TrialState.FAIL)
                continue
            t = self._measure(trial, cfg, sources.get(key, "search"))
            measured += 1
            if t.state == "complete":
                study.tell(trial, t.ratio)
            elif t.state == "pruned":
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if bar is not None:
                best = min((x.ratio for x in self.trials if x.state == "complete" and x.ratio), default=1.0)
                bar.set_postfix_str(f"best {1 / best:.3f}x ({t.source})")
                bar.update(1)
        if bar is not None:
            bar.close()
        result = self._conclude(confirm)
        if self.learn:
            self._learn_moves()
            if self.cost is not None and self.memory is not None:
                self.cost.save(cost_model_path(self.memory.folder, self.space))
        result.seconds = time.perf_counter() - t0
        return result

    def _bar(self, budget: int) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=budget, desc="tune", unit="trial", leave=True)

    def _measure(self, trial: Any, cfg: dict[str, Any], source: str) -> Trial:
        def report(step: int, ratio: float) -> bool:
            trial.report(ratio, step)
            return bool(trial.should_prune())

        try:
            m = self.measurer.measure(cfg, report)
        except WasmTorchError as e:  # a configuration that does not build or validate is a result too
            t = Trial(cfg, source, None, "failed", f"{type(e).__name__}: {str(e)[:300]}")
            self._record(t)
            return t
        t = Trial(cfg, source, m.ratio, "pruned" if m.stopped_early else "complete", measurement=m)
        self._record(t)
        if self.learn:
            self._remember(cfg, m)
        return t

    def _record(self, t: Trial) -> None:
        self.trials.append(t)
        self._seen[self.space.key(t.config)] = t

    def _remember(self, cfg: dict[str, Any], m: Measurement) -> None:
        if self.memory is not None:
            self.memory.post_query(self.pattern, cfg, m.latency_s, m.baseline_s, self.space.id)
        if self.cost is not None:
            x = np.concatenate([self.pattern.vector, self.space.encode(cfg)]).astype(np.float64)
            self.cost.adapt(x, self.pattern.gates.astype(np.float64), float(np.log(m.ratio)))

    def _conclude(self, confirm: int) -> TuneResult:
        done = [t for t in self.trials if t.state == "complete" and t.ratio is not None and t.source != "default"]
        default = self.space.default()
        if not done:
            return TuneResult(self.space, default, 1.0, False, None, default, 1.0, self.trials, self.pattern.key)
        best = min(done, key=lambda t: t.ratio or math.inf)
        assert best.ratio is not None
        if best.ratio >= 1.0 or best.measurement is None:
            return TuneResult(
                self.space, default, 1.0, False, None, best.config, 1.0 / best.ratio, self.trials, self.pattern.key
            )
        # confirm=0: judge the winner on its own search measurement (biased towards luck: see above)
        runs = [self.measurer.measure(best.config) for _ in range(confirm)] or [best.measurement]
        if self.learn and confirm > 0:
            for r in runs:  # re-measurements are outcomes too: the memory learns the winner's real gain
                self._remember(best.config, r)
        pooled = runs[0]
        for r in runs[1:]:
            pooled = pooled.merged(r)
        # every confirmation run (fresh instances each) must agree, and the pooled bound must be < 1
        significant = all(r.ratio < 1.0 for r in runs) and pooled.upper(0.95) < 1.0
        return TuneResult(
            self.space,
            best.config if significant else default,
            pooled.gain if significant else 1.0,
            significant,
            pooled,
            best.config,
            1.0 / best.ratio,
            self.trials,
            self.pattern.key,
            confirm_runs=runs if confirm > 0 else [],
        )

    def _learn_moves(self) -> None:
        if self.bank is not None:
            learn_moves(self.bank, self.space, self.pattern, self.trials)


def learn_moves(bank: ReasoningBank, space: SearchSpace, pattern: Pattern, trials: list[Trial]) -> int:
    """Q-updates for every pair of measured configurations of one model that differ in exactly one
    knob (the default counts, with ratio 1.0); returns how many updates were recorded."""
    done = [t for t in trials if t.state == "complete" and t.ratio]
    n = 0
    for a in done:
        for b in done:
            diff = [k.name for k in space if json.dumps(a.config[k.name]) != json.dumps(b.config[k.name])]
            if len(diff) != 1:
                continue
            assert a.ratio is not None and b.ratio is not None
            s = state_signature(pattern, space.id, space.key(a.config))
            s2 = state_signature(pattern, space.id, space.key(b.config))
            bank.record(s, action_key(diff[0], b.config[diff[0]]), math.log(a.ratio / b.ratio), s2)
            n += 1
    return n


def tune(
    model: Any,
    example_inputs: Any,
    *,
    budget: int = 20,
    dynamic_shapes: Any = None,
    memory: PatternMemory | str | Path | bool | None = None,
    measurer: Measurer | None = None,
    space: SearchSpace | None = None,
    pattern: Pattern | None = None,
    seed: int = 0,
    confirm: int = 3,
    rounds: int = 41,
    warm_start: bool = True,
    learn: bool = True,
    progress: bool = False,
    work_dir: str | Path | None = None,
) -> TuneResult:
    """Search the compile options for `model` on this machine with `budget` measured trials.

    memory: a PatternMemory, a folder, None for the default folder (~/.cache/wasm_torch/learn), or
    False for none (no warm start, nothing recorded). measurer / space / pattern replace the real
    ones (tests plant a known answer through them)."""
    from .features import pattern_of_model

    if not isinstance(example_inputs, tuple | list):
        example_inputs = (example_inputs,)
    if space is None:
        from .compile_space import CompileSpace

        space = CompileSpace()
    if memory is False:
        mem = None
    elif isinstance(memory, PatternMemory):
        mem = memory
    else:
        mem = PatternMemory(memory if memory not in (None, True) else None)  # type: ignore[arg-type]
    if pattern is None:
        pattern = pattern_of_model(model, tuple(example_inputs), dynamic_shapes)
    own = measurer is None
    if measurer is None:
        from .measure import CompileMeasurer

        measurer = CompileMeasurer(model, tuple(example_inputs), space, dynamic_shapes, work_dir, rounds=rounds)
    try:
        return Tuner(space, measurer, pattern, mem, seed, learn, warm_start, progress).run(budget, confirm)
    finally:
        if own:
            measurer.close()  # type: ignore[attr-defined]


def compile_tuned(
    model: Any, example_inputs: Any, out_dir: str | Path, result: TuneResult, dynamic_shapes: Any = None, **kw: Any
) -> Any:
    """Compile with the tuned options and add the `tuning` record to the manifest."""
    from ..artifact import add_manifest_fields
    from ..compiler.pipeline import compile as compile_model

    art = compile_model(model, example_inputs, out_dir, dynamic_shapes=dynamic_shapes, options=result.options(), **kw)
    manifest = add_manifest_fields(Path(out_dir), {"tuning": result.manifest_record()})
    art.manifest = manifest
    return art
