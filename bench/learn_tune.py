"""Autotuning with real compiles: tuned vs default latency, and the warm start's leave-one-out test.

    PYTHONPATH=. python bench/learn_tune.py                 # bench/results/learn_tune.{json,png}
    PYTHONPATH=. python bench/learn_tune.py --models mlp,cnn,resnet --loo mlp,cnn,resnet --budget 4 --random 4

Every latency here is a ratio to the default configuration measured in the same run: interleaved
rounds, each side's latency the 10th percentile of its samples (wasm_torch/learn/measure.py).

1. Search, per model (the zoo and the small cases of the `wasm-torch bench` suite):
   `tune(model, budget=B, memory=False)` — Optuna TPE, no warm start — with its confirmation runs
   (fresh instances, every run must agree, bootstrap bound < 1). Its confirmed gain is what a user
   gets: "tuned vs default" (1.0 when the tuner kept the default). Then R random configurations,
   drawn uniformly without replacement, each measured once the same way.
2. Leave one out (>= 6 architectures): a fresh memory folder learns from every *other* model's
   search and random outcomes the way the tuner would have — `post_query` for each, one MicroLoRA
   step each, the ReasoningBank's one-knob moves, then background consolidation rounds (fold,
   cost-model fit, EWC) — and the tuner's own warm start (`Tuner.warm_start`: pre_query
   suggestions, the bank's moves, the cost model's picks) proposes up to S configurations for the
   held-out model, measured in order.
3. Race, per model: a single measurement is off by a few percent, now and then by much more (one
   instance, one busy stretch), so every configuration that is judged — each random one, each
   warm-start suggestion — is timed again side by side with the others in the same rounds against
   the default (`CompileMeasurer.race`), with the tuner's choice and search best, the search's
   other trials within `--band` of the lowest single ratio (at most `--finalists`), and a control:
   a second instance of the default, whose true ratio is 1 and whose measured one shows the noise.
   `--race-runs` runs, each with freshly loaded instances; a configuration's ratio is the median
   of its runs' ratios. "The best found" is the lowest of them (or the default); a configuration
   is within 5 % of it when its ratio is <= best x 1.05.
   Warm start: trials to within 5 % = position of the first suggestion within 5 %. Random search:
   the expected position of the first within-5 % configuration in a random order of the R measured
   ones, (R + 1) / (K + 1) with K of them within 5 % (R + 1, a floor, when K = 0). Random and
   warm-start configurations are judged by the same race.
   The goal holds for a model when warm <= random / 4. When the default itself is within 5 % of
   the best found, both need zero trials and the model says nothing about the warm start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wasm_torch.errors import WasmTorchError
from wasm_torch.learn.background import BackgroundLearner
from wasm_torch.learn.compile_space import CompileSpace
from wasm_torch.learn.features import pattern_of_model
from wasm_torch.learn.machine import current_machine
from wasm_torch.learn.measure import CompileMeasurer
from wasm_torch.learn.memory import PatternMemory
from wasm_torch.learn.reasoning import BANK, ReasoningBank
from wasm_torch.learn.tuner import Trial, Tuner, cost_model_path, learn_moves, load_cost_model, tune

ZOO = "mlp,cnn,resnet,mobilenet,transformer_encoder,gpt2,vit,bert"
DEFAULT_MODELS = ZOO + ",suite:mlp,suite:gemm512"
WITHIN = 1.05


def build(name: str) -> tuple[Any, tuple, Any]:
    if name.startswith("suite:"):
        from wasm_torch.benchmark.models import CASES
        from wasm_torch.benchmark.models import build as build_case

        model, example, _ = build_case(CASES[name[6:]])
        return model, example, None
    from wasm_torch.zoo.models import build as build_zoo

    return build_zoo(name)


def row(cfg: dict, m: Any = None, error: str = "", **kw: Any) -> dict[str, Any]:
    if m is None:
        return {"config": cfg, "error": error, **kw}
    return {"config": cfg, "ratio": m.ratio, "latency_s": m.latency_s, "baseline_s": m.baseline_s, "spread": m.spread,
            "state": "pruned" if m.stopped_early else "complete", **kw}


def measure_row(meas: CompileMeasurer, cfg: dict, **kw: Any) -> dict[str, Any]:
    try:
        return row(cfg, meas.measure(cfg), **kw)
    except WasmTorchError as e:  # a configuration that does not build or validate is a result too
        return row(cfg, error=f"{type(e).__name__}: {str(e)[:200]}", **kw)


def ok(r: dict) -> bool:
    return r.get("ratio") is not None and r.get("state", "complete") == "complete"


def load1() -> float:
    return round(os.getloadavg()[0], 2)


# ---- 1. search ------------------------------------------------------------------------------------
def search(name: str, space: CompileSpace, rng: np.random.Generator, a: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    model, inputs, dyn = build(name)
    pattern = pattern_of_model(model, inputs, dyn)
    meas = CompileMeasurer(model, inputs, space, dyn, rounds=a.rounds, keep_artifacts=True)
    r = tune(model, inputs, budget=a.budget, dynamic_shapes=dyn, memory=False, space=space, pattern=pattern,
             measurer=meas, seed=a.seed, confirm=a.confirm, rounds=a.rounds)
    tpe = [row(t.config, t.measurement, source=t.source) if t.measurement else row(t.config, error=t.error, source=t.source)
           for t in r.trials if t.source != "default"]
    seen = {space.key(space.default())}
    rand = []
    while len(rand) < a.random:
        c = space.sample(rng)
        if space.key(c) not in seen:
            seen.add(space.key(c))
            rand.append(measure_row(meas, c, source="random"))
    default = space.default()
    out = {
        "pattern": pattern.summary,
        "tuned_gain": r.gain,
        "significant": r.significant,
        "search_best_gain": r.search_best_gain,
        "baseline_ms": r.confirm.baseline_s * 1e3 if r.confirm else None,
        "tuned_ms": r.confirm.latency_s * 1e3 if r.confirm else None,
        "confirm_ratio_upper95": r.confirm.upper() if r.confirm else None,
        "chosen": {k: v for k, v in r.config.items() if v != default[k]},
        "chosen_config": r.config,
        "search_best": r.search_best,
        "tpe_trials": tpe,
        "confirm_runs": [row(r.search_best, m, source="confirm") for m in r.confirm_runs],
        "random_trials": rand,
        "load_at_end": load1(),
        "search_seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"{name}: tuned {r.gain:.3f}x (search best {r.search_best_gain:.3f}x, confirmed: {r.significant}); "
          f"{len(rand)} random; {out['search_seconds']:.0f} s, load {out['load_at_end']}", flush=True)
    return {"result": out, "meas": meas, "pattern": pattern}


# ---- 2. leave one out -----------------------------------------------------------------------------
def learned_memory(folder: Path, others: list[str], runs: dict, space: CompileSpace) -> dict[str, Any]:
    """A memory folder that learned from `others` the way tuning them would have taught it."""
    mem = PatternMemory(folder)
    bank = ReasoningBank(folder / BANK)
    learner = BackgroundLearner(mem, [space])
    rows = moves = rounds = 0
    for other in others:
        pat = runs[other]["pattern"]
        res = runs[other]["result"]
        cost = load_cost_model(folder, space)
        trials = [Trial(space.default(), "default", 1.0)]
        for t in res["tpe_trials"] + res["random_trials"] + res["confirm_runs"]:
            if not ok(t):
                continue
            mem.post_query(pat, t["config"], t["latency_s"], t["baseline_s"], space.id)
            x = np.concatenate([pat.vector, space.encode(t["config"])]).astype(np.float64)
            cost.adapt(x, pat.gates.astype(np.float64), float(np.log(t["ratio"])))
            if t["source"] != "confirm":
                trials.append(Trial(t["config"], t["source"], t["ratio"]))
            rows += 1
        cost.save(cost_model_path(folder, space))
        moves += learn_moves(bank, space, pat, trials)
        while learner.step().did != "idle":  # consolidation between two tuning runs
            pass
        rounds += 1
    return {"outcomes": rows, "bank_updates": moves, "consolidation_rounds": rounds, "memory": mem}


def warm_start(held: str, runs: dict, names: list[str], space: CompileSpace, a: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="learn_tune_loo_") as tmp:
        info = learned_memory(Path(tmp), [n for n in names if n != held], runs, space)
        tuner = Tuner(space, runs[held]["meas"], runs[held]["pattern"], info.pop("memory"), seed=a.seed,
                      learn=False, progress=False)
        proposals = tuner.warm_start(limit=a.suggest)
    res = runs[held]["result"]
    known = {space.key(t["config"]): t for t in res["tpe_trials"] + res["random_trials"] if ok(t)}
    measured = []
    for cfg, source in proposals:
        k = space.key(cfg)
        if k in known:  # measured by the search already: the same kind of measurement, not repeated
            measured.append({**known[k], "source": source, "reused": True})
        else:
            measured.append(measure_row(runs[held]["meas"], cfg, source=source))
    print(f"LOO {held}: {len(measured)} warm-start suggestions ({', '.join(s for _, s in proposals)}) "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    return {**info, "suggestions": measured, "seconds": round(time.perf_counter() - t0, 1)}


# ---- 3. race ----------------------------------------------------------------------------------------
def race(name: str, runs: dict, space: CompileSpace, a: argparse.Namespace) -> dict[str, Any]:
    res = runs[name]["result"]
    warm = res.get("warm_start", {}).get("suggestions", [])
    default = space.default()
    # judged configurations (every random one, every warm-start suggestion) and the tuner's result
    must = [res["chosen_config"], res["search_best"]] + [t["config"] for t in res["random_trials"] + warm if ok(t)]
    # the search's other good ones, to find the best: within --band of its lowest single ratio
    tpe = sorted((t for t in res["tpe_trials"] if ok(t)), key=lambda t: t["ratio"])
    lowest = min((t["ratio"] for t in tpe + res["random_trials"] + warm if ok(t)), default=1.0)
    extra = [t["config"] for t in tpe if t["ratio"] <= lowest * a.band][: a.finalists]
    finalists: dict[str, dict] = {space.key(default): default}  # the control: a second default instance
    for cfg in must + extra:
        finalists.setdefault(space.key(cfg), cfg)
    t0 = time.perf_counter()
    ms = runs[name]["meas"].race(list(finalists.values()), rounds=a.race_rounds, runs=a.race_runs)
    ratios = {k: {"ratio": float(np.median(m.info["run_ratios"])), "pooled_ratio": m.ratio,
                  "run_ratios": m.info["run_ratios"]} for k, m in zip(finalists, ms, strict=True)}
    control = ratios.pop(space.key(default))
    best_key = min(ratios, key=lambda k: ratios[k]["ratio"], default=space.key(default))
    best = min(1.0, ratios[best_key]["ratio"]) if ratios else 1.0
    print(f"race {name}: {len(finalists)} raced, best {1 / best:.3f}x, control (default vs itself) "
          f"{control['ratio']:.3f} ({time.perf_counter() - t0:.0f} s, load {load1()})", flush=True)
    return {
        "best_ratio": best,
        "best_config": json.loads(best_key) if best < 1.0 else default,
        "control": control,
        "ratios": ratios,
        "raced": len(finalists),
        "seconds": round(time.perf_counter() - t0, 1),
        "load_at_end": load1(),
    }


def judged(t: dict, space: CompileSpace, raced: dict) -> float | None:
    """A configuration's ratio: from the race when it was raced, else its single measurement."""
    if not ok(t):
        return None
    k = space.key(t["config"])
    return raced[k]["ratio"] if k in raced else t["ratio"]


