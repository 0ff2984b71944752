"""`pipeline.json`: how the stage artifacts of a partitioned model fit together.

    out/<name>/
      pipeline.json          this file
      stage_0/ ... stage_k/  ordinary artifacts (manifest.json, model.wasm, weights.bin)

    {"format": "wasm-torch-pipeline/1", "name": "...",
     "inputs":  [{"name": "x", "dtype": "float32", "shape": [1, 3, 224, 224]}],
     "outputs": [{"name": "output_0", "from": {"stage": 3, "output": "output_0"}}],
     "stages":  [{"dir": "stage_0", "manifest_sha256": "<hex>",
                  "inputs": [{"name": "pixel_values", "from": {"input": "pixel_values"}}],
                  "cost": 8.9e9, "weights_bytes": 85000000, "nodes": 42}, ...],
     "partition": {...}, "validation": {...}}

A stage input comes from a model input ({"input": name}) or an output of an *earlier* stage
({"stage": j, "output": "output_k"}); model outputs likewise. `manifest_sha256` pins each stage's
manifest.json, which pins its wasm and weights, so checking pipeline.json checks everything.

`read_pipeline` trusts nothing: it bounds the file size, checks every field's type, that stage
folders are plain child folders (no path tricks), that references point backwards to outputs that
exist, that each stage's inputs are exactly what its manifest asks for, and the manifest hashes.
Every problem is an ArtifactError (IntegrityError for a hash mismatch) naming the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifact import MANIFEST, PIPELINE, Manifest, read_manifest
from ..artifact.layout import MAX_MANIFEST_BYTES, MAX_SMALL_FILE_BYTES
from ..artifact.safeio import read_regular
from ..artifact.strictjson import loads as strict_loads
from ..errors import ArtifactError, IntegrityError

PIPELINE_FORMAT = "wasm-torch-pipeline/1"
MAX_PIPELINE_BYTES = MAX_SMALL_FILE_BYTES  # what artifact/publish.py reads to recognise a pipeline folder
MAX_STAGES = 1024
_DIR = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Source:
    """Where a tensor comes from: a model input (stage None) or an earlier stage's output."""

    stage: int | None
    name: str  # the model input's name, or the stage output's name

    def to_json(self) -> dict[str, Any]:
        return {"input": self.name} if self.stage is None else {"stage": self.stage, "output": self.name}


@dataclass(frozen=True)
class StageEntry:
    dir: str
    manifest_sha256: str
    inputs: tuple[tuple[str, Source], ...]  # (stage input name, where it comes from)
    cost: float
    weights_bytes: int
    nodes: int


@dataclass(frozen=True)
class PipelineManifest:
    path: Path
    name: str
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[tuple[str, Source], ...]
    stages: tuple[StageEntry, ...]
    stage_manifests: tuple[Manifest, ...]
    raw: dict[str, Any]

    @property
    def input_names(self) -> list[str]:
        return [d["name"] for d in self.inputs]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bad(path: Path, what: str) -> ArtifactError:
    return ArtifactError(f"{path / PIPELINE}: {what}; recompile the model with compile(..., stages=k)")


def _source(path: Path, where: str, d: Any, before: int, outputs: list[list[str]], inputs: set[str]) -> Source:
    if not isinstance(d, dict) or not d:
        raise _bad(path, f"{where}.from must be an object")
    if set(d) == {"input"} and isinstance(d["input"], str):
        if d["input"] not in inputs:
            raise _bad(path, f"{where}.from names unknown model input {d['input']!r}")
        return Source(None, d["input"])
    if set(d) == {"stage", "output"} and type(d["stage"]) is int and isinstance(d["output"], str):
        j = d["stage"]
        if not 0 <= j < before:
            raise _bad(path, f"{where}.from refers to stage {j}, which does not run before it")
        if d["output"] not in outputs[j]:
            raise _bad(path, f"{where}.from refers to {d['output']!r}, not an output of stage {j}")
        return Source(j, d["output"])
    raise _bad(path, f"{where}.from must be {{'input': name}} or {{'stage': j, 'output': name}}")


