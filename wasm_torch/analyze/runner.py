"""Running a compiled pipeline locally: one wasm instance per stage, stages on threads.

    pipe = Pipeline("out/vit4")                  # checks pipeline.json and every stage artifact
    y = pipe(x)                                   # one call, stage after stage
    ys = pipe.run_many([(x0,), (x1,), ...], threads=2)   # micro-batches in flight, in order

`run_many` keeps several micro-batches in flight: a pool of `threads` workers repeatedly takes a
ready (stage, micro-batch) task — the oldest micro-batch first, then the stage with the longest
critical path below it (analyses.critical_path over the stage graph) — and runs it on that stage's
instance, which no other worker touches meanwhile (one wasmtime Store per stage). wasmtime releases
the GIL during the wasm call, so stages really run in parallel. With k balanced stages on t threads
the throughput approaches min(t, k)× one instance.

A single call (`__call__`) with threads > 1 runs the stage graph by its parallel branches
(analyses.parallel_branches): independent stages of one segment (e.g. the two towers of a two-tower
model) run at the same time; sync stages run alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExecutionError, InputError, IntegrityError
from ..runtime import WasmModule, load
from .analyses import critical_path, parallel_branches
from .dag import Dag
from .pipeline_manifest import PipelineManifest, Source, read_pipeline
from .synthetic import graph_from_edges


def stage_dag(pm: PipelineManifest) -> Dag:
    """The stages as a DAG (an edge where a stage reads another's output), for the analyses."""
    names = [f"s{j}" for j in range(len(pm.stages))]
    edges = sorted({(f"s{src.stage}", f"s{j}") for j, st in enumerate(pm.stages)
                    for _, src in st.inputs if src.stage is not None})
    g = graph_from_edges(names, edges, dict.fromkeys(names, 4), outputs=names)
    return Dag.of(g)


class Pipeline:
    """A compiled pipeline folder, one instance per stage.

    variant / threads / module options are those of `wasm_torch.load`, applied to every stage:
    variant="auto" runs each stage's fastest build (relaxed SIMD where the engine has it),
    "simd128" only builds bit-identical to model.wasm. threads: intra-op threads per stage instance
    (default 1: the pipeline's parallelism is across stages)."""

    def __init__(self, path: str | Path, *, variant: str = "auto", threads: int = 1, **module_options: Any):
        self.manifest = read_pipeline(path)
        pm = self.manifest
        self.path, self.name = pm.path, pm.name
        self.modules: list[WasmModule] = [load(pm.path / st.dir, variant=variant, threads=threads, **module_options)
                                          for st in pm.stages]
        for st, m in zip(pm.stages, self.modules, strict=True):  # the manifest each instance runs is the pinned one
            if getattr(m, "manifest_sha256", st.manifest_sha256) != st.manifest_sha256:
                raise IntegrityError(f"{pm.path / st.dir}: manifest.json changed after pipeline.json was checked")
        self.inputs = pm.input_names
        self.outputs = [name for name, _ in pm.outputs]
        dag = stage_dag(pm)
        costs = np.array([max(st.cost, 1e-9) for st in pm.stages])
        bl = critical_path(dag, costs).bottom_level
        self._priority = [bl[k] for k in dag.keys]  # longer path below = run first (ties: older first)
        self._branches = parallel_branches(dag)
        self._segments = self._segment_plan(dag)
        # how many readers each produced tensor has (freed once all have read it)
        self._readers: dict[tuple[int, str], int] = {}
        for st in pm.stages:
            for _, src in st.inputs:
                if src.stage is not None:
                    self._readers[(src.stage, src.name)] = self._readers.get((src.stage, src.name), 0) + 1
        self.stage_seconds = [0.0] * len(pm.stages)
        self.stage_calls = [0] * len(pm.stages)

    def _segment_plan(self, dag: Dag) -> list[list[list[int]]]:
        """Stages grouped for one call: a list of steps, each a list of branches run concurrently."""
        br = self._branches
        index = {k: i for i, k in enumerate(dag.keys)}
        steps: list[list[list[int]]] = []
        seen_seg: set[int] = set()
        for k in dag.keys:
            seg = br.segment[k]
            if seg == -1:
                steps.append([[index[k]]])
            elif seg not in seen_seg:
                seen_seg.add(seg)
                steps.append([[index[x] for x in group] for group in br.groups[seg]])
        return steps

    # ---- one call -------------------------------------------------------------------------------
    def _bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs:
            if args:
                raise InputError(f"{self.name}: pass inputs either positionally or by name, not both")
            unknown = sorted(set(kwargs) - set(self.inputs))
            missing = [n for n in self.inputs if n not in kwargs]
            if unknown or missing:
                raise InputError(f"{self.name}: inputs are {self.inputs}; missing {missing}, unexpected {unknown}")
            return dict(kwargs)
        if len(args) != len(self.inputs):
            raise InputError(f"{self.name}: expects {len(self.inputs)} inputs {self.inputs}, got {len(args)}")
        return dict(zip(self.inputs, args, strict=True))

    def _run_stage(self, j: int, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = self.modules[j].run(feeds)
        self.stage_seconds[j] += time.perf_counter() - t0
        self.stage_calls[j] += 1
        return out

    def _feeds(self, j: int, inputs: dict[str, Any], made: dict[tuple[int, str], np.ndarray]) -> dict[str, Any]:
        return {name: inputs[src.name] if src.stage is None else made[(src.stage, src.name)]
                for name, src in self.manifest.stages[j].inputs}

    def _collect(self, inputs: dict[str, Any], made: dict[tuple[int, str], np.ndarray]) -> Any:
        outs = [np.asarray(inputs[src.name]) if src.stage is None else made[(src.stage, src.name)]
                for _, src in self.manifest.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def __call__(self, *args: Any, threads: int = 1, **kwargs: Any) -> Any:
        inputs = self._bind(args, kwargs)
        made: dict[tuple[int, str], np.ndarray] = {}
        if threads <= 1:
            for j in range(len(self.modules)):
                for k, v in self._run_stage(j, self._feeds(j, inputs, made)).items():
                    made[(j, k)] = v
            return self._collect(inputs, made)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wt-stage") as pool:
            for step in self._segments:
                def run_branch(branch: list[int]) -> list[tuple[int, dict[str, np.ndarray]]]:
                    res = []
                    for j in branch:  # a branch's stages depend on each other: in order
                        out = self._run_stage(j, self._feeds(j, inputs, {**made, **_flat(res)}))
                        res.append((j, out))
                    return res
                for res in pool.map(run_branch, step):
                    made.update(_flat(res))
        return self._collect(inputs, made)

    # ---- many calls, pipelined -----------------------------------------------------------------
    def run_many(self, batches: Iterable[Sequence[Any] | dict[str, Any]], *, threads: int = 2,
                 max_in_flight: int | None = None) -> list[Any]:
        """Run every micro-batch through the pipeline with `threads` workers; results in order."""
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        todo = [self._bind((), b) if isinstance(b, dict) else self._bind(tuple(b), {}) for b in batches]
        k = len(self.modules)
        limit = max_in_flight or (threads + k)
        lock = threading.Condition()
        made: list[dict[tuple[int, str], np.ndarray]] = [{} for _ in todo]
        left: list[dict[tuple[int, str], int]] = [dict(self._readers) for _ in todo]
        done = [[False] * k for _ in todo]
        running = [[False] * k for _ in todo]
        busy = [False] * k
        results: list[Any] = [None] * len(todo)
        state = {"admitted": 0, "finished": 0, "error": None}
        deps = [{src.stage for _, src in st.inputs if src.stage is not None} for st in self.manifest.stages]

        def pick() -> tuple[int, int] | None:
            best = None
            for m in range(state["admitted"]):
                if results[m] is not None:
                    continue
                for j in range(k):
                    if busy[j] or done[m][j] or running[m][j] or not all(done[m][d] for d in deps[j]):
                        continue
                    key = (m, -self._priority[j])
                    if best is None or key < best[0]:
                        best = (key, (m, j))
                if best is not None:
                    break  # the oldest micro-batch with a runnable stage wins
            return None if best is None else best[1]

        def worker() -> None:
            while True:
                with lock:
                    while True:
                        if state["error"] is not None or state["finished"] == len(todo):
                            lock.notify_all()
                            return
                        while state["admitted"] < len(todo) and state["admitted"] - state["finished"] < limit:
                            state["admitted"] += 1
                        task = pick()
                        if task is not None:
                            break
                        lock.wait()
                    m, j = task
                    busy[j], running[m][j] = True, True
                    feeds = self._feeds(j, todo[m], made[m])
                try:
                    out = self._run_stage(j, feeds)
                except Exception as e:
                    with lock:
                        state["error"] = (m, j, e)
                        busy[j] = False
                        lock.notify_all()
                    return
                with lock:
                    busy[j], running[m][j], done[m][j] = False, False, True
                    for name, v in out.items():
                        made[m][(j, name)] = v
                    for _, src in self.manifest.stages[j].inputs:  # free what nobody will read again
                        if src.stage is not None:
                            key = (src.stage, src.name)
                            left[m][key] -= 1
                    if all(done[m]):
                        results[m] = self._collect(todo[m], made[m])
                        made[m] = {}
                        state["finished"] += 1
                    else:
                        for key in [x for x, c in left[m].items() if c == 0 and x in made[m]]:
                            if not _is_output(self.manifest.outputs, key):
                                del made[m][key]
                    lock.notify_all()

        pool = [threading.Thread(target=worker, name=f"wt-pipeline-{i}", daemon=True) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        if state["error"] is not None:
            m, j, e = state["error"]
            if isinstance(e, ExecutionError):
                raise type(e)(f"micro-batch {m}, stage {j}: {e}") from e
            raise ExecutionError(f"micro-batch {m}, stage {j}: {type(e).__name__}: {e}") from e
        return results

    def stats(self) -> dict[str, Any]:
        return {
            "stages": len(self.modules),
            "stage_calls": list(self.stage_calls),
            "stage_mean_ms": [s * 1e3 / c if c else 0.0 for s, c in zip(self.stage_seconds, self.stage_calls,
                                                                         strict=True)],
            "weights_bytes": [m.manifest.weights_bytes for m in self.modules],
        }

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, stages={len(self.modules)}, path={str(self.path)!r})"


def _flat(res: list[tuple[int, dict[str, np.ndarray]]]) -> dict[tuple[int, str], np.ndarray]:
    return {(j, k): v for j, out in res for k, v in out.items()}


def _is_output(outputs: tuple[tuple[str, Source], ...], key: tuple[int, str]) -> bool:
    return any(src.stage == key[0] and src.name == key[1] for _, src in outputs)
