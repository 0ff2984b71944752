"""Balancing policies in the seeded discrete-event simulation (no wall clock: reproducible).

    python bench/serve_balancing.py            # writes bench/results/serve_balancing.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from wasm_torch.serve.sim.balancing import ReplicaSpec, Scenario, compare

SEEDS = (0, 1, 2, 3, 4)
SLOW_ONLY = [ReplicaSpec(1.0), ReplicaSpec(1.0), ReplicaSpec(2.0), ReplicaSpec(0.5),
             ReplicaSpec(1.0, slowdown=10.0), ReplicaSpec(1.0)]
SCENARIOS = {
    "slow replica": Scenario(replicas=SLOW_ONLY),
    "slow + failing replica": Scenario(),
    "slow + failing, breakers + 1 retry": Scenario(breakers=True, retries=1),
}


def fmt(v: float) -> str:
    return "∞" if math.isinf(v) else f"{v:.1f}"


def main() -> None:
    out = {}
    for title, sc in SCENARIOS.items():
        res = compare(sc, SEEDS)
        out[title] = res
        print(f"\n### {title} (rho={sc.rho}, {sc.requests} requests, timeout {sc.timeout_s * 1e3:.0f} ms, "
              f"median of {len(SEEDS)} seeds)\n")
        print("| policy | p50 ms | p99 ms | p99.9 ms | success | max queue | share of slow |")
        print("|---|---|---|---|---|---|---|")
        for name, r in res.items():
            print(f"| {name} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['p999_ms'])} | "
                  f"{r['success_rate'] * 100:.2f} % | {r['max_queue']:.0f} | {r['share'][4] * 100:.1f} % |")
    path = Path(__file__).parent / "results" / "serve_balancing.json"
    path.parent.mkdir(exist_ok=True)
    def finite(v):  # JSON has no Infinity: an unreachable percentile is null
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return None if isinstance(v, float) and math.isinf(v) else v

    path.write_text(json.dumps(finite(out), indent=1, allow_nan=False))
    print(f"\nwrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
