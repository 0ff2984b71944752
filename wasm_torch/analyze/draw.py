"""A picture of a partitioned model (matplotlib, no graphviz): docs/partitioning.md shows ViT-B/16.

Four panels:
- the graph, left to right by topological depth, nodes coloured by stage (grey: constant nodes,
  recomputed by each stage that reads them) and sized by cost; the values that cross a boundary
  are drawn as red edges, each boundary labelled with its bytes;
- each stage's share of the compute and of the weight bytes;
- the min-cut gate of every node (the cheapest boundary right after it), graph order, with the
  chosen boundaries marked: the partitioner cuts where the gate profile has its valleys;
- the hierarchical depth embedding (lorentz.py) in the Poincaré disk, coloured by stage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analyses import topological_depth
from .dag import Dag, members
from .lorentz import depth_embedding
from .partition import Partition


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def draw_partition(dag: Dag, part: Partition, costs: np.ndarray, path: str | Path, *, title: str = "",
                   gates: np.ndarray | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(part.stages)
    stage_of = np.zeros(dag.n, dtype=int)
    for s in part.stages:
        for i in members(s.mask):
            stage_of[i] = s.index
    colours = plt.get_cmap("tab10")(np.arange(k) % 10)
    depth = topological_depth(dag)
    x = np.array([depth[key] for key in dag.keys], dtype=float)
    lanes: dict[int, int] = {}
    y = np.zeros(dag.n)
    for i in range(dag.n):  # spread nodes of equal depth over lanes 0, 1, -1, 2, -2, ...
        j = lanes.get(int(x[i]), 0)
        lanes[int(x[i])] = j + 1
        y[i] = (j + 1) // 2 * (1 if j % 2 else -1)

    fig = plt.figure(figsize=(13, 7.5))
    grid = fig.add_gridspec(2, 3, height_ratios=[1.1, 1.0], hspace=0.35, wspace=0.28)
    ax = fig.add_subplot(grid[0, :])
    cut_edges = set()
    acc = 0
    for b, s in zip(part.boundaries, part.stages, strict=False):
        acc |= s.mask
        for v in dag.cut_values(acc):
            p = dag.producer.get(v)
            for c in dag.consumers[v]:
                if not acc >> c & 1 and p is not None:
                    cut_edges.add((p, c))
        xs = [x[dag.producer[v]] for v in dag.cut_values(b) if v in dag.producer]
        if xs:
            ax.annotate(_human(dag.cut_bytes(b)), (max(xs) + 0.5, max(y) + 1.3), ha="center", fontsize=8,
                        color="firebrick")
            ax.axvline(max(xs) + 0.5, color="firebrick", lw=0.8, ls=":")
    for i in range(dag.n):
        for s in dag.succs[i]:
            red = (i, s) in cut_edges
            ax.plot([x[i], x[s]], [y[i], y[s]], color="firebrick" if red else "0.75", lw=1.4 if red else 0.4,
                    zorder=2 if red else 1)
    size = 6 + 60 * np.sqrt(costs / costs.max()) if costs.max() > 0 else np.full(dag.n, 10.0)
    node_colours = colours[stage_of].copy()
    const = np.array([bool(dag.constant >> i & 1) for i in range(dag.n)], dtype=bool)
    node_colours[const] = (0.6, 0.6, 0.6, 1.0)  # constant nodes: recomputed by every stage that reads them
    ax.scatter(x, y, s=np.where(const, 8, size), c=node_colours, zorder=3, edgecolors="none")
    ax.set_ylim(min(y) - 1, max(y) + 2)
    ax.set_xlabel("topological depth")
    ax.set_yticks([])
    ax.set_title(title or f"{dag.n} nodes in {k} stages: {_human(part.crossing_bytes)} cross "
                 f"(tension {part.tension:.4f}, imbalance {part.imbalance:.1%})", fontsize=10)
    for s in part.stages:
        ax.scatter([], [], color=colours[s.index], label=f"stage {s.index}")
    if const.any():
        ax.scatter([], [], color=(0.6, 0.6, 0.6), label="constant (recomputed)")
    ax.legend(loc="lower right", fontsize=7, ncol=k + 1)

    ax2 = fig.add_subplot(grid[1, 0])
    idx = np.arange(k)
    total_w = max(1, sum(s.weight_bytes for s in part.stages))
    ax2.bar(idx - 0.2, [s.cost / part.total_cost for s in part.stages], 0.4, label="compute", color="0.4")
    ax2.bar(idx + 0.2, [s.weight_bytes / total_w for s in part.stages], 0.4, label="weights", color=colours[:k])
    ax2.axhline(1 / k, color="k", lw=0.6, ls="--")
    ax2.set_xticks(idx, [f"stage {i}" for i in idx], fontsize=8)
    ax2.set_ylabel("share of the model")
    ax2.legend(fontsize=8)
    ax2.set_title("per-stage compute and weights", fontsize=10)

    ax3 = fig.add_subplot(grid[1, 1])
    if gates is not None:
        g = np.where(gates > 0, gates, np.nan)
        ax3.semilogy(np.arange(dag.n), g, lw=0.8, color="0.3")
        ends = [max(members(s.mask)) for s in part.stages[:-1]]
        ax3.scatter(ends, [gates[e] if gates[e] > 0 else np.nan for e in ends], color="firebrick", zorder=3,
                    label="chosen boundaries")
        ax3.legend(fontsize=8)
    ax3.set_xlabel("node (graph order)")
    ax3.set_ylabel("min-cut gate (bytes)")
    ax3.set_title("cheapest boundary after each node", fontsize=10)

    ax4 = fig.add_subplot(grid[1, 2])
    pts = depth_embedding(dag, scale=3.0 / (max(x, default=0) + 1)).poincare()  # radius <= 3: inside the disk
    ax4.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.6", lw=0.8))
    ax4.scatter(pts[:, 0], pts[:, 1], s=6, c=node_colours, edgecolors="none")
    ax4.set_aspect("equal")
    ax4.set_xlim(-1.05, 1.05)
    ax4.set_ylim(-1.05, 1.05)
    ax4.axis("off")
    ax4.set_title("depth embedding (Poincaré disk)", fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