def loo_row(name: str, res: dict, space: CompileSpace, a: argparse.Namespace) -> dict[str, Any]:
    rc = res["race"]
    best, raced = rc["best_ratio"], rc["ratios"]
    limit = best * WITHIN
    warm = res["warm_start"]["suggestions"]
    warm_r = [judged(t, space, raced) for t in warm]
    warm_hit = next((i + 1 for i, r in enumerate(warm_r) if r is not None and r <= limit), None)
    rand = res["random_trials"]
    k = sum(1 for t in rand if (r := judged(t, space, raced)) is not None and r <= limit)
    rand_expected = (len(rand) + 1) / (k + 1)
    default_within = limit >= 1.0
    return {
        "best_gain": 1 / best,
        "default_within_5pct": default_within,
        "warm_ratios": warm_r,
        "warm_sources": [t["source"] for t in warm],
        "warm_trials_to_within_5pct": 0 if default_within else warm_hit,
        "random_within_5pct": k,
        "random_measured": len(rand),
        "random_expected_trials_to_within_5pct": 0 if default_within else rand_expected,
        "random_is_floor": k == 0 and not default_within,
        "goal_met": (not default_within) and warm_hit is not None and 4 * warm_hit <= rand_expected,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--loo", default=ZOO, help="models in the leave-one-out test (>= 6 architectures)")
    ap.add_argument("--budget", type=int, default=12, help="TPE trials per model")
    ap.add_argument("--confirm", type=int, default=3, help="confirmation runs of the tuner's winner")
    ap.add_argument("--random", type=int, default=16, help="random configurations per model")
    ap.add_argument("--suggest", type=int, default=4, help="warm-start configurations measured per held-out model")
    ap.add_argument("--rounds", type=int, default=41, help="interleaved rounds per single measurement")
    ap.add_argument("--race-rounds", type=int, default=31)
    ap.add_argument("--race-runs", type=int, default=3, help="race runs (fresh instances each); the median counts")
    ap.add_argument("--finalists", type=int, default=6, help="most further TPE trials raced per model")
    ap.add_argument("--band", type=float, default=1.15, help="race TPE trials whose single ratio is within this factor of the lowest")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/learn_tune.json")
    a = ap.parse_args()
    models = [m for m in a.models.split(",") if m]
    loo = [m for m in a.loo.split(",") if m]
    if not set(loo) <= set(models):
        ap.error(f"--loo models must be among --models: {sorted(set(loo) - set(models))}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    space = CompileSpace()
    rng = np.random.default_rng(a.seed)
    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "command": "PYTHONPATH=. python bench/learn_tune.py " + " ".join(sys.argv[1:]),
        "machine": {**current_machine().__dict__, "key": current_machine().key, "load_at_start": load1()},
        "space": space.describe(),
        "settings": {k: v for k, v in vars(a).items() if k not in ("models", "loo", "out")},
        "models": {},
    }

    def save() -> None:
        out.write_text(json.dumps(res, indent=1, default=float))

    runs: dict[str, dict] = {}
    try:
        for name in models:
            runs[name] = search(name, space, rng, a)
            res["models"][name] = runs[name]["result"]
            save()
        for held in loo:
            runs[held]["result"]["warm_start"] = warm_start(held, runs, loo, space, a)
            save()
        for name in models:
            runs[name]["result"]["race"] = race(name, runs, space, a)
            save()
    finally:
        for r in runs.values():
            r["meas"].close()
    summarize(res, models, loo, space, a)
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    res["machine"]["load_at_end"] = load1()
    save()
    _plot(res, out.with_suffix(".png"))
    print(json.dumps({"tuned": res["tuned"], "loo": res["leave_one_out"]["summary"], "seconds": res["seconds"]}, indent=1))
    return 0


def summarize(res: dict, models: list[str], loo: list[str], space: CompileSpace, a: argparse.Namespace) -> None:
    ms = res["models"]
    chosen_race = {}
    for n in models:
        k = space.key(ms[n]["chosen_config"])
        chosen_race[n] = 1 / ms[n]["race"]["ratios"][k]["ratio"] if k in ms[n]["race"]["ratios"] else 1.0
    geo = lambda xs: float(np.exp(np.mean(np.log(xs))))  # noqa: E731
    res["tuned"] = {
        "per_model": {n: {"confirmed_gain": ms[n]["tuned_gain"], "chosen_gain_in_race": chosen_race[n],
                          "best_found_gain": 1 / ms[n]["race"]["best_ratio"], "chosen": ms[n]["chosen"]}
                      for n in models},
        "geomean_confirmed_gain": geo([ms[n]["tuned_gain"] for n in models]),
        "geomean_chosen_gain_in_race": geo(list(chosen_race.values())),
        "geomean_best_found_gain": geo([1 / ms[n]["race"]["best_ratio"] for n in models]),
        "controls": {n: ms[n]["race"]["control"]["ratio"] for n in models},
    }
    rows = {n: loo_row(n, ms[n], space, a) for n in loo}
    informative = [n for n in loo if not rows[n]["default_within_5pct"]]
    res["leave_one_out"] = {
        "summary": {
            "architectures": len(loo),
            "default_already_within_5pct": len(loo) - len(informative),
            "informative": len(informative),
            "warm_start_within_5pct": sum(1 for n in informative if rows[n]["warm_trials_to_within_5pct"]),
            "goal_met": sum(1 for n in informative if rows[n]["goal_met"]),
        },
        "rows": rows,
    }
    for n in loo:
        r = rows[n]
        print(f"LOO {n}: best {r['best_gain']:.3f}x; default within 5%: {r['default_within_5pct']}; warm start hit "
              f"at {r['warm_trials_to_within_5pct']}; random expects {r['random_expected_trials_to_within_5pct']:.2f}"
              f"{' (floor)' if r['random_is_floor'] else ''}; goal met: {r['goal_met']}", flush=True)


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = res["tuned"]["per_model"]
    names = list(per)
    x = np.arange(len(names))
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.2))
    ax[0].bar(x - 0.27, [per[n]["confirmed_gain"] for n in names], 0.27, color="#4f81bd", label="tuner's result (confirmed)")
    ax[0].bar(x, [per[n]["chosen_gain_in_race"] for n in names], 0.27, color="#9bbb59", label="its choice, re-raced")
    ax[0].bar(x + 0.27, [per[n]["best_found_gain"] for n in names], 0.27, color="#c0504d", label="best found (race)")
    ax[0].axhline(1.0, color="k", lw=0.8)
    ax[0].set_xticks(x, names, rotation=45, ha="right")
    ax[0].set(title=f"speed vs default (geomean tuned {res['tuned']['geomean_confirmed_gain']:.3f}x)")
    ax[0].legend(fontsize=7)
    rows = res["leave_one_out"]["rows"]
    ln = list(rows)
    x = np.arange(len(ln))
    ax[1].bar(x - 0.2, [rows[n]["warm_trials_to_within_5pct"] or 0 for n in ln], 0.4, color="#4f81bd",
              label="warm start (0: default within 5 %, or no hit)")
    ax[1].bar(x + 0.2, [rows[n]["random_expected_trials_to_within_5pct"] for n in ln], 0.4, color="#9bbb59",
              label="random search, expected")
    ax[1].set_xticks(x, ln, rotation=45, ha="right")
    ax[1].set(title="trials to within 5 % of the best found (leave one out)")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
