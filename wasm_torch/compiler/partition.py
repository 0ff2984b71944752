"""`compile(..., stages=k)`: split a lowered graph into k stage graphs and compile each one.

The graph is partitioned after the passes (wasm_torch.analyze.partition: min-cut, balanced on the
compiler's FLOP counts), so every stage runs exactly the kernels, fused loops and reduction orders
the unsplit model would: pipelined outputs are bit-identical to the unsplit artifact's. Each stage
graph keeps the nodes of its stage in graph order; the values it reads from the caller or earlier
stages become its inputs, the values later stages read (and model outputs) its outputs, and it
holds only the weights its own nodes read (a weight read in two stages is stored in both and listed
in pipeline.json as duplicated, unless shared_weights="forbid" keeps its readers together).

Each stage is then planned, generated, built and written like any model (`wasm_torch.load` works on
every stage folder); `pipeline.json` wires them together (analyze/pipeline_manifest.py). Before the
folder is moved into place, the whole pipeline runs on the example inputs and is compared with
PyTorch, as `compile()` does for one artifact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch

from ..analyze.analyses import affected_outputs
from ..analyze.costs import flops_cost
from ..analyze.dag import Dag
from ..analyze.events import EventBus, PartitionChanged
from ..analyze.incremental import graph_fingerprint
from ..analyze.partition import Partition, Partitioner, PartitionOptions, Stage
from ..analyze.pipeline_manifest import sha256_bytes, write_pipeline
from ..artifact import MANIFEST, Artifact, add_manifest_fields, check_target, publish, read_manifest
from ..config import settings as load_settings
from ..errors import PartitionError, ValidationError
from ..version import __version__
from . import multibuild
from .check import VacuousCheckWarning, compare, reference_outputs, vacuous_message
from .codegen import generate_c
from .codegen.memory_plan import plan_memory
from .ir import DTYPES, Graph, Symbol, verify
from .ir.index_inputs import index_inputs
from .options import CompileOptions
from .write import write_compiled


@dataclass
class PipelineArtifact:
    """A compiled pipeline folder: pipeline.json plus one ordinary artifact per stage."""

    path: Path
    partition: Partition
    stages: list[Artifact]
    report: dict[str, Any] = field(default_factory=dict)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def load(self, **options: Any) -> Any:
        from ..analyze.runner import Pipeline

        return Pipeline(self.path, **options)


def _symbols_in(obj: Any, out: set[str]) -> None:
    if isinstance(obj, sympy.Basic):
        out.update(s.name for s in obj.free_symbols)
    elif isinstance(obj, dict):
        for v in obj.values():
            _symbols_in(v, out)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _symbols_in(v, out)


def stage_graphs(g: Graph, part: Partition) -> list[Graph]:
    """One verified Graph per stage: its nodes, its crossing inputs/outputs and its own weights."""
    out = []
    for st in part.stages:
        keys = {*st.keys, *st.recomputed}  # recomputed: constant nodes it runs itself (Dag.recomputed)
        nodes = tuple(n for n in g.nodes if n.outputs[0] in keys)
        values = {*st.inputs, *st.weights, *(o for n in nodes for o in n.outputs)}
        types = {v: g.types[v] for v in values}
        consts = {c: g.consts[c] for c in st.weights}
        used: set[str] = set()
        for v in values:
            _symbols_in(tuple(g.types[v].shape), used)
        for n in nodes:
            _symbols_in(n.attrs, used)
        symbols = {}
        for name in sorted(used):
            carrier = next(((v, a) for v in st.inputs for a, d in enumerate(g.types[v].shape)
                            if isinstance(d, sympy.Symbol) and d.name == name), None)
            if carrier is None:
                raise PartitionError(
                    f"stage {st.index} uses the dynamic dimension {name!r} but none of its inputs "
                    f"{list(st.inputs)} has it as a plain axis, so the stage could not read its size; "
                    "compile with a static size for it or choose a different number of stages")
            s = g.symbols[name]
            symbols[name] = Symbol(name, s.min, s.max, carrier[0], carrier[1])
        sg = Graph(tuple(st.inputs), tuple(st.outputs), nodes, types, consts, symbols)
        verify(sg, f"partition stage {st.index}")
        out.append(sg)
    return out


def _wiring(g: Graph, part: Partition, graphs: list[Graph]) -> tuple[list[list[dict]], list[dict]]:
    """pipeline.json's stage inputs and model outputs: where every tensor comes from."""
    made: dict[str, tuple[int, str]] = {}
    for j, sg in enumerate(graphs):
        for k, v in enumerate(sg.outputs):
            made[v] = (j, f"output_{k}")

    def source(v: str, before: int) -> dict[str, Any]:
        if v in made and made[v][0] < before:
            return {"stage": made[v][0], "output": made[v][1]}
        if v in g.inputs:
            return {"input": v}
        raise PartitionError(f"value {v!r} is read before any stage makes it (a partitioner bug)")

    stage_inputs = [[{"name": v, "from": source(v, j)} for v in sg.inputs] for j, sg in enumerate(graphs)]
    outputs = []
    for k, v in enumerate(g.outputs):
        if v in g.consts:
            raise PartitionError(f"model output {k} is a constant ({v!r}); there is nothing to pipeline")
        outputs.append({"name": f"output_{k}", "from": source(v, len(graphs))})
    return stage_inputs, outputs


