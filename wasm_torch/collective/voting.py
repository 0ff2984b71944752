"""Stake-weighted voting: softmax over stakes with a temperature, or plain stake-proportional.

The electorate is every account with stake > 0 at the proposal's snapshot; weights are fractions of
the whole electorate (those who do not vote still count in the quorum's denominator):

    softmax        w_i = exp(s_i / τ) / Σ_j exp(s_j / τ)          (τ: the temperature, in stake units)
    proportional   w_i = s_i / Σ_j s_j

A proposal is accepted when turnout (Σ w over valid voters) >= quorum and the yes share of the
turnout is > threshold. A voter who signed both yes and no on one proposal is void: neither counts.

What the temperature does. τ → ∞ gives every member the same weight (one member, one vote); τ → 0
gives all weight to the largest stake. Between the two, softmax is flatter than proportional for
stakes below about τ and steeper above it, so it trades two failure modes against each other —
`sybil_gain` and `nakamoto` measure them (bench/collective_voting.py):

- splitting a stake S into k identities of S/k changes its total weight by
  about k · exp(−(k − 1) S / (k τ)) under softmax (exactly 1 under proportional; "about": the
  other members' weights renormalise too). Splitting into identities at the admission floor s0 (an
  identity needs at least s0 of stake) gives k · exp(−(k − 1) s0 / τ), at most 1 for every k exactly
  when τ <= s0 / ln 2 ≈ 1.44 s0: below that temperature splitting never pays;
- a stake s far above τ weighs exp((s − s_typical) / τ) times a typical one: the largest stakes
  take over (the Nakamoto coefficient — how many members it takes to reach half the weight — drops).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import CollectiveError

RULES = ("softmax", "proportional")


def weights(stakes: Mapping[str, float], rule: str = "softmax", temperature: float = 1.0) -> dict[str, float]:
    """Voting weight of every member with stake > 0 (summing to 1); members with no stake get none."""
    if rule not in RULES:
        raise CollectiveError(f"voting rule must be one of {RULES}, got {rule!r}")
    if rule == "softmax" and not (math.isfinite(temperature) and temperature > 0):
        raise CollectiveError(f"the softmax temperature must be a finite number > 0, got {temperature!r}")
    live = {}
    for k, s in stakes.items():
        if not math.isfinite(s) or s < 0:
            raise CollectiveError(f"stake of {k!r} must be finite and >= 0, got {s!r}")
        if s > 0:
            live[k] = float(s)
    if not live:
        return {}
    if rule == "proportional":
        total = math.fsum(live.values())
        return {k: s / total for k, s in live.items()}
    top = max(live.values())
    ex = {k: math.exp((s - top) / temperature) for k, s in live.items()}  # stable: the largest is exp(0)
    total = math.fsum(ex.values())
    return {k: e / total for k, e in ex.items()}


@dataclass(frozen=True)
class Tally:
    accepted: bool
    turnout: float  # share of the electorate's weight that cast a valid vote
    yes: float  # share of the electorate's weight that voted yes
    no: float
    voters: int  # valid votes counted
    void: int  # voters who voted both ways (not counted)
    reason: str


def tally(
    stakes: Mapping[str, float],
    votes: Mapping[str, set[bool] | frozenset[bool]],
    rule: str = "softmax",
    temperature: float = 1.0,
    quorum: float = 0.5,
    threshold: float = 0.5,
) -> Tally:
    """`votes`: voter -> the set of choices it signed (True = yes). Voters outside the electorate
    weigh nothing; a voter with both choices is void."""
    if not (0 <= quorum <= 1 and 0 <= threshold < 1):
        raise CollectiveError(f"need 0 <= quorum <= 1 and 0 <= threshold < 1, got {quorum}, {threshold}")
    w = weights(stakes, rule, temperature)
    yes = no = 0.0
    voters = void = 0
    for voter, choices in votes.items():
        if len(choices) > 1:
            void += 1
            continue
        if voter not in w or not choices:
            continue
        voters += 1
        if next(iter(choices)):
            yes += w[voter]
        else:
            no += w[voter]
    turnout = yes + no
    if not w:
        return Tally(False, 0.0, 0.0, 0.0, voters, void, "nobody holds stake: there is no electorate")
    if turnout < quorum:
        return Tally(False, turnout, yes, no, voters, void, f"turnout {turnout:.3f} is below the quorum {quorum}")
    share = yes / turnout if turnout else 0.0
    if share <= threshold:
        return Tally(False, turnout, yes, no, voters, void, f"yes share {share:.3f} is not above {threshold}")
    return Tally(True, turnout, yes, no, voters, void, f"accepted: turnout {turnout:.3f}, yes share {share:.3f}")


def nakamoto(w: Mapping[str, float], share: float = 0.5) -> int:
    """The fewest members whose weights together exceed `share` of the total."""
    total, acc = math.fsum(w.values()), 0.0
    for k, x in enumerate(sorted(w.values(), reverse=True), 1):
        acc += x
        if acc > share * total:
            return k
    return len(w)


def sybil_gain(stake: float, parts: int, others: Mapping[str, float], rule: str, temperature: float) -> float:
    """Weight of `stake` split into `parts` equal identities over its weight as one identity,
    against the same other members."""
    if parts < 1 or stake <= 0:
        raise CollectiveError("need parts >= 1 and stake > 0")
    one = weights({**others, "\0me": stake}, rule, temperature)["\0me"]
    split = weights({**others, **{f"\0me{i}": stake / parts for i in range(parts)}}, rule, temperature)
    return sum(split[f"\0me{i}"] for i in range(parts)) / one
