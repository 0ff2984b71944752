"""Forgetting in the MicroLoRA cost model, with and without EWC (lambda 5000), on synthetic model
families with known answers (wasm_torch/learn/synthetic.py).

    PYTHONPATH=. python bench/learn_costmodel.py    # bench/results/learn_costmodel.{json,png}

Per seed: fit the base on both families' default configuration, adapt online to family A (conv
+ elementwise) for 3 epochs of 400 measurements, then (with EWC: consolidate on A first) to family
B (gemm + elementwise). Errors are RMSE of predicted vs true log-latency on held-out rows. Reported:
A's error after A, after B (forgetting = the ratio), B's error before and after B (what EWC costs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from wasm_torch.learn.costmodel import Batch, MicroLoRACostModel
from wasm_torch.learn.synthetic import make_world


def rmse(m: MicroLoRACostModel, b: Batch) -> float:
    return float(np.sqrt(np.mean((m.predict(b.x, b.gates) - b.y) ** 2)))


def run(ewc: bool, seed: int, n: int, epochs: int) -> dict[str, float]:
    w = make_world(seed)
    rng = np.random.default_rng(seed + 1)
    pre = [w.batch(f, 300, rng, default_only=True) for f in ("conv", "gemm")]
    pre_b = Batch(*(np.concatenate([getattr(b, k) for b in pre]) for k in ("x", "gates", "y")))
    m = MicroLoRACostModel(w.space.width, seed=seed)
    m.fit(pre_b, epochs=400)
    test_a, test_b = w.batch("conv", 300, rng), w.batch("gemm", 300, rng)
    a, b = w.batch("conv", n, rng), w.batch("gemm", n, rng)
    m.adapt_batch(a, epochs=epochs)
    out = {"a_after_a": rmse(m, test_a), "b_before_b": rmse(m, test_b)}
    if ewc:
        m.consolidate(a)
    m.adapt_batch(b, epochs=epochs)
    return {**out, "a_after_b": rmse(m, test_a), "b_after_b": rmse(m, test_b)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="bench/results/learn_costmodel.json")
    a = ap.parse_args()
    rows = []
    for seed in range(a.seeds):
        plain, ewc = run(False, seed, a.n, a.epochs), run(True, seed, a.n, a.epochs)
        rows.append({"seed": seed, "without_ewc": plain, "with_ewc": ewc})

    def agg(kind: str, after: str, before: str) -> dict[str, float]:
        r = np.array([row[kind][after] / row[kind][before] for row in rows])
        return {"median": round(float(np.median(r)), 3), "mean": round(float(r.mean()), 3),
                "min": round(float(r.min()), 3), "max": round(float(r.max()), 3)}

    summary = {
        kind: {"forgetting_a_after_b_over_a_after_a": agg(kind, "a_after_b", "a_after_a"),
               "learning_b_after_over_before": agg(kind, "b_after_b", "b_before_b")}
        for kind in ("without_ewc", "with_ewc")
    }
    res = {"command": "PYTHONPATH=. python bench/learn_costmodel.py " + " ".join(sys.argv[1:]), "ewc_lambda": 5000,
           "summary": summary, "seeds": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    _plot(rows, out.with_suffix(".png"))
    print(json.dumps(summary, indent=1))
    return 0


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(rows))
    for k, (kind, colour) in enumerate((("without_ewc", "#c0504d"), ("with_ewc", "#4f81bd"))):
        ax[0].bar(x + (k - 0.5) * 0.4, [r[kind]["a_after_b"] / r[kind]["a_after_a"] for r in rows], 0.4,
                  color=colour, label=kind.replace("_", " "))
        ax[1].bar(x + (k - 0.5) * 0.4, [r[kind]["b_after_b"] / r[kind]["b_before_b"] for r in rows], 0.4, color=colour)
    ax[0].axhline(1.0, color="k", lw=0.8)
    ax[0].set(title="family A error after learning B / before (lower = kept)", xlabel="seed")
    ax[1].set(title="family B error after learning B / before (lower = learned)", xlabel="seed")
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
