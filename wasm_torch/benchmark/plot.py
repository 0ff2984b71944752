"""The benchmark chart: grouped bars of latency per model and system at each thread count (log
scale; one color per system, hatched at more than one thread), each model annotated with
ours / ORT-Web at every thread count. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .models import BASES, LABELS, system_key

COLORS = {"ours": "#d62728", "ortweb": "#1f77b4", "ort_native": "#7f7f7f", "torch": "#ff7f0e"}


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    raw = result["settings"]["threads"]
    threads = tuple(raw) if isinstance(raw, list) else (1,)
    keys = [(b, t, system_key(b, t)) for b in BASES for t in threads]
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(7.0, 2.0 * len(rows) + 2), 5.0))
    for k, (base, t, key) in enumerate(keys):
        xs = [i + (k - (len(keys) - 1) / 2) * width for i, r in enumerate(rows) if r.get(f"{key}_ms")]
        ys = [r[f"{key}_ms"] for r in rows if r.get(f"{key}_ms")]
        ax.bar(xs, ys, width, label=LABELS[key], color=COLORS[base], hatch="//" if t > 1 else None,
               edgecolor="white" if t > 1 else None)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("latency, ms (median, log scale)")
    for i, r in enumerate(rows):
        top = max((r[f"{key}_ms"] for *_, key in keys if r.get(f"{key}_ms")), default=None)
        if top is None:
            continue
        ratios = [(t, r.get(f"{system_key('ours', t)}_vs_ortweb")) for t in threads]
        notes = [f"{t}t {x:.2f}x" for t, x in ratios if x]
        note = "\n".join(notes) if notes else ("ours: error" if "error" in r else "")
        ax.annotate(note, (i, top * 1.15), ha="center", fontsize=7)
    m = result["machine"]
    ax.set_title(
        f"ours / ORT-Web latency ratio above each group, per thread count (< 1 = ours faster)\n{m['cpu']}, "
        f"{m['cores']} cores, load average {m['loadavg_at_start'][0]} at start, {m['date']}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ms = [r[f"{key}_ms"] for r in rows for *_, key in keys if r.get(f"{key}_ms")] or [1.0]
    ax.set_ylim(min(ms) / 3, max(ms) * 10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
