"""Growth (Gray-Scott reaction-diffusion, wasm_torch/collective/grayscott.py), two measurements:

1. Turing patterns on a 128 × 128 periodic grid with Pearson's parameters (D_u = 0.2097, D_v = 0.1049
   per cell, dt = 1, 10,000 steps from his seeded square): blobs counted and classified.
2. Placement at scale: a random geometric graph of N nodes in the unit square (radius giving ~10
   neighbours; edge latency 5 ms + 100 ms × length), demand from 5 random hot spots (Poisson counts) or
   uniform; k = 10 replicas of a hot artifact placed by
       random     k nodes at random (mean of 20 draws)
       uniform    k-centre (farthest point first): evenly spread, ignoring demand
       top-k      the k busiest nodes
       gray-scott plan_growth: spot centres of the activator fed by demand (local computation only)
       greedy     greedy k-median on all-pairs latencies (a centralised reference, not a peer:
                  it needs every node's distance to every other)
   and scored by the demand-weighted mean latency from each request to its nearest replica.

    python bench/collective_growth.py [--quick]  -> bench/results/collective_growth.{json,png}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from wasm_torch.collective.grayscott import (
    PEARSON_DU,
    PEARSON_DV,
    SPOTS,
    STRIPES,
    GrayScott,
    blobs,
    grid_laplacian,
    pearson_start,
    plan_growth,
    run,
)

K = 10


def world(n: int, seed: int, demand_kind: str):
    rng = np.random.default_rng(seed)
    pos = rng.random((n, 2))
    radius = np.sqrt(10 / (np.pi * n))
    g = nx.random_geometric_graph(n, radius, pos={i: tuple(pos[i]) for i in range(n)}, seed=seed)
    g = g.subgraph(max(nx.connected_components(g), key=len)).copy()
    nodes = list(g.nodes)
    idx = {v: i for i, v in enumerate(nodes)}
    rows, cols, w = [], [], []
    for a, b in g.edges:
        d = 5.0 + 100.0 * float(np.linalg.norm(pos[a] - pos[b]))
        rows += [idx[a], idx[b]]
        cols += [idx[b], idx[a]]
        w += [d, d]
    lat = sp.csr_matrix((w, (rows, cols)), shape=(len(nodes), len(nodes)))
    p = pos[nodes]
    if demand_kind == "hotspots":
        centres, weights = rng.random((5, 2)), rng.uniform(0.5, 2.0, 5)
        mean = 0.02 + sum(wt * np.exp(-np.sum((p - c) ** 2, 1) / (2 * 0.07**2)) for c, wt in zip(centres, weights, strict=True))
    else:
        mean = np.full(len(nodes), 0.5)
    demand = rng.poisson(mean * 20).astype(float)
    return g, nodes, lat, demand, p


def cost(lat, demand, sites: list[int]) -> float:
    d = dijkstra(lat, indices=sites, min_only=True)
    return float((d * demand).sum() / demand.sum())


def placements(g, nodes, lat, demand, seed: int) -> dict[str, float | list]:
    rng = np.random.default_rng(seed + 100)
    n = len(nodes)
    out: dict[str, float | list] = {}
    out["random"] = float(np.mean([cost(lat, demand, list(rng.choice(n, K, replace=False))) for _ in range(20)]))
    alld = dijkstra(lat).astype(np.float32)
    far = [int(rng.integers(n))]
    for _ in range(K - 1):
        far.append(int(np.argmax(alld[far].min(0))))
    out["uniform"] = cost(lat, demand, far)
    out["top-k"] = cost(lat, demand, [int(i) for i in np.argsort(-demand)[:K]])
    t0 = time.perf_counter()
    plan = plan_growth(g, {nodes[i]: float(demand[i]) for i in range(n)}, budget=K)
    out["gray-scott_ms"] = (time.perf_counter() - t0) * 1e3
    idx = {v: i for i, v in enumerate(nodes)}
    sites = [idx[v] for v in plan.replicas]
    out["gray-scott"] = cost(lat, demand, sites) if sites else float("nan")
    out["gray-scott_replicas"] = len(sites)
    out["specialise"] = len(plan.specialise)
    cur = np.full(n, np.inf, dtype=np.float32)
    chosen = []
    for _ in range(K):
        j = int(np.argmin((np.minimum(cur[None, :], alld) * demand).sum(1)))
        chosen.append(j)
        cur = np.minimum(cur, alld[j])
    out["greedy"] = cost(lat, demand, chosen)
    out["_sites"] = {"gray-scott": sites, "greedy": chosen}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "collective_growth.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    shape = (96, 96) if a.quick else (128, 128)
    grid = {}
    for name, (f, k) in (("spots", SPOTS), ("stripes", STRIPES), ("outside", (0.09, 0.07))):
        u, v = pearson_start(shape, seed=0, square=10)
        _, v = run(GrayScott(f, k), grid_laplacian(shape), u, v, 6000 if a.quick else 10_000)
        b = blobs(v, shape)
        grid[name] = {"feed": f, "kill": k, "kind": b.kind, "count": b.count, "area_mean": b.area_mean,
                      "area_cv": b.area_cv, "elongation": b.elongation, "coverage": b.coverage}  # fmt: skip
        print(f"grid {name} F={f} k={k}: {b.kind}, {b.count} blobs, elongation {b.elongation:.2f}", flush=True)
    runs = []
    sizes = (1000,) if a.quick else (1000, 3000)
    seeds = range(2) if a.quick else range(5)
    methods = ("random", "uniform", "top-k", "gray-scott", "greedy")
    print("\n| nodes | demand | seed | " + " | ".join(methods) + " | replicas (GS) |")
    print("|---|---|---|" + "---|" * len(methods) + "---|")
    example = None
    for n in sizes:
        for kind in ("hotspots", "uniform"):
            for seed in seeds:
                g, nodes, lat, demand, pos = world(n, seed, kind)
                r = placements(g, nodes, lat, demand, seed)
                sites = r.pop("_sites")
                if example is None and kind == "hotspots":
                    example = {"pos": pos.tolist(), "demand": demand.tolist(), "sites": sites}
                runs.append({"nodes": len(nodes), "demand": kind, "seed": seed, **r})
                print(f"| {len(nodes)} | {kind} | {seed} | " + " | ".join(f"{r[m]:.1f}" for m in methods)
                      + f" | {r['gray-scott_replicas']} |", flush=True)  # fmt: skip
    summary = {}
    for n in sizes:
        for kind in ("hotspots", "uniform"):
            sel = [r for r in runs if r["demand"] == kind and abs(r["nodes"] - n) < n * 0.1]
            summary[f"{n}/{kind}"] = {m: float(np.mean([r[m] for r in sel])) for m in methods}
    print("\nmean latency to the nearest replica (ms), and ratio to random:")
    for key, s in summary.items():
        print(f"  {key}: " + ", ".join(f"{m} {s[m]:.1f} ({s[m] / s['random']:.2f})" for m in methods))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python bench/collective_growth.py " + " ".join(sys.argv[1:]), "replicas": K,
           "model": {"du": PEARSON_DU, "dv": PEARSON_DV, "spots": SPOTS, "stripes": STRIPES},
           "grid": grid, "runs": runs, "summary": summary, "python": platform.python_version(),
           "load_average": os.getloadavg(), "seconds": time.perf_counter() - t0}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    plot(example, summary, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)


def plot(example: dict, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    pos, dem = np.array(example["pos"]), np.array(example["demand"])
    ax1.scatter(pos[:, 0], pos[:, 1], s=4 + dem, c=dem, cmap="Greys")
    for name, marker in (("gray-scott", "o"), ("greedy", "x")):
        s = example["sites"][name]
        ax1.scatter(pos[s, 0], pos[s, 1], marker=marker, s=90, label=name, facecolors="none" if marker == "o" else None,
                    edgecolors="tab:red" if marker == "o" else None, c=None if marker == "o" else "tab:blue")  # fmt: skip
    ax1.set_title("hot-spot demand (grey), replicas placed")
    ax1.legend()
    keys = list(summary)
    methods = list(next(iter(summary.values())))
    x = np.arange(len(keys))
    for j, m in enumerate(methods):
        ax2.bar(x + j * 0.15, [summary[k][m] for k in keys], 0.15, label=m)
    ax2.set_xticks(x + 0.3, keys)
    ax2.set_ylabel("demand-weighted latency to nearest replica (ms)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
