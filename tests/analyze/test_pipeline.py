"""compile(..., stages=k): stage artifacts are ordinary artifacts and the pipeline's outputs are
bit-identical to the unsplit model's, sequentially, with threads and micro-batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import wasm_torch
from wasm_torch.analyze.partition import PartitionOptions
from wasm_torch.analyze.pipeline_manifest import read_pipeline
from wasm_torch.analyze.runner import Pipeline
from wasm_torch.errors import InputError
from wasm_torch.zoo import ZOO, build

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


def compile_stages(model, inputs, out: Path, stages, dynamic_shapes=None):
    return wasm_torch.compile(model, inputs, out, dynamic_shapes=dynamic_shapes, stages=stages)


def _as_list(y):
    return list(y) if isinstance(y, tuple) else [y]


def build_of(module) -> str:
    """The build a loaded module runs (runtime.VariantModule has a spec; plain WasmModule is model.wasm)."""
    return module.spec.name if hasattr(module, "spec") else "simd128"


def variants(path) -> list[str]:
    return [v["name"] for v in json.loads((Path(path) / "manifest.json").read_text())["compiler"].get("variants", [])]


# small models have few big nodes: a looser balance than the default ±10% lets them split
@pytest.mark.parametrize("name, k", [("vit", 3), ("mlp", PartitionOptions(2, 0.5)), ("gpt2", PartitionOptions(2, 0.3)),
                                     ("transformer_encoder", PartitionOptions(2, 0.3)), ("cnn", PartitionOptions(2, 0.5))])
def test_pipelined_outputs_are_bit_identical_to_the_unsplit_model(pipelines, name, k):
    pipe_art, whole_art, _, _ = pipelines(name, k)
    assert pipe_art.report["validation"]["ok"]
    # every stage has the builds the whole model has, so each build can be compared with its twin
    assert all(variants(st.path) == variants(whole_art.path) for st in pipe_art.stages)
    for variant in ("simd128", "auto"):  # the plain build, and the fastest this engine runs (relaxed SIMD)
        pipe, whole = Pipeline(pipe_art.path, variant=variant), wasm_torch.load(whole_art, variant=variant, threads=1)
        assert {build_of(m) for m in pipe.modules} == {build_of(whole)}
        for seed in (3, 4):
            fresh = [x.numpy() for x in ZOO[name].inputs(torch.Generator().manual_seed(seed))]
            got, want = _as_list(pipe(*fresh)), _as_list(whole(*fresh))
            assert len(got) == len(want)
            for a, b in zip(got, want, strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape
                assert np.array_equal(a, b), f"{name} ({variant}): max diff {np.abs(a - b).max()}"


def test_dynamic_dimensions_reach_every_stage(pipelines):
    pipe_art, whole_art, _, _ = pipelines("gpt2", PartitionOptions(2, 0.3))
    pipe, whole = Pipeline(pipe_art.path, variant="simd128"), wasm_torch.load(whole_art, variant="simd128", threads=1)
    m = read_pipeline(pipe_art.path)
    assert all(len(sm.symbols) == 1 and sm.symbols[0].name == "seq" for sm in m.stage_manifests)
    g = torch.Generator().manual_seed(9)
    for t in (2, 17, 64):
        ids = torch.randint(0, 500, (2, t), generator=g).numpy()
        mask = np.ones((2, t), np.int64)
        assert np.array_equal(pipe(ids, mask), whole(ids, mask))
    with pytest.raises(InputError, match="outside the compiled range"):
        pipe(np.zeros((2, 65), np.int64), np.ones((2, 65), np.int64))


def test_stages_are_ordinary_artifacts_holding_only_their_weights(pipelines):
    pipe_art, whole_art, _, _ = pipelines("vit", 3)
    part = pipe_art.partition
    total = 0
    for st, art in zip(part.stages, pipe_art.stages, strict=True):
        m = wasm_torch.load(art.path)  # a stage folder loads like any model
        assert m.manifest.inputs and m.manifest.outputs
        names = {w["name"] for w in m.manifest.raw["weights"]}
        assert names == set(st.weights)
        total += sum(np.prod(w["shape"]) * 4 for w in m.manifest.raw["weights"])
    whole = wasm_torch.load(whole_art)
    whole_total = sum(np.prod(w["shape"]) * 4 for w in whole.manifest.raw["weights"])
    assert part.duplicated_weights == {}
    assert total == whole_total  # every weight is in exactly one stage
    doc = json.loads((pipe_art.path / "pipeline.json").read_text())
    assert doc["partition"]["optimal"] and len(doc["stages"]) == 3


def test_run_many_with_threads_matches_sequential_calls(pipelines):
    pipe_art, _, _, _ = pipelines("vit", 3)
    pipe = Pipeline(pipe_art.path)
    xs = [ZOO["vit"].inputs(torch.Generator().manual_seed(s))[0].numpy() for s in range(7)]
    want = [pipe(x) for x in xs]
    for threads, in_flight in ((1, None), (2, None), (3, 2), (4, 1)):
        got = pipe.run_many([(x,) for x in xs], threads=threads, max_in_flight=in_flight)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    got = pipe.run_many([{"pixel_values": x} for x in xs[:2]], threads=2)
    assert np.array_equal(got[1], want[1])
    assert pipe.stats()["stage_calls"] == [7 + 4 * 7 + 2] * 3
    assert np.array_equal(pipe(xs[0], threads=2), want[0])


def test_a_failing_micro_batch_names_itself_and_the_pipeline_keeps_working(pipelines):
    pipe_art, _, _, _ = pipelines("vit", 3)
    pipe = Pipeline(pipe_art.path)
    x = ZOO["vit"].inputs(torch.Generator().manual_seed(1))[0].numpy()
    with pytest.raises(InputError, match=r"micro-batch 2, stage 0: .*expects shape"):
        pipe.run_many([(x,), (x,), (x[:, :, :16],), (x,)], threads=2)
    with pytest.raises(InputError, match="expects 1 inputs"):
        pipe.run_many([(x, x)])
    with pytest.raises(InputError, match="threads must be >= 1"):
        pipe.run_many([(x,)], threads=0)
    assert np.array_equal(pipe.run_many([(x,)], threads=2)[0], pipe(x))


def _tower(d_in: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 16))


class TwoTowers(nn.Module):
    """Two independent towers and a head of the same size: three balanced stages, the first two
    independent of each other."""

    def __init__(self):
        super().__init__()
        self.left, self.right, self.head = _tower(32), _tower(32), _tower(32)

    def forward(self, a, b):
        return self.head(torch.cat([self.left(a), self.right(b)], dim=1))


def test_independent_towers_become_parallel_branches(tmp_path):
    torch.manual_seed(0)
    model = TwoTowers().eval()
    a, b = torch.randn(4, 32), torch.randn(4, 32)
    art = compile_stages(model, (a, b), tmp_path / "towers", PartitionOptions(3, tolerance=0.2))
    # tower outputs are 256 bytes, inputs 512, hidden activations 4 KB: the cut is at the towers' ends
    assert art.partition.boundary_bytes == (256 + 512, 256 + 256)
    pipe = Pipeline(art.path, variant="simd128")
    m = read_pipeline(art.path)
    assert {src.stage for _, src in m.stages[1].inputs} == {None}  # stage 1 reads only a model input
    assert pipe._segments == [[[0], [1]], [[2]]]  # stages 0 and 1 are parallel branches, 2 joins them
    whole = wasm_torch.load(wasm_torch.compile(model, (a, b), tmp_path / "whole"), variant="simd128", threads=1)
    want = whole(a.numpy(), b.numpy())
    assert np.array_equal(pipe(a.numpy(), b.numpy(), threads=2), want)
    assert np.array_equal(pipe(a=a.numpy(), b=b.numpy()), want)
    got = pipe.run_many([(a.numpy(), b.numpy())] * 3, threads=3)
    assert all(np.array_equal(g, want) for g in got)


class TwoHeads(nn.Module):
    """A stem, a cheap head on it (output 0) and a chain of layers on it (output 1)."""

    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Linear(32, 64), nn.Linear(64, 8)
        self.chain = nn.Sequential(*(m for _ in range(6) for m in (nn.Linear(64, 64), nn.ReLU())))

    def forward(self, x):
        a = torch.relu(self.stem(x))
        return self.head(a), self.chain(a)


def test_rebuild_reuses_unchanged_stages_and_revalidates_only_affected_outputs(tmp_path):
    from wasm_torch.analyze.events import EventBus, PartitionChanged
    from wasm_torch.analyze.incremental import graph_fingerprint
    from wasm_torch.analyze.partition import Partitioner
    from wasm_torch.compiler import lower
    from wasm_torch.compiler.partition import PipelineBuilder

    torch.manual_seed(0)
    model, x = TwoHeads().eval(), torch.randn(4, 32)
    g = lower(model, (x,))
    b = PipelineBuilder(g, model, (x,), tmp_path / "heads")
    dag = b.dag
    part = Partitioner(dag, np.ones(dag.n), PartitionOptions(3, tolerance=10.0))
    head = dag.output_nodes[g.outputs[0]]
    d1 = part.mc.close_in(1 << head)  # stem + head: stage 0
    chain = [i for i in range(dag.n) if not d1 >> i & 1]
    p1 = part.build((d1, part.mc.close_in(d1 | 1 << chain[2])), 0, False)
    p2 = part.build((d1, part.mc.close_in(d1 | 1 << chain[4])), 0, False)
    first = b.build(p1)
    assert b.history[-1] == {"reused": [], "compiled": [0, 1, 2], "validated_outputs": [0, 1]}
    manifest0 = (first.path / "stage_0" / "manifest.json").read_bytes()
    bus = EventBus()
    b.attach(bus)
    bus.publish(PartitionChanged(graph=graph_fingerprint(g), old="p1", new="p2", changed_stages=(1, 2),
                                 reason="test", partition=p2))
    assert not bus.errors
    # stage 0 (stem + head) is copied; stages 1 and 2 compile; only output 1 (the chain) is rechecked
    assert b.history[-1] == {"reused": [0], "compiled": [1, 2], "validated_outputs": [1]}
    assert (b.current.path / "stage_0" / "manifest.json").read_bytes() == manifest0
    assert [len(s.keys) for s in b.current.partition.stages] == [len(s.keys) for s in p2.stages]
    whole = wasm_torch.load(wasm_torch.compile(model, (x,), tmp_path / "whole"), variant="simd128", threads=1)
    got, want = Pipeline(b.current.path, variant="simd128")(x.numpy()), whole(x.numpy())
    assert all(np.array_equal(a, c) for a, c in zip(got, want, strict=True))


def test_compile_refuses_to_replace_a_folder_that_is_not_ours(tmp_path):
    from wasm_torch.errors import ArtifactError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("do not delete")
    model, example, _ = build("mlp")
    with pytest.raises(ArtifactError, match="refusing"):
        wasm_torch.compile(model, example, mine, stages=PartitionOptions(2, 0.5))
    assert (mine / "notes.txt").read_text() == "do not delete"
