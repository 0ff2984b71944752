"""Our f32 outputs are bit-identical between wasmtime (Python) and V8 (headless Chromium) on the zoo,
and the work units of a task are the same integer on both: the two facts exact validation and
undisputable credit rest on. Compared by the sha256 of the canonical output bytes the quorum uses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wasm_torch.artifact import read_manifest
from wasm_torch.net import tensors
from wasm_torch.net.work import bind_shapes, pinned_build, work_units
from wasm_torch.runtime import load

pytestmark = [pytest.mark.slow]

JS = Path(__file__).resolve().parents[2] / "wasm_torch" / "js" / "wasm-torch.mjs"
WEB = Path(__file__).resolve().parents[2] / "wasm_torch" / "net" / "web"
ZOO = ["mlp", "cnn", "resnet", "mobilenet", "transformer_encoder", "bert"]


def _runs(name: str, folder: Path, example: list[np.ndarray]) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    m = read_manifest(folder)
    names = [s.name for s in m.inputs]
    rng = np.random.default_rng(7)
    runs = [(f"{name}/example", list(zip(names, example, strict=True)))]
    perturbed = []
    for n, a in zip(names, example, strict=True):  # a second input with different values
        if a.dtype == np.float32:
            a = (a + rng.standard_normal(a.shape).astype(np.float32) * 0.5).astype(np.float32)
        perturbed.append((n, a))
    runs.append((f"{name}/random", perturbed))
    if name == "mlp":
        runs.append(("mlp/batch1", [(names[0], example[0][:1])]))
    if name == "bert":
        runs.append(("bert/short", [(n, a[:, :5].copy()) for n, a in zip(names, example, strict=True)]))
    return runs


def test_wasmtime_and_chromium_agree_bit_for_bit(zoo_artifacts, chromium, static_site, tmp_path):
    site = tmp_path / "site"
    (site / "js").mkdir(parents=True)
    (site / "web").mkdir()
    for f in JS.parent.glob("*.mjs"):  # the runtime and the modules it imports
        shutil.copy(f, site / "js" / f.name)
    shutil.copy(WEB / "tensors.mjs", site / "web" / "tensors.mjs")
    shutil.copy(Path(__file__).with_name("determinism.html"), site / "index.html")
    runs, want = [], {}
    for name, (folder, example) in zoo_artifacts.items():
        shutil.copytree(folder, site / "art" / name)
        m = load(folder, variant="simd128", threads=1)  # the build tasks pin
        manifest = read_manifest(folder)
        assert pinned_build(manifest, "simd128").file == "model.wasm"  # what the browser runs
        for rid, named in _runs(name, folder, example):
            out = m.run(dict(named))
            outs = [(s.name, out[s.name]) for s in m.outputs]
            syms = bind_shapes(manifest, {n: a.shape for n, a in named})
            want[rid] = (tensors.output_hash(outs), work_units(manifest, syms))
            runs.append({"id": rid, "artifact": name, "inputs": tensors.encode(named)})
    (site / "runs.json").write_text(json.dumps(runs))
    res = chromium(static_site(site), "window.__det && window.__det.done", "window.__det", tmp_path)["result"]
    assert res["error"] is None, res["error"]
    got = {r["id"]: (r["hash"], r["units"]) for r in res["results"]}
    assert got == want  # every output bit and every work-unit count identical
    assert len(got) >= 2 * len(ZOO)


@pytest.fixture(scope="module")
def zoo_artifacts(artifacts):
    from wasm_torch.zoo import build

    out = {}
    for name in ZOO:
        model, example, dyn = build(name)
        art = artifacts(f"net-{name}", model, example, dyn)
        out[name] = (Path(art.path), [x.numpy() for x in example])
    return out
