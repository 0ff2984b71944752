"""What differential privacy costs the learning work's warm start (wasm_torch/net/share.py,
wasm_torch/collective/privacy.py), with the learning work's real PatternMemory as the receiver.

A seeded world with known answers: patterns fall in 10 cells (their dominant op group); each cell
has its own true gain for each of 24 candidate configurations (log-gain ~ N(0, 0.25), one planted
best at +0.5), each model varies around its cell (σ 0.1), measurements carry noise (σ 0.05).

20 (or 100) peers each tuned models in 3 random cells (8 configurations measured per model) and share one
release each — exact (ε = ∞, "noiseless"), or ε-DP at ε = 0.1 (the default), 1 and 10; a release
covers `models` tuned models per peer (what one sync interval gathers: 5, 20 or 80 models = 40, 160 or
640 records). The receiver has tuned 10 models of 2 other cells; it then warm-starts a model of a
cell it has never seen: `Sharing.prime` + `PatternMemory.pre_query(k=1)`, exactly as a node would.
Scored by the *true* gain of that first suggestion (default configuration when there is none):
the share of the best achievable log-gain it reaches, mean over 20 target models × 3 worlds.

    python bench/collective_privacy.py [--quick]  -> bench/results/collective_privacy.{json,png}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wasm_torch.collective.privacy import Accountant, Record, release
from wasm_torch.learn.features import DIM, GROUPS, Pattern
from wasm_torch.learn.memory import PatternMemory
from wasm_torch.net.share import ShareOptions, Sharing
from wasm_torch.net.wire import Signer

CELLS, MEASURED = len(GROUPS), 8
CONFIGS = [{"a": a, "b": b, "c": c} for a in range(4) for b in range(3) for c in range(2)]
CANDS = [json.dumps(c, sort_keys=True, separators=(",", ":")) for c in CONFIGS]
CONDITIONS = ("none", "noiseless", "eps=10", "eps=1", "eps=0.1")


class World:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.effect = self.rng.normal(0, 0.25, (CELLS, len(CONFIGS)))
        self.effect[:, 0] = 0.0  # configuration 0 is the default: gain 1 by definition
        for c in range(CELLS):
            self.effect[c, self.rng.integers(1, len(CONFIGS))] += 0.5
        self.centres = self.rng.random((CELLS, DIM))

    def model(self, cell: int) -> tuple[Pattern, np.ndarray]:
        """A model of `cell`: its pattern and its true log-gain per configuration."""
        gates = self.rng.random(CELLS) * 0.3
        gates[cell] = 1.0
        gates /= gates.sum()
        vec = self.centres[cell] + 0.05 * self.rng.standard_normal(DIM)
        truth = self.effect[cell] + 0.1 * self.rng.standard_normal(len(CONFIGS))
        truth[0] = 0.0
        key = f"m{self.rng.integers(1 << 40):010x}"
        return Pattern(vec.astype(np.float32), gates.astype(np.float32), key), truth

    def tune(self, truth: np.ndarray) -> list[tuple[int, float]]:
        """(configuration, measured log-gain) for the default and MEASURED − 1 other configurations."""
        picks = [0, *self.rng.choice(np.arange(1, len(CONFIGS)), MEASURED - 1, replace=False)]
        return [(int(j), float(truth[j] + 0.05 * self.rng.standard_normal())) for j in picks]


def peer_entries(world: World, models: int, eps: float, peer: str) -> list[dict]:
    cells = world.rng.choice(CELLS, 3, replace=False)
    recs = []
    for m in range(models):
        cell = int(cells[m % 3])
        _, truth = world.model(cell)
        for j, lg in world.tune(truth):
            recs.append(Record(f"{peer}-{m}-{j}", cell, CANDS[j], lg))
    out = release(recs, CANDS, CELLS, Accountant(eps if math.isfinite(eps) else 1.0), eps, world.rng)
    return [{**s.to_json(), "from": peer} for s in out]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "collective_privacy.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="wt-privacy-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    sizes = (20,) if a.quick else (5, 20, 80)
    worlds = (0,) if a.quick else (0, 1, 2)
    targets = 8 if a.quick else 20
    peer_counts = (20,) if a.quick else (20, 100)
    runs = [(p, m) for p in peer_counts for m in sizes]
    results: dict[str, dict[str, list[float]]] = {f"{p}/{m}": {c: [] for c in CONDITIONS} for p, m in runs}
    try:
        for seed in worlds:
            for peers, models in runs:
                world = World(seed)
                own_cells = [0, 1]
                shared = {c: [] for c in CONDITIONS}
                for p in range(peers):
                    state = world.rng.bit_generator.state
                    for cond, eps in (("noiseless", math.inf), ("eps=10", 10.0), ("eps=1", 1.0), ("eps=0.1", 0.1)):
                        world.rng.bit_generator.state = state  # the same peer data under every condition
                        shared[cond] += peer_entries(world, models, eps, f"p{p}")
                base = root / f"base-{seed}-{models}"
                mem = PatternMemory(base)
                for k in range(10):
                    pat, truth = world.model(own_cells[k % 2])
                    for j, lg in world.tune(truth):
                        mem.post_query(pat, CONFIGS[j], math.exp(-lg), 1.0)
                del mem
                for t in range(targets):
                    cell = 2 + t % (CELLS - 2)  # never one of the receiver's own cells
                    pat, truth = world.model(cell)
                    best = float(truth.max())
                    for cond in CONDITIONS:
                        folder = root / f"t-{seed}-{models}-{t}-{cond}"
                        shutil.copytree(base, folder)
                        mem = PatternMemory(folder)
                        if cond != "none":
                            sh = Sharing(ShareOptions(mem, CONFIGS, interval_s=60), Signer.generate(), folder / "share")
                            sh.received["entries"] = shared[cond]
                            sh.prime(mem, pat)
                        got = mem.pre_query(pat, k=1)
                        j = CANDS.index(json.dumps(got[0].config, sort_keys=True, separators=(",", ":"))) if got else 0
                        results[f"{peers}/{models}"][cond].append(float(truth[j] / best) if best > 0 else 1.0)
                        shutil.rmtree(folder)
                got = results[f"{peers}/{models}"]
                print(f"world {seed}, {peers} peers, {models} models per peer per release: "
                      + ", ".join(f"{c} {np.mean(got[c][-targets:]):.3f}" for c in CONDITIONS), flush=True)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {m: {c: {"mean": float(np.mean(v)), "sem": float(np.std(v) / math.sqrt(len(v))), "n": len(v)}
                   for c, v in r.items()} for m, r in results.items()}  # fmt: skip
    print("\nshare of the best achievable log-gain reached by the first warm-start suggestion (mean ± s.e.):")
    print("| peers | models per peer per release (records) | " + " | ".join(CONDITIONS) + " |")
    print("|---|---|" + "---|" * len(CONDITIONS))
    for key, r in summary.items():
        peers, m = key.split("/")
        print(f"| {peers} | {m} ({int(m) * MEASURED}) | "
              + " | ".join(f"{r[c]['mean']:.3f} ± {r[c]['sem']:.3f}" for c in CONDITIONS) + " |")  # fmt: skip
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python bench/collective_privacy.py " + " ".join(sys.argv[1:]), "cells": CELLS,
           "configs": len(CONFIGS), "peers": list(peer_counts), "measured_per_model": MEASURED, "targets_per_world": targets,
           "worlds": list(worlds), "summary": summary, "python": platform.python_version(),
           "load_average": os.getloadavg(), "seconds": time.perf_counter() - t0}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    plot(summary, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    keys = list(summary)
    x = np.arange(len(keys))
    for j, c in enumerate(CONDITIONS):
        ax.bar(x + j * 0.16, [summary[k][c]["mean"] for k in keys], 0.16,
               yerr=[summary[k][c]["sem"] for k in keys], label=c)  # fmt: skip
    ax.set_xticks(x + 0.32, [f"{k.split('/')[0]} peers\n{k.split('/')[1]} models/release" for k in keys])
    ax.set_ylabel("first suggestion: share of the best log-gain")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
