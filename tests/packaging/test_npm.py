"""`npm pack` of wasm_torch/js makes a tarball that installs (offline, no dependencies) and works:
every entry point of its `exports` resolves and imports, and the installed runtime runs an artifact
compiled here in Node, matching PyTorch. Files the entry points import must be in the tarball."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import wasm_torch

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]
JS = Path(__file__).resolve().parents[2] / "wasm_torch" / "js"

CHECK = r"""
import { readFileSync } from "node:fs";
const pkg = JSON.parse(readFileSync(new URL(import.meta.resolve("wasm-torch/package.json"))));
const out = { resolved: {}, imported: [] };
for (const sub of Object.keys(pkg.exports)) {
  const spec = sub === "." ? "wasm-torch" : "wasm-torch" + sub.slice(1);
  out.resolved[spec] = import.meta.resolve(spec);
  if (!sub.endsWith("worker") && sub !== "./package.json") {  // Web Worker scripts need a worker's `self`
    await import(spec);
    out.imported.push(spec);
  }
}
const { WasmTorch } = await import("wasm-torch");
const m = await WasmTorch.load(process.argv[2]);
const x = new Float32Array(JSON.parse(process.argv[3]));
const y = await m.run({ input: { data: x, shape: [2, 5] } });  // nn.Sequential names its input "input"
out.y = Array.from(y.output_0.data);
out.shape = y.output_0.shape;
m.close();  // stops the helper threads of a threaded variant (else Node keeps running)
console.log(JSON.stringify(out));
"""


def _run(*cmd, cwd):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{cmd}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return p.stdout


def test_npm_pack_installs_and_runs_an_artifact(tmp_path):
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "node and npm are installed by `make test` (scripts/setup_browser.sh)"
    packed = json.loads(_run(npm, "pack", "--json", "--pack-destination", tmp_path, cwd=JS))
    tarball = tmp_path / packed[0]["filename"]
    files = {f["path"] for f in packed[0]["files"]}
    local = {p.name for p in JS.glob("*.mjs")} | {p.name for p in JS.glob("*.d.ts")}
    assert local <= files, f"not packed: {sorted(local - files)} (package.json `files`)"

    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    _run(npm, "install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball, cwd=app)
    (app / "check.mjs").write_text(CHECK)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Tanh())
    x = torch.randn(2, 5)
    art = wasm_torch.compile(model, (x,), tmp_path / "mlp")
    res = json.loads(_run(node, "check.mjs", art.path, json.dumps(x.flatten().tolist()), cwd=app))
    exports = json.loads((JS / "package.json").read_text())["exports"]
    assert len(res["resolved"]) == len(exports)
    for spec, url in res["resolved"].items():
        assert "/app/node_modules/wasm-torch/" in url, (spec, url)  # the installed copy, not the repo's
    assert res["shape"] == [2, 3]
    with torch.no_grad():
        np.testing.assert_allclose(np.array(res["y"], np.float32).reshape(2, 3), model(x).numpy(), atol=1e-5)