def read_pipeline(folder: str | Path) -> PipelineManifest:
    path = Path(folder)
    f = path / PIPELINE
    if not f.exists() and not f.is_symlink():
        raise ArtifactError(f"{f} is missing: {path} is not a pipeline folder (compile with stages=k)")
    raw = strict_loads(read_regular(path, PIPELINE, max_bytes=MAX_PIPELINE_BYTES), str(f),
                       max_bytes=MAX_PIPELINE_BYTES, fix="recompile the model with compile(..., stages=k)")
    if not isinstance(raw, dict):
        raise _bad(path, "top level must be an object")
    if raw.get("format") != PIPELINE_FORMAT:
        raise _bad(path, f"format is {raw.get('format')!r}, expected {PIPELINE_FORMAT!r}")
    name = raw.get("name")
    ins, stages, outs = raw.get("inputs"), raw.get("stages"), raw.get("outputs")
    if not isinstance(name, str):
        raise _bad(path, "name must be a string")
    if not isinstance(ins, list) or not all(isinstance(d, dict) and isinstance(d.get("name"), str) for d in ins):
        raise _bad(path, "inputs must be a list of {name, ...} objects")
    in_names = [d["name"] for d in ins]
    if len(set(in_names)) != len(in_names):
        raise _bad(path, "model input names repeat")
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        raise _bad(path, f"stages must be a list of 1..{MAX_STAGES} objects")
    entries, manifests, stage_outputs = [], [], []
    seen_dirs: set[str] = set()
    for j, s in enumerate(stages):
        where = f"stages[{j}]"
        if not isinstance(s, dict):
            raise _bad(path, f"{where} must be an object")
        d = s.get("dir")
        if not isinstance(d, str) or not _DIR.match(d) or d in (".", "..") or d in seen_dirs:
            raise _bad(path, f"{where}.dir must be a distinct plain folder name, got {d!r}")
        seen_dirs.add(d)
        sha = s.get("manifest_sha256")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise _bad(path, f"{where}.manifest_sha256 must be 64 lowercase hex digits")
        mf = path / d / MANIFEST
        if (path / d).is_symlink() or not (path / d).is_dir():
            raise ArtifactError(f"{path / d} (stage {j}) is missing or not a real folder; the pipeline is incomplete")
        data = read_regular(path / d, MANIFEST, max_bytes=MAX_MANIFEST_BYTES)
        if sha256_bytes(data) != sha:
            raise IntegrityError(f"{mf}: sha256 does not match pipeline.json (tampered or from another build)")
        m = read_manifest(path / d, data)
        s_ins = s.get("inputs")
        if not isinstance(s_ins, list) or not all(isinstance(x, dict) and isinstance(x.get("name"), str)
                                                  for x in s_ins):
            raise _bad(path, f"{where}.inputs must be a list of {{name, from}} objects")
        wires = tuple((x["name"], _source(path, f"{where}.inputs[{i}]", x.get("from"), j, stage_outputs,
                                          set(in_names))) for i, x in enumerate(s_ins))
        want = sorted(t.name for t in m.inputs)
        if sorted(n for n, _ in wires) != want:
            raise _bad(path, f"{where}.inputs {sorted(n for n, _ in wires)} differ from what the stage "
                             f"manifest needs {want}")
        for key in ("cost", "weights_bytes", "nodes"):
            if not isinstance(s.get(key), int | float) or isinstance(s.get(key), bool) or s[key] < 0:
                raise _bad(path, f"{where}.{key} must be a number >= 0")
        entries.append(StageEntry(d, sha, wires, float(s["cost"]), int(s["weights_bytes"]), int(s["nodes"])))
        manifests.append(m)
        stage_outputs.append([t.name for t in m.outputs])
    if not isinstance(outs, list) or not outs:
        raise _bad(path, "outputs must be a non-empty list")
    out_wires = []
    for i, o in enumerate(outs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise _bad(path, f"outputs[{i}] must be a {{name, from}} object")
        out_wires.append((o["name"], _source(path, f"outputs[{i}]", o.get("from"), len(entries),
                                             stage_outputs, set(in_names))))
    return PipelineManifest(path, name, tuple(ins), tuple(out_wires), tuple(entries), tuple(manifests), raw)


def write_pipeline(folder: Path, doc: dict[str, Any]) -> None:
    """Write pipeline.json (the caller has written the stage folders it hashes)."""
    doc = {"format": PIPELINE_FORMAT, **doc}
    (folder / PIPELINE).write_text(json.dumps(doc, indent=1))
