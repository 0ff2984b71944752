"""Fixtures for the JavaScript runtime tests: Node (required, never skipped) and zoo artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

JS = Path(__file__).resolve().parents[2] / "wasm_torch" / "js"
LOADER = JS / "wasm-torch.mjs"
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable (>= 18). Missing node is a failure: `make test` installs it."""
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not installed: run scripts/setup_browser.sh (or apt-get install -y nodejs)")
    major = int(subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()[1:].split(".")[0])
    if major < 18:
        pytest.fail(f"node >= 18 is needed for the JS runtime tests, found v{major}")
    return exe


@pytest.fixture(scope="session")
def zoo_artifact(artifacts):
    """zoo_artifact(name) -> (artifact path, example inputs as numpy arrays)."""
    from wasm_torch.zoo import build

    def get(name: str):
        model, example, dyn = build(name)
        art = artifacts(name, model, example, dyn)
        return Path(art.path), [x.numpy() for x in example]

    return get


def _run_node(node: str, artifact: Path, runs: list[dict[str, np.ndarray]], tmp: Path, timeout: float = 120,
              **job) -> dict:
    """Load `artifact` in Node with wasm-torch.mjs, run each input dict; outputs come back as numpy."""
    tmp.mkdir(parents=True, exist_ok=True)
    specs = []
    for k, inputs in enumerate(runs):
        spec = {}
        for name, arr in inputs.items():
            arr = np.ascontiguousarray(arr)
            f = tmp / f"in{k}_{name}.bin"
            f.write_bytes(arr.tobytes())
            spec[name] = {"dtype": arr.dtype.name, "shape": list(arr.shape), "file": str(f)}
        specs.append(spec)
    job = {"loader": LOADER.as_uri(), "artifact": str(artifact), "out": str(tmp), "runs": specs, **job}
    (tmp / "job.json").write_text(json.dumps(job))
    p = subprocess.run([node, str(HERE / "run_artifact.mjs"), str(tmp / "job.json")],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"node failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    res = json.loads((tmp / "result.json").read_text())
    for r in res.get("runs", []):
        for name, o in r.get("outputs", {}).items():
            r["outputs"][name] = np.fromfile(o["file"], dtype=o["dtype"]).reshape(o["shape"])
    return res


@pytest.fixture(scope="session")
def run_node(node):
    """run_node(artifact, runs, tmp, **job) -> result dict (see run_artifact.mjs)."""
    return lambda *a, **kw: _run_node(node, *a, **kw)
