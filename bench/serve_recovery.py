"""Recovery time per injected fault, under concurrent load on a real compiled MLP.

    python bench/serve_recovery.py          # writes bench/results/serve_recovery.json

For each fault: 8 client threads send requests continuously; the fault fires on replica 0; we
report the time from the fault firing until replica 0 can work again: a fresh instance ready
(trap, killed or hung worker), the failed call's end (deadline, memory: the instance stays
usable), or for a slow replica the healer isolating it. Requests without an answer must be 0.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import wasm_torch
from wasm_torch.serve.healing import Orchestrator
from wasm_torch.serve.pool import ModelPool
from wasm_torch.serve.settings import ServeSettings
from wasm_torch.serve.sim.faults import FaultPlan, FaultyModel

FAULTS = {
    "trap": {"action": "trap", "times": 3},
    "deadline": {"action": "deadline", "seconds": 0.05},
    "memory": {"action": "oom"},
    "killed worker": {"action": "kill"},
    "hung worker": {"action": "hang", "seconds": 2.0},
    "slow replica": {"action": "slow", "seconds": 0.02, "times": None},
}


def compile_mlp(root: Path) -> Path:
    import torch

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    wasm_torch.compile(m, (torch.randn(2, 64),), root / "mlp", dynamic_shapes=({0: batch},))
    return root / "mlp"


def run_fault(path: Path, name: str, spec: dict) -> dict:
    plan = FaultPlan()
    settings = ServeSettings(replicas=2, hang_timeout_s=0.5, max_queue_delay_s=0.001, healing=False)
    pool = ModelPool("mlp", lambda: FaultyModel(wasm_torch.load(path), plan), settings)
    healer = Orchestrator([pool], cooldown_ticks=0, probation_s=60)
    stop = threading.Event()
    sent, answered, errors = [0], [0], [0]
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            with lock:
                sent[0] += 1
            fut = pool.submit({"input": rng.standard_normal((1, 64)).astype(np.float32)})
            try:
                fut.result(timeout=30)
            except Exception:
                with lock:
                    errors[0] += 1
            with lock:
                answered[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for _ in range(30):  # baseline for the healer
        time.sleep(0.05)
        healer.tick()
    kw = {k: v for k, v in spec.items() if k != "action"}
    plan.add(spec["action"], replica=0, **kw)
    recovery = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and recovery is None:
        time.sleep(0.01)
        healer.tick() if name == "slow replica" else None
        if not plan.fired_at:
            continue
        t0 = plan.fired_at[0]
        r = pool.replicas[0]
        if name == "slow replica":
            isolated = [e for e in healer.events if e[3] == "isolate" and e[2] == 0]
            recovery = isolated[0][0] - t0 if isolated else None
        elif name in ("killed worker", "hung worker", "trap") and r.restarts:
            recovery = r.ready_at - t0 if r.ready_at > t0 else None  # a fresh instance is ready
        elif name in ("deadline", "memory"):  # the instance stays usable: the failed call's end
            after = [t for t, _, _ in list(r.recent) if t > t0]
            recovery = min(after) - t0 if after else None
    stop.set()
    for t in threads:
        t.join()
    pool.close()
    return {"recovery_s": None if recovery is None else round(recovery, 4), "requests": sent[0],
            "answered": answered[0], "errors": errors[0], "lost": sent[0] - answered[0],
            "healing_events": [e[3] for e in healer.events]}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_mlp(Path(tmp))
        results = {name: run_fault(path, name, spec) for name, spec in FAULTS.items()}
    print("| fault | recovery | requests | errors | lost |\n|---|---|---|---|---|")
    for name, r in results.items():
        rec = "—" if r["recovery_s"] is None else f"{r['recovery_s'] * 1e3:.1f} ms"
        print(f"| {name} | {rec} | {r['requests']} | {r['errors']} | {r['lost']} |")
    out = Path(__file__).parent / "results" / "serve_recovery.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
