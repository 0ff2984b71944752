"""Gray-Scott: Pearson's textbook parameters form spots and stripes on a grid, a set outside the
pattern-forming region decays to uniform, the graph Laplacian is the grid stencil on a grid, and the
growth plan puts replicas where demand is and prunes where it is not."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from wasm_torch.collective.errors import CollectiveError
from wasm_torch.collective.grayscott import (
    SPOTS,
    STRIPES,
    GrayScott,
    blobs,
    graph_laplacian,
    grid_laplacian,
    pearson_start,
    plan_growth,
    run,
)

SHAPE = (96, 96)


def _pattern(feed: float, kill: float, steps: int = 8000):
    u, v = pearson_start(SHAPE, seed=0, square=10)
    _, v = run(GrayScott(feed, kill), grid_laplacian(SHAPE), u, v, steps)
    return blobs(v, SHAPE)


def test_spots_form_with_pearsons_spot_parameters():
    b = _pattern(*SPOTS)
    assert b.kind == "spots", b
    assert b.count >= 10 and b.area_cv < 0.6


def test_stripes_form_with_pearsons_stripe_parameters():
    b = _pattern(*STRIPES)
    assert b.kind == "stripes", b
    assert b.elongation > 4 and b.coverage > 0.2


def test_outside_the_turing_region_it_decays():
    assert _pattern(0.09, 0.07, steps=3000).kind == "uniform"


def test_graph_laplacian_is_the_grid_stencil():
    g = nx.grid_2d_graph(8, 8, periodic=True)
    order = [(r, c) for r in range(8) for c in range(8)]
    lap = graph_laplacian(g, order)
    x = np.random.default_rng(0).random(64)
    assert np.allclose(lap @ x, grid_laplacian((8, 8))(x))


def test_model_validation():
    for bad in (dict(feed=0.0), dict(kill=0.5), dict(du=-1.0), dict(du=0.5)):
        with pytest.raises(CollectiveError):
            GrayScott(**bad)


def test_growth_goes_where_demand_is():
    g = nx.grid_2d_graph(30, 30)
    demand = {n: 0.0 for n in g}
    for r in range(3, 8):
        for c in range(3, 8):
            demand[(r, c)] = 10.0  # a hot corner
    for r in range(22, 27):
        for c in range(22, 27):
            demand[(r, c)] = 6.0  # and another
    holders = [(15, 15), (4, 5)]
    plan = plan_growth(g, demand, holders=holders, budget=6)
    assert plan.replicas and len(plan.replicas) <= 6
    def near(n, c, r=4):
        return abs(n[0] - c[0]) + abs(n[1] - c[1]) <= r

    assert any(near(n, (5, 5)) for n in plan.replicas) and any(near(n, (24, 24)) for n in plan.replicas)
    assert all(near(n, (5, 5)) or near(n, (24, 24)) for n in plan.replicas)
    assert (15, 15) in plan.prune and (4, 5) not in plan.prune
    assert all(near(n, (5, 5), 8) or near(n, (24, 24), 8) for n in plan.specialise)
    assert len(plan.specialise) < 0.2 * g.number_of_nodes()


def test_growth_with_no_demand_prunes_everything_and_places_nothing():
    g = nx.path_graph(10)
    plan = plan_growth(g, {}, holders=[3, 4])
    assert plan.replicas == [] and plan.specialise == [] and plan.prune == [3, 4]
    with pytest.raises(CollectiveError):
        plan_growth(g, {99: 1.0})
    with pytest.raises(CollectiveError):
        plan_growth(g, {1: float("nan")})
    with pytest.raises(CollectiveError):
        plan_growth(nx.Graph(), {})
