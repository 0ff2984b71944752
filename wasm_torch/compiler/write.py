"""The compiler's side of the artifact contract: a planned graph + its built wasm -> an artifact
folder (manifest, model.wasm, weights.bin), through artifact/'s one writer.

Used by `compile` (compiler/pipeline.py), each stage of `compile(..., stages=k)`
(compiler/partition.py) and `compile_generator` (generate/compile.py), which names its inputs and
outputs itself and adds its cache state and generator record.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from ..artifact import MemorySpec, SymbolSpec, TensorSpec, WeightSpec, write_artifact
from ..version import __version__
from .build import flags
from .codegen import ENTRY
from .codegen.dims import py_dim
from .codegen.memory_plan import MemoryPlan
from .cost import work
from .ir import DTYPES, Graph
from .options import CompileOptions


def tensor_spec(g: Graph, plan: MemoryPlan, value: str, label: str) -> TensorSpec:
    """The manifest entry of one graph value: its name in the manifest, dtype, shape and offset."""
    t = g.types[value]
    return TensorSpec(label, DTYPES[t.dtype].name, tuple(py_dim(d) for d in t.shape), plan.offsets[value])


def write_compiled(
    folder: Path,
    g: Graph,
    plan: MemoryPlan,
    wasm: bytes,
    name: str,
    options: CompileOptions,
    *,
    inputs: Sequence[tuple[str, str]] | None = None,
    outputs: Sequence[tuple[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the artifact. inputs / outputs: (graph value, manifest name) pairs; by default every
    graph input under its own name and the outputs as output_0, output_1, ..."""
    blob = bytearray(plan.weights_bytes)
    weights = []
    for c, arr in g.consts.items():
        off = plan.weight_offsets[c]
        data = arr.tobytes(order="C")
        blob[off : off + len(data)] = data
        weights.append(WeightSpec(c, DTYPES[g.types[c].dtype].name, tuple(arr.shape), off))
    inputs = [(v, v) for v in g.inputs] if inputs is None else inputs
    outputs = [(v, f"output_{k}") for k, v in enumerate(g.outputs)] if outputs is None else outputs
    write_artifact(
        folder,
        name=name,
        entry=ENTRY,
        compiler={
            "wasm_torch": __version__,
            "torch": torch.__version__,
            "ziglang": version("ziglang"),
            "flags": flags(options),
            "options": options.to_json(),
        },
        symbols=[SymbolSpec(s.name, s.min, s.max, s.input, s.axis) for s in g.symbols.values()],
        inputs=[tensor_spec(g, plan, v, label) for v, label in inputs],
        outputs=[tensor_spec(g, plan, v, label) for v, label in outputs],
        memory=MemorySpec(plan.weights_bytes, plan.arena_bytes, plan.unplanned_bytes, plan.peak_live_bytes),
        ops=g.op_counts(),
        weights=weights,
        work=work(g),
        wasm=wasm,
        weights_blob=bytes(blob),
        extra=extra,
    )
