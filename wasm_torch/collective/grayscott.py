"""Gray-Scott reaction-diffusion on a graph, and the growth plan it gives the network.

Two chemicals per node, a substrate u (1 = plenty) and an activator v that feeds on it:

    du/dt = D_u (L u) − u v² + F (1 − u)
    dv/dt = D_v (L v) + u v² − (F + k) v + s

L is the graph Laplacian scaled to the 5-point stencil: (L x)_i = 4 (mean of x over i's neighbours −
x_i), which on a 4-neighbour grid is exactly Σ_neighbours x − 4 x_i. `s` is an optional source (the
network's demand). Forward Euler with dt = 1, as in Pearson's "Complex patterns in a simple system"
(Science 261, 1993): D_u = 2e-5 and D_v = 1e-5 on a 2.5 × 2.5 domain of 256 × 256 cells, i.e. per
cell D_u = 0.2097, D_v = 0.1049 (PEARSON below); feed F and kill k pick the pattern — spots
(F = 0.035, k = 0.065) or stripes / labyrinths (F = 0.040, k = 0.060) among the sets tests check.

**Growth.** Over the node graph, v grows where demand seeds it and inhibits itself around each
peak through the substrate it depletes (lateral inhibition), so the activator settles into spots
with a characteristic spacing, concentrated where demand is. `plan_growth` reads the plan off v:
replicas/caches of a hot artifact at the spot centres (local maxima of v, strongest first),
nodes inside spots specialise in it (keep it warm), and current holders where v has died out prune
it. `grid_laplacian` is the fast path for grids (numpy rolls); `graph_laplacian` (a sparse matrix)
is the reference that holds for any graph, and the tests check they agree on a grid.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .errors import CollectiveError

PEARSON_DU = 2e-5 * (256 / 2.5) ** 2  # 0.2097: Pearson's D_u per grid cell
PEARSON_DV = 1e-5 * (256 / 2.5) ** 2
SPOTS = (0.035, 0.065)  # (F, k)
STRIPES = (0.040, 0.060)


@dataclass(frozen=True)
class GrayScott:
    feed: float = SPOTS[0]
    kill: float = SPOTS[1]
    du: float = PEARSON_DU
    dv: float = PEARSON_DV
    dt: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.feed < 0.2 and 0 < self.kill < 0.2):
            raise CollectiveError(f"feed and kill must be in (0, 0.2), got F={self.feed}, k={self.kill}")
        if self.du <= 0 or self.dv <= 0 or self.dt <= 0:
            raise CollectiveError("du, dv and dt must be > 0")
        if 4 * max(self.du, self.dv) * self.dt > 1:  # explicit Euler stability for the 5-point stencil
            raise CollectiveError(f"4 · max(du, dv) · dt must be <= 1 for a stable step, got {4 * max(self.du, self.dv) * self.dt}")


Laplacian = Callable[[np.ndarray], np.ndarray]


def grid_laplacian(shape: tuple[int, int]) -> Laplacian:
    """5-point stencil on a periodic grid, on arrays flattened row-major."""

    def lap(x: np.ndarray) -> np.ndarray:
        g = x.reshape(shape)
        out = np.roll(g, 1, 0) + np.roll(g, -1, 0) + np.roll(g, 1, 1) + np.roll(g, -1, 1) - 4 * g
        return out.reshape(-1)

    return lap


def graph_laplacian(graph: nx.Graph, nodes: Sequence[Hashable] | None = None) -> sp.csr_matrix:
    """4 (D⁻¹A − I) as a sparse matrix over `nodes` (default: the graph's order). Isolated nodes get a
    zero row (nothing diffuses in or out)."""
    order = list(graph.nodes) if nodes is None else list(nodes)
    a = nx.to_scipy_sparse_array(graph, nodelist=order, weight=None, format="csr").astype(np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    rw = sp.diags(inv) @ a
    return sp.csr_matrix(4.0 * (rw - sp.diags((deg > 0).astype(np.float64))))


def run(
    model: GrayScott,
    lap: Laplacian | sp.spmatrix,
    u: np.ndarray,
    v: np.ndarray,
    steps: int,
    source: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`steps` forward-Euler steps from (u, v); returns new arrays (the inputs are not modified).
    With a sparse Laplacian, u and v may also be (nodes, m): m independent systems, one per column."""
    if steps < 0:
        raise CollectiveError("steps must be >= 0")
    apply = lap.dot if sp.issparse(lap) else lap
    u, v = np.array(u, dtype=np.float64), np.array(v, dtype=np.float64)
    if u.shape != v.shape or u.ndim not in ((1, 2) if sp.issparse(lap) else (1,)):
        raise CollectiveError(f"u and v must be flat arrays (or columns, on a graph) of one shape, got {u.shape} and {v.shape}")
    src = np.zeros_like(u) if source is None else np.asarray(source, dtype=np.float64)
    f, k, dt = model.feed, model.kill, model.dt
    for _ in range(steps):
        uvv = u * v * v
        du = model.du * apply(u) - uvv + f * (1.0 - u)
        dv = model.dv * apply(v) + uvv - (f + k) * v + src
        u += dt * du
        v += dt * dv
        np.clip(u, 0.0, 1.0, out=u)
        np.clip(v, 0.0, 1.0, out=v)
    return u, v


def pearson_start(shape: tuple[int, int], seed: int = 0, square: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Pearson's initial state: u = 1, v = 0, a central square at (u, v) = (0.5, 0.25), ±1 % noise."""
    rng = np.random.default_rng(seed)
    u, v = np.ones(shape), np.zeros(shape)
    r0, c0 = shape[0] // 2 - square // 2, shape[1] // 2 - square // 2
    u[r0 : r0 + square, c0 : c0 + square] = 0.5
    v[r0 : r0 + square, c0 : c0 + square] = 0.25
    u += 0.01 * rng.standard_normal(shape)
    v += 0.01 * rng.standard_normal(shape)
    return np.clip(u, 0, 1).reshape(-1), np.clip(v, 0, 1).reshape(-1)


@dataclass(frozen=True)
class Blobs:
    """What a pattern on a grid looks like: the connected regions where v is high."""

    count: int
    area_mean: float
    area_cv: float  # coefficient of variation of the areas (spots: small; a labyrinth: one huge blob)
    elongation: float  # mean over blobs of perimeter² / (4π area): 1 for a disc, large for stripes
    coverage: float  # share of cells in a blob

    @property
    def kind(self) -> str:
        if self.count == 0 or self.coverage < 0.01:
            return "uniform"
        if self.elongation < 2.5 and self.area_cv < 0.6 and self.count >= 10:
            return "spots"
        if self.elongation >= 4.0:
            return "stripes"
        return "mixed"


def blobs(v: np.ndarray, shape: tuple[int, int], threshold: float | None = None) -> Blobs:
    """Label the regions above `threshold` (default: halfway between v's min and max) on a periodic
    grid (regions that wrap across an edge are merged) and measure them."""
    g = np.asarray(v).reshape(shape)
    thr = (g.min() + g.max()) / 2 if threshold is None else threshold
    mask = g > thr
    if g.max() - g.min() < 1e-3 or not mask.any():
        return Blobs(0, 0.0, 0.0, 0.0, 0.0)
    labels, _ = ndimage.label(mask)
    for a, b in ((labels[0, :], labels[-1, :]), (labels[:, 0], labels[:, -1])):  # periodic wrap
        for x, y in zip(a, b, strict=True):
            if x and y and x != y:
                labels[labels == y] = x
    ids = [i for i in np.unique(labels) if i]
    areas = np.array([(labels == i).sum() for i in ids], dtype=np.float64)
    elong = []
    for i in ids:
        m = labels == i
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        elong.append(edge.sum() ** 2 / (4 * np.pi * m.sum()))
    return Blobs(len(ids), float(areas.mean()), float(areas.std() / areas.mean()), float(np.mean(elong)),
                 float(mask.mean()))  # fmt: skip


# ---- growth over the node graph -------------------------------------------------------------------------
@dataclass(frozen=True)
class GrowthPlan:
    replicas: list[Hashable]  # where to place replicas / caches, strongest spot first
    specialise: list[Hashable]  # nodes inside a spot: keep the artifact warm
    prune: list[Hashable]  # current holders where the activator died out: drop it
    v: dict[Hashable, float]  # the activator per node
    u: dict[Hashable, float] = field(default_factory=dict)  # the substrate per node (to continue from)


def plan_growth(
    graph: nx.Graph,
    demand: dict[Hashable, float],
    holders: Sequence[Hashable] = (),
    budget: int | None = None,
    model: GrayScott = GrayScott(),
    steps: int = 3000,
    source_gain: float = 0.02,
    specialise_at: float = 0.5,
    prune_below: float = 0.05,
) -> GrowthPlan:
    """Run Gray-Scott over `graph` with v seeded and fed by `demand` (requests per node, any scale:
    normalised to a peak of 1) and read the plan off the activator.

    source s_i = source_gain · demand_i keeps spots alive where demand is; v starts at the
    normalised demand. Replicas: nodes whose v is a local maximum over their neighbours, by
    decreasing v, at most `budget`. Specialise: nodes with v >= specialise_at × max v. Prune:
    `holders` with v < prune_below × max v."""
    return plan_growth_many(graph, {0: demand}, {0: holders}, budget, model, steps, source_gain, specialise_at,
                            prune_below)[0]  # fmt: skip


def plan_growth_many(
    graph: nx.Graph,
    demands: dict[Hashable, dict[Hashable, float]],
    holders: dict[Hashable, Sequence[Hashable]] | None = None,
    budget: int | None = None,
    model: GrayScott = GrayScott(),
    steps: int = 3000,
    source_gain: float = 0.02,
    specialise_at: float = 0.5,
    prune_below: float = 0.05,
    start: dict[Hashable, GrowthPlan] | None = None,
) -> dict[Hashable, GrowthPlan]:
    """`plan_growth` for several artifacts at once (key -> its demand and holders): the systems are
    independent columns of one run, so a step costs little more than for one.

    `start`: earlier plans to continue from (key -> plan): the state (u, v) at each node the earlier
    plan knew is the starting point instead of the seed from demand, so spots persist and move
    only as demand moves — the pattern has memory. Nodes new to the graph start at u = 1, v = 0."""
    nodes = list(graph.nodes)
    if not nodes:
        raise CollectiveError("the graph has no nodes")
    idx = {n: i for i, n in enumerate(nodes)}
    keys = list(demands)
    d = np.zeros((len(nodes), len(keys)))
    for j, key in enumerate(keys):
        for n, x in demands[key].items():
            if n not in idx:
                raise CollectiveError(f"demand names node {n!r}, which is not in the graph")
            if not np.isfinite(x) or x < 0:
                raise CollectiveError(f"demand must be finite and >= 0, got {x!r} at {n!r}")
            d[idx[n], j] = x
    peak = d.max(axis=0) if keys else np.zeros(0)
    d = d / np.where(peak > 0, peak, 1.0)
    u0, v0 = 1.0 - 0.5 * d, 0.25 * d
    for j, key in enumerate(keys):
        old = (start or {}).get(key)
        if old is not None and old.u:
            u0[:, j] = [old.u.get(n, 1.0) for n in nodes]
            v0[:, j] = [old.v.get(n, 0.0) for n in nodes]
    u, v = u0, np.zeros_like(d)
    if keys and (peak > 0).any():
        u, v = run(model, graph_laplacian(graph, nodes), u0, v0, steps, source=source_gain * d)
    held = holders or {}
    plans = {}
    for j, key in enumerate(keys):
        vj = v[:, j] if peak[j] > 0 else np.zeros(len(nodes))
        plan = _read_plan(graph, nodes, idx, vj, held.get(key, ()), budget, specialise_at, prune_below)
        plans[key] = GrowthPlan(plan.replicas, plan.specialise, plan.prune, plan.v,
                                {n: float(u[idx[n], j]) for n in nodes})  # fmt: skip
    return plans


def _read_plan(graph: nx.Graph, nodes: list[Hashable], idx: dict[Hashable, int], v: np.ndarray,
               holders: Sequence[Hashable], budget: int | None, specialise_at: float, prune_below: float) -> GrowthPlan:  # fmt: skip
    vmax = float(v.max())
    peaks = []
    for n in nodes:
        i = idx[n]
        if v[i] <= 1e-6:
            continue
        if all(v[i] >= v[idx[m]] for m in graph.neighbors(n)):
            peaks.append((float(v[i]), n))
    peaks.sort(key=lambda t: (-t[0], str(t[1])))
    replicas = [n for _, n in peaks[: budget if budget is not None else len(peaks)]]
    alive = vmax > 1e-6  # the activator died out everywhere (or there was no demand): prune everything
    specialise = [n for n in nodes if alive and v[idx[n]] >= specialise_at * vmax]
    prune = [h for h in holders if h in idx and (not alive or v[idx[h]] < prune_below * vmax)]
    return GrowthPlan(replicas, specialise, prune, {n: float(v[idx[n]]) for n in nodes})
