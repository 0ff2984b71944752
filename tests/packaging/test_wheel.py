"""`python -m build` makes an sdist and, from it, a wheel that installs and works on its own.

The wheel is built from the sdist (what `python -m build` does by default), so a file missing from
the sdist fails here too. It must hold every file of the package folder (a new kernel header or web
page not listed as package data would otherwise vanish from installs). It is then installed with
--no-deps into a fresh venv that sees only the runtime dependencies (numpy, wasmtime: linked from
this venv, no network), where `wasm-torch info/run` and `wasm_torch.load` work on an artifact
compiled here, and `compile`/`serve` say which extra to install instead of failing with a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import wasm_torch

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]
REPO = Path(__file__).resolve().parents[2]
RUNTIME_DEPS = ("numpy", "numpy.libs", "wasmtime")


def _sh(*cmd: str | Path, cwd: Path | None = None, ok: bool = True, env: dict | None = None):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if ok:
        assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with this venv's setuptools (pinned, no download); sdist, then wheel from it
    _sh(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO)
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return wheels[0], sdists[0]


def test_wheel_holds_every_file_of_the_package(dist):
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as z:
        shipped = set(z.namelist())
    src = REPO / "wasm_torch"
    files = {
        p.relative_to(REPO).as_posix()
        for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    }
    missing = sorted(files - shipped)
    assert not missing, f"not in the wheel (add them to package data in pyproject.toml): {missing}"
    meta = next(n for n in shipped if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        assert "wasm-torch = wasm_torch.cli:main" in z.read(meta).decode()


@pytest.fixture(scope="module")
def runtime_venv(dist, tmp_path_factory):
    """A fresh venv with the wheel (--no-deps) and only numpy + wasmtime visible."""
    root = tmp_path_factory.mktemp("venv")
    env_dir = root / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    clean = _clean_env(root)  # no PYTHONPATH: pip must not see this checkout's wasm_torch as installed
    _sh(py, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q", dist[0], env=clean)
    deps = root / "deps"  # the runtime dependencies only, linked from this venv
    deps.mkdir()
    site = Path(np.__file__).resolve().parents[1]
    for name in RUNTIME_DEPS:
        for found in [site / name, *site.glob(f"{name}-*.dist-info")]:  # the package and its metadata
            if found.exists():
                (deps / found.name).symlink_to(found)
    purelib = _sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", env=clean).stdout.strip()
    Path(purelib, "runtime_deps.pth").write_text(str(deps) + "\n")
    return env_dir


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.GELU())
    x = torch.randn(2, 5)
    path = tmp_path_factory.mktemp("art") / "mlp"
    wasm_torch.compile(model, (x,), path)
    with torch.no_grad():
        want = model(x).numpy()
    np.save(path.parent / "x.npy", x.numpy())
    return path, want


def _clean_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["WASM_TORCH_CACHE"] = str(tmp / "cache")  # the installed package's own cache
    return env


def test_runtime_only_install_runs_an_artifact(runtime_venv, artifact, tmp_path):
    path, want = artifact
    py, cli, env = runtime_venv / "bin" / "python", runtime_venv / "bin" / "wasm-torch", _clean_env(tmp_path)
    probe = _sh(py, "-c", "import importlib.util as u; print([m for m in ('torch','sympy','fastapi') if u.find_spec(m)])", env=env)
    assert probe.stdout.strip() == "[]", probe.stdout  # really a runtime-only install
    code = (
        "import json, sys, numpy as np, wasm_torch; "
        f"m = wasm_torch.load({str(path)!r}); y = m(np.load({str(path.parent / 'x.npy')!r})); "
        "print(json.dumps({'y': y.tolist(), 'file': wasm_torch.__file__, 'torch': 'torch' in sys.modules}))"
    )
    res = json.loads(_sh(py, "-c", code, cwd=tmp_path, env=env).stdout)
    assert str(runtime_venv) in res["file"] and not res["torch"]  # the installed copy, without torch
    np.testing.assert_allclose(np.array(res["y"], np.float32), want, atol=1e-5)
    assert "wasm-torch compile" in _sh(cli, "--help", env=env).stdout
    info = _sh(cli, "info", path, env=env).stdout
    assert "verified" in info and "output scale" in info
    y = tmp_path / "y.npy"
    _sh(cli, "run", path, path.parent / "x.npy", "--save", y, env=env)
    np.testing.assert_allclose(np.load(y), want, atol=1e-5)


@pytest.mark.parametrize(
    ("argv", "extra"),
    [(["compile", "m:f", "--input-shape", "1,5", "-o", "out"], "compile"), (["serve", "ART"], "serve")],
)
def test_runtime_only_install_names_the_missing_extra(runtime_venv, artifact, tmp_path, argv, extra):
    argv = [str(artifact[0]) if a == "ART" else a for a in argv]
    p = _sh(runtime_venv / "bin" / "wasm-torch", *argv, ok=False, env=_clean_env(tmp_path), cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert f"pip install 'wasm-torch[{extra}]'" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()
