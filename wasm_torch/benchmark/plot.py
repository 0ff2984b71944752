"""The benchmark chart: grouped bars of latency per model and system (log scale), each model
annotated with ours / ORT-Web. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .models import LABELS, SYSTEMS

COLORS = {"ours": "#d62728", "ortweb": "#1f77b4", "ort_native": "#7f7f7f", "torch": "#ff7f0e"}


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    width = 0.2
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.8))
    for k, s in enumerate(SYSTEMS):
        xs = [i + (k - 1.5) * width for i, r in enumerate(rows) if r.get(f"{s}_ms")]
        ys = [r[f"{s}_ms"] for r in rows if r.get(f"{s}_ms")]
        ax.bar(xs, ys, width, label=LABELS[s], color=COLORS[s])
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("latency, ms (median, 1 thread, log scale)")
    for i, r in enumerate(rows):
        top = max((r[f"{s}_ms"] for s in SYSTEMS if r.get(f"{s}_ms")), default=None)
        if top is None:
            continue
        note = (
            f"{r['ours_vs_ortweb']:.2f}x"
            if r.get("ours_vs_ortweb")
            else ("ours: error" if "error" in r else "")
        )
        ax.annotate(note, (i, top * 1.15), ha="center", fontsize=8)
    m = result["machine"]
    ax.set_title(
        f"ours / ORT-Web latency ratio above each group (< 1 = ours faster)\n{m['cpu']}, "
        f"{m['cores']} cores, load average {m['loadavg_at_start'][0]} at start, {m['date']}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    ms = [r[f"{s}_ms"] for r in rows for s in SYSTEMS if r.get(f"{s}_ms")] or [1.0]
    ax.set_ylim(min(ms) / 3, max(ms) * 6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
