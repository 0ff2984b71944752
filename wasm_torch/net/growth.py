"""Growth in the live network: which nodes keep a hot artifact, fetch it ahead, or drop it.

Nodes report what they hold, how many artifacts they can hold and how far they are from the
coordinators they serve (`POST /v1/nodes/holdings {holds, rtt_ms, room}`, once per heartbeat);
the answer carries their orders from the current plan. Every `growth_period_s` the coordinator's
growth thread replans:

- **The node graph.** A node is a point in landmark space: its round-trip time to each
  coordinator it reports (ms). By the triangle inequality two nodes are at least
  max_c |rtt_a,c − rtt_b,c| apart, the landmark distance of topology-aware overlays (Ratnasamy et
  al., "Topologically-aware overlay construction and server selection", INFOCOM 2002); each node
  links to its `growth_neighbours` nearest by it, which keeps the graph sparse enough for spots.
- **Demand.** The hot artifacts are those with open tasks (at most HOT_ARTIFACTS, most open tasks
  first). An artifact's demand at a node is the tasks of it the node leased in the last
  `growth_window_s`, plus one where the node already holds it, plus a small symmetry-breaking
  term hashed from (artifact, node): artifacts with no history yet spread over different nodes,
  like rendezvous hashing, and a plan is reproducible from its inputs.
- **The plan** (`collective.grayscott.plan_growth_many`): Gray-Scott reaction-diffusion over the
  graph, fed by the demand, all hot artifacts as columns of one run; the activator concentrates in
  spots. Each round continues from the previous round's state (u, v), so homes persist and move
  only as demand moves instead of being re-drawn. An artifact's `growth_replicas` homes are the
  spot centres, strongest first, topped up by the next-strongest nodes when the graph has fewer
  spots than that, skipping nodes already keeping `room − 1` artifacts (one slot stays free for
  work nobody steers). Orders: a home keeps the artifact (and fetches it if it does not hold it);
  a node holding it where the activator died out drops it.
- `growth_planner=rendezvous` replaces the plan by homes hashed from (artifact, node) alone — the
  baseline the benchmark compares with.

The scheduler uses the plan when a node's random pick would be a cold load (an artifact it does not
hold): it gives the node a first replica of an artifact it holds or keeps instead, if one waits at
the same priority. Checking replicas are never steered, so which node checks which stays a random
draw. The board lives in memory: a restarted coordinator rebuilds it from the next round of reports.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import sqlalchemy as sa

from ..collective.grayscott import GrowthPlan, plan_growth_many
from . import db
from .errors import BadMessage
from .wire import hex_digest, now_ms

MAX_HOLDS = 64  # artifacts a report may list
MAX_RTTS = 16  # coordinators a report may list
MAX_RTT_MS = 600_000.0
MAX_ROOM = 4096
MAX_REPORTS = 20_000  # nodes a coordinator plans for at most
HOT_ARTIFACTS = 8  # artifacts planned per round
JITTER = 0.05  # symmetry-breaking demand, relative to one lease
STEPS = 2000  # Gray-Scott steps per plan
PRUNE_BELOW = 0.05  # plan_growth's default: holders where the activator is below 5 % of its peak drop it


@dataclass(frozen=True)
class Report:
    holds: frozenset[str]
    rtt: Mapping[str, float]
    room: int  # artifacts the node can hold at once
    seen_ms: int


@dataclass
class Orders:
    fetch: list[tuple[str, str]] = field(default_factory=list)  # (artifact, build variant)
    keep: set[str] = field(default_factory=set)
    drop: set[str] = field(default_factory=set)

    def to_json(self, version: int) -> dict[str, Any]:
        return {"plan": version, "fetch": [{"artifact": a, "variant": v} for a, v in self.fetch],
                "keep": sorted(self.keep), "drop": sorted(self.drop)}  # fmt: skip


def parse_report(payload: Mapping[str, Any]) -> tuple[frozenset[str], dict[str, float], int]:
    """The `holds`, `rtt_ms` and `room` fields of a holdings message, checked."""
    holds, rtt, room = payload["holds"], payload["rtt_ms"], payload["room"]
    if not 1 <= room <= MAX_ROOM:
        raise BadMessage(f"room is the number of artifacts the node can hold: 1 to {MAX_ROOM}", offence="malformed")
    if len(holds) > MAX_HOLDS:
        raise BadMessage(f"holds lists {len(holds)} artifacts; at most {MAX_HOLDS}", offence="malformed")
    shas = [hex_digest(h, "each entry of holds") for h in holds]
    if len(set(shas)) != len(shas):
        raise BadMessage("holds lists an artifact twice", offence="malformed")
    if len(rtt) > MAX_RTTS:
        raise BadMessage(f"rtt_ms lists {len(rtt)} coordinators; at most {MAX_RTTS}", offence="malformed")
    clean: dict[str, float] = {}
    for k, v in rtt.items():
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= MAX_RTT_MS
        if len(k) > 80 or not ok:
            raise BadMessage(f"rtt_ms maps coordinator ids (<= 80 characters) to milliseconds in [0, {MAX_RTT_MS:.0f}]",
                             offence="malformed")  # fmt: skip
        clean[k] = float(v)
    return frozenset(shas), clean, room


def node_graph(rtt: Mapping[str, Mapping[str, float]], neighbours: int) -> nx.Graph:
    """Each node linked to its `neighbours` nearest by landmark distance over the coordinators
    both reported; nodes with none in common are never linked."""
    names = sorted(rtt)
    coords = sorted(set().union(*(r.keys() for r in rtt.values()))) if names else []
    x = np.full((len(names), len(coords)), np.nan)
    for i, n in enumerate(names):
        for j, c in enumerate(coords):
            x[i, j] = rtt[n].get(c, np.nan)
    g = nx.Graph()
    g.add_nodes_from(names)
    for i, a in enumerate(names):
        diff = np.abs(x - x[i])  # NaN where either node lacks that coordinator
        known = ~np.isnan(diff)
        dist = np.where(known.any(axis=1), np.where(known, diff, -np.inf).max(axis=1), np.inf)
        dist[i] = np.inf
        k = min(neighbours, len(names) - 1)
        if k <= 0:
            continue
        near = np.argpartition(dist, k - 1)[:k]
        g.add_edges_from((a, names[j]) for j in near if np.isfinite(dist[j]))
    return g


def _jitter(artifact: str, node: str) -> float:
    h = hashlib.sha256(f"{artifact}/{node}".encode()).digest()
    return JITTER * int.from_bytes(h[:8], "big") / 2**64


def rank(graph: nx.Graph, demands: Mapping[str, Mapping[str, float]], holders: Mapping[str, set[str]],
         start: dict[str, GrowthPlan] | None = None) -> tuple[dict[str, tuple[list[str], list[str]]], dict[str, GrowthPlan]]:  # fmt: skip
    """Per artifact, (ranking, drop): the nodes that should keep it, best first — the Gray-Scott
    plan's spot centres, strongest first, then the other nodes by activator strength; nodes where
    the activator is as weak as where it prunes are left out — and the holders where it died out.
    All artifacts run as columns of one Gray-Scott run, continuing from `start` (the previous
    round's plans) where there is one; the new plans are returned for the next round."""
    plans = plan_growth_many(graph, {a: dict(d) for a, d in demands.items()},
                             {a: sorted(h) for a, h in holders.items()}, steps=STEPS, prune_below=PRUNE_BELOW,
                             start=start)  # fmt: skip
    out = {}
    for art, plan in plans.items():
        vmax = max(plan.v.values())
        weak = set(plan.prune) | {n for n, v in plan.v.items() if v <= PRUNE_BELOW * vmax}
        centres = [n for n in plan.replicas if n not in weak]
        rest = sorted((n for n in plan.v if n not in weak and n not in centres), key=lambda n: (-plan.v[n], n))
        out[art] = (centres + rest, list(plan.prune))
    return out, plans


class GrowthBoard:
    """Reports in, plans out (thread-safe: reports arrive on request threads, plans on the growth thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reports: dict[str, Report] = {}
        self.orders: dict[str, Orders] = {}
        self.homes: dict[str, list[str]] = {}  # artifact -> its homes in the current plan
        self.state: dict[str, GrowthPlan] = {}  # the Gray-Scott state per hot artifact, continued each round
        self.version = 0
        self.last_plan_ms = 0

    def report(self, node: str, holds: frozenset[str], rtt: Mapping[str, float], room: int, on: bool = True) -> dict[str, Any]:
        """Record a node's report (only while growth is `on`) and answer its orders. At most
        MAX_REPORTS are kept, the least recently heard from dropped first: memory stays bounded
        however many identities report."""
        with self.lock:
            if on:
                self.reports.pop(node, None)  # re-inserted last: the dict is ordered by recency
                self.reports[node] = Report(holds, dict(rtt), room, now_ms())
                while len(self.reports) > MAX_REPORTS:
                    del self.reports[next(iter(self.reports))]
            return self.orders.get(node, Orders()).to_json(self.version)

    def preferred(self, node: str) -> tuple[set[str], set[str]]:
        """(held, warm): what this node holds, and that plus what it was told to keep (and fetches)."""
        with self.lock:
            r, o = self.reports.get(node), self.orders.get(node)
            held = set(r.holds if r else ())
            return held, held | (o.keep if o else set())

    def clear(self) -> None:
        with self.lock:
            self.reports, self.orders, self.homes, self.state = {}, {}, {}, {}

    def replan(self, conn: sa.Connection, prm: Any) -> dict[str, Any]:
        """One round: demand from the database, a plan per hot artifact, orders per node."""
        t = now_ms()
        with self.lock:  # nodes silent for three heartbeats are gone; forget them
            ttl = int(3 * prm.heartbeat_s * 1000)
            self.reports = {n: r for n, r in self.reports.items() if t - r.seen_ms <= ttl}
            reports = dict(self.reports)
        hot, leased = hot_demand(conn, t - int(prm.growth_window_s * 1000))
        orders: dict[str, Orders] = {n: Orders() for n in reports}
        placed: dict[str, list[str]] = {}
        if reports:
            holders = {a: {n for n, r in reports.items() if a in r.holds} for a, _ in hot}
            if prm.growth_planner == "rendezvous":  # the baseline: homes by hash, blind to demand and graph
                ranked = {a: (sorted(reports, key=lambda n, a=a: -_jitter(a, n)), []) for a, _ in hot}
            else:
                graph = node_graph({n: r.rtt for n, r in reports.items()}, prm.growth_neighbours)
                demands = {a: {n: leased.get((a, n), 0) + (n in holders[a]) + _jitter(a, n) for n in reports}
                           for a, _ in hot}  # fmt: skip
                ranked, self.state = rank(graph, demands, holders, self.state)
            for art, variant in hot:  # hottest first: it gets the first pick of nodes with room
                ranking, drop = ranked[art]
                # each node keeps at most room - 1 artifacts: one slot stays free for unsteered work
                home = [n for n in ranking if len(orders[n].keep) < max(1, reports[n].room - 1)]
                home = home[: prm.growth_replicas]
                placed[art] = home
                for n in home:
                    orders[n].keep.add(art)
                    if n not in holders[art]:
                        orders[n].fetch.append((art, variant))
                for n in drop:
                    if n not in home:
                        orders[n].drop.add(art)
        with self.lock:
            self.orders, self.homes = orders, placed
            self.version += 1
            self.last_plan_ms = t
        return {"nodes": len(reports), "artifacts": len(placed), "ms": now_ms() - t}

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {"plan": self.version, "nodes": len(self.reports), "last_plan_ms": self.last_plan_ms,
                    "homes": {a: list(h) for a, h in self.homes.items()}}  # fmt: skip


def hot_demand(conn: sa.Connection, since_ms: int) -> tuple[list[tuple[str, str]], dict[tuple[str, str], int]]:
    """The hot artifacts [(artifact, variant)] (open tasks, most first) and leases per (artifact, node)
    since `since_ms`."""
    t, j, a = db.tasks.c, db.jobs.c, db.assignments.c
    open_n = sa.func.count(t.id)
    hot = conn.execute(
        sa.select(j.artifact, sa.func.min(j.variant), open_n).select_from(db.tasks.join(db.jobs, t.job == j.id))
        .where(t.status == "open").group_by(j.artifact).order_by(open_n.desc(), j.artifact)
        .limit(HOT_ARTIFACTS)
    ).all()  # fmt: skip
    rows = conn.execute(
        sa.select(j.artifact, a.node, sa.func.count(a.id))
        .select_from(db.assignments.join(db.tasks, a.task == t.id).join(db.jobs, t.job == j.id))
        .where(a.leased_ms >= since_ms).group_by(j.artifact, a.node)
    ).all()  # fmt: skip
    return [(r[0], r[1]) for r in hot], {(r[0], r[1]): int(r[2]) for r in rows}