def _signature(st: Stage) -> tuple:
    """What makes a stage's artifact: equal signatures compile to the same folder."""
    return (st.keys, st.recomputed, st.inputs, st.outputs)


def compile_pipeline(
    g: Graph,
    model: torch.nn.Module,
    example_inputs: tuple,
    out_dir: Path,
    stages: int | PartitionOptions,
    *,
    options: CompileOptions,
    name: str,
    atol: float,
    rtol: float,
    validate: bool,
    partition: Partition | None = None,
    reuse: dict[int, Path] | None = None,
    validate_outputs: list[int] | None = None,
) -> PipelineArtifact:
    """Partition the lowered graph `g`, compile every stage, validate the chain, write the folder.

    reuse: stage index -> an existing stage folder compiled from an identical stage graph (copied
    instead of compiled). validate_outputs: compare only these model outputs with PyTorch (the
    others are known to be unchanged); default all."""

    out_dir = Path(out_dir)
    check_target(out_dir)  # never replace a folder that is not ours (artifact/publish.py)
    popts = stages if isinstance(stages, PartitionOptions) else PartitionOptions(stages)
    if partition is None:
        partition = Partitioner(Dag.of(g), flops_cost(g), popts).solve()
    graphs = stage_graphs(g, partition)
    stage_inputs, outputs = _wiring(g, partition, graphs)
    cfg = load_settings()
    reuse = reuse or {}
    tmp = Path(tempfile.mkdtemp(prefix=".wasm_torch_", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        entries = []
        for j, (sg, st) in enumerate(zip(graphs, partition.stages, strict=True)):
            folder = tmp / f"stage_{j}"
            if j in reuse:
                shutil.copytree(reuse[j], folder)
                weights_bytes = read_manifest(folder).weights_bytes
            else:
                plan = plan_memory(sg)
                c_source = generate_c(sg, plan, options, header=f"generated by wasm-torch {__version__} "
                                                                f"for {name} stage {j}/{len(graphs)}")
                built = multibuild.build(c_source, cfg, options)  # the same builds as a whole compile
                folder.mkdir()
                write_compiled(folder, sg, plan, built["simd128"], f"{name}.stage{j}", options)
                multibuild.write(folder, built, options)
                if indices := index_inputs(sg):  # lets the runtime explain an out-of-range index
                    add_manifest_fields(folder, {"index_inputs": indices})
                weights_bytes = plan.weights_bytes
            entries.append({
                "dir": folder.name, "manifest_sha256": sha256_bytes((folder / MANIFEST).read_bytes()),
                "inputs": stage_inputs[j], "cost": st.cost, "weights_bytes": weights_bytes,
                "nodes": len(sg.nodes)})
        doc: dict[str, Any] = {
            "name": name,
            "graph": graph_fingerprint(g),
            "inputs": [{"name": v, "dtype": DTYPES[g.types[v].dtype].name,
                        "shape": [d if isinstance(d, int) else str(d) for d in g.types[v].shape]}
                       for v in g.inputs],
            "outputs": outputs,
            "stages": entries,
            "partition": {**partition.to_json(), "stage_nodes": [list(s.keys) for s in partition.stages]},
        }
        write_pipeline(tmp, doc)
        report: dict[str, Any] = {"partition": partition.to_json(), "reused_stages": sorted(reuse),
                                  "compiled_stages": [j for j in range(len(graphs)) if j not in reuse]}
        if validate:
            report["validation"] = _validate(model, example_inputs, tmp, atol, rtol, validate_outputs)
            report["validation"]["variants"] = _validate_variants(model, example_inputs, tmp, options, atol, rtol)
            doc["validation"] = report["validation"]
            write_pipeline(tmp, doc)
        publish(tmp, out_dir)  # replaces out_dir only if it is empty or one of our artifacts/pipelines
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    arts = [Artifact(out_dir / e["dir"], read_manifest(out_dir / e["dir"]), {}) for e in entries]
    return PipelineArtifact(out_dir, partition, arts, report)


def _validate(model: torch.nn.Module, inputs: tuple, folder: Path, atol: float, rtol: float,
              only: list[int] | None = None) -> dict[str, Any]:
    from ..analyze.runner import Pipeline

    want = reference_outputs(model, inputs)
    pipe = Pipeline(folder)
    got = pipe(*[x.detach().cpu().numpy() for x in inputs])
    got = list(got) if isinstance(got, tuple) else [got]
    if len(got) != len(want):
        raise ValidationError(f"the pipeline returned {len(got)} outputs, PyTorch {len(want)}")
    keep = list(range(len(want))) if only is None else sorted(set(only))
    res = compare([got[k] for k in keep], [want[k] for k in keep], atol, rtol)
    res.update(atol=atol, rtol=rtol, checked_outputs=keep)
    if (msg := vacuous_message(res, atol, rtol)) is not None:
        warnings.warn(msg, VacuousCheckWarning, stacklevel=4)
    if not res["ok"]:
        raise ValidationError(
            f"the {len(pipe.modules)}-stage pipeline disagrees with PyTorch beyond atol={atol}, rtol={rtol}: "
            f"max abs error {res['max_abs_err']:.3g} at output scale {res['scale']:.3g}. Nothing was written; "
            "please report a bug (compile the model unsplit to compare).")
    return res


def _validate_variants(model: torch.nn.Module, inputs: tuple, folder: Path, options: CompileOptions,
                       atol: float, rtol: float) -> dict[str, str]:
    """Every build variant, the whole pipeline at once: deterministic builds (threads) must give the
    plain pipeline's outputs bit for bit, relaxed SIMD ones must agree with PyTorch within tolerance
    (and their threaded twins with them bit for bit). Variants this engine cannot run are noted."""
    from ..analyze.runner import Pipeline
    from ..runtime.variants import engine_features

    variants = [v for v in multibuild.variants_of(options) if v.name != "simd128"]
    if not variants:
        return {}
    xs = [x.detach().cpu().numpy() for x in inputs]

    def run(variant: str, threads: int) -> list[np.ndarray]:
        out = Pipeline(folder, variant=variant, threads=threads)(*xs)
        return list(out) if isinstance(out, tuple) else [out]

    def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
        return all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
                   for x, y in zip(a, b, strict=True))

    have, report, single = engine_features(), {}, {"simd128": run("simd128", 1)}
    for v in sorted(variants, key=lambda v: v.threads):
        if not set(v.features) <= have:
            report[v.name] = "not checked: this wasmtime lacks " + ", ".join(sorted(set(v.features) - have))
            continue
        threads = multibuild.VALIDATION_THREADS if v.threads else 1
        got = run(v.name, threads)
        ref_name = "simd128" if v.deterministic else v.name.removesuffix("-threads")
        if ref_name in single and ref_name != v.name:
            if not same(got, single[ref_name]):
                raise ValidationError(f"the pipeline's {v.name} build on {threads} threads does not reproduce "
                                      f"its {ref_name} build bit for bit; nothing was written, please report a bug")
            report[v.name] = f"bit-identical to {ref_name} on {threads} threads"
        else:
            res = compare(got, reference_outputs(model, inputs), atol, rtol)
            if not res["ok"]:
                raise ValidationError(f"the pipeline's {v.name} build disagrees with PyTorch beyond atol={atol}, "
                                      f"rtol={rtol} (max abs error {res['max_abs_err']:.3g}); nothing was written")
            report[v.name] = f"max abs error vs PyTorch {res['max_abs_err']:.3g}"
        single.setdefault(v.name, got)
    return report


class PipelineBuilder:
    """Keeps a lowered graph and its PyTorch model and (re)writes a pipeline folder for a partition.

    On a new partition (`rebuild`, or a `PartitionChanged` event once `attach`ed to a bus) stages
    whose stage graph is unchanged are copied from the current folder, only the others compile, and
    only the model outputs in the causal cone of the rebuilt stages' nodes (analyze.analyses.
    affected_outputs) are compared with PyTorch again: the other outputs are computed by the very
    same artifacts from the very same inputs."""

    def __init__(self, g: Graph, model: torch.nn.Module, example_inputs: tuple, out_dir: str | Path, *,
                 options: CompileOptions | None = None, name: str | None = None, atol: float = 1e-4,
                 rtol: float = 1e-3):
        self.g, self.model, self.inputs = g, model, tuple(example_inputs)
        self.out_dir = Path(out_dir)
        self.options = options or CompileOptions()
        self.name = name or self.out_dir.name
        self.atol, self.rtol = atol, rtol
        self.dag = Dag.of(g)
        self.current: PipelineArtifact | None = None
        self.history: list[dict[str, Any]] = []

    def build(self, partition: Partition) -> PipelineArtifact:
        return self.rebuild(partition)

    def rebuild(self, partition: Partition) -> PipelineArtifact:
        reuse: dict[int, Path] = {}
        check: list[int] | None = None
        if self.current is not None:
            old = {_signature(st): self.current.path / f"stage_{st.index}" for st in self.current.partition.stages}
            reuse = {st.index: old[_signature(st)] for st in partition.stages if _signature(st) in old}
            changed = [k for st in partition.stages if st.index not in reuse for k in (*st.keys, *st.recomputed)]
            hit = set(affected_outputs(self.dag, changed))
            check = [k for k, v in enumerate(self.g.outputs) if v in hit]
        with tempfile.TemporaryDirectory(prefix=".wasm_torch_keep_",
                                         dir=self.out_dir.parent if self.out_dir.parent.exists() else None) as keep:
            kept = {}
            for j, src in reuse.items():  # out_dir is replaced below: copy what is reused first
                kept[j] = Path(keep) / f"stage_{j}"
                shutil.copytree(src, kept[j])
            art = compile_pipeline(self.g, self.model, self.inputs, self.out_dir, partition.options,
                                   options=self.options, name=self.name, atol=self.atol, rtol=self.rtol,
                                   validate=True, partition=partition, reuse=kept, validate_outputs=check)
        self.history.append({"reused": sorted(reuse), "compiled": art.report["compiled_stages"],
                             "validated_outputs": art.report["validation"]["checked_outputs"]})
        self.current = art
        return art

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Rebuild on every PartitionChanged for this graph."""
        fp = graph_fingerprint(self.g)

        def on_changed(e: PartitionChanged) -> None:
            if e.graph == fp:
                self.rebuild(e.partition)

        return bus.subscribe(PartitionChanged, on_changed)
