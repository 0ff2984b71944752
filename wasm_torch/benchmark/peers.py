"""The peer systems `wasm-torch bench` compares against, each at a given thread count (1 or 2).

- PyTorch eager: `torch.set_num_threads(n)` around each call, `torch.no_grad()`.
- ONNX Runtime native: n intra-op threads and one inter-op thread, sequential, all graph optimizations.
- ONNX Runtime Web (onnxruntime-web from npm, installed by scripts/setup_bench.sh into
  bench/node/node_modules): Node runs ortweb_runner.mjs in a subprocess (wasm backend, SIMD,
  `numThreads = n`, no proxy worker) that stays up while we time: each "run" line on its stdin is
  one run timed inside Node, so its runs interleave with the in-process systems. It also reports
  the outputs and the runtime files Node loaded.

All peers run the same torch model: `to_onnx` exports it with torch.onnx (the dynamo exporter
first, the TorchScript one if that fails) and says which exporter made the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BenchmarkError

RUNNER = Path(__file__).with_name("ortweb_runner.mjs")
ORTWEB_VERSION = "1.30.0"
REPO_NODE_DIR = Path(__file__).resolve().parents[2] / "bench" / "node"


@contextlib.contextmanager
def _quiet_loggers(names: tuple[str, ...] = ("onnxscript", "torch.onnx")) -> Iterator[None]:
    """The exporters log progress and constant-folding notes at WARNING; keep the table readable."""
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def to_onnx(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> dict[str, Any]:
    """Export with the dynamo exporter, falling back to dynamo=False; returns {exporter, fallback_reason}."""
    errors: list[str] = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_loggers():
                warnings.simplefilter("ignore")  # exporter chatter, not the user's business here
                if dynamo:
                    torch.onnx.export(model, inputs, dynamo=True, verbose=False).save(str(path))
                else:
                    torch.onnx.export(model, inputs, str(path), dynamo=False, opset_version=17)
            return {"exporter": "dynamo" if dynamo else "torchscript", "export_errors": errors}
        except Exception as e:  # any exporter failure: try the other one, keep the reason
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(e).__name__}: {str(e)[:300]}")
    raise BenchmarkError(f"torch.onnx.export failed with both exporters: {errors}")


def torch_runner(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], threads: int | None = None) -> Any:
    """A no-argument callable running the model in PyTorch eager, on `threads` threads (None: as set)."""

    def run() -> Any:
        saved = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                return model(*inputs)
        finally:
            torch.set_num_threads(saved)

    return run


def ort_native_session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_native_runner(session: Any, inputs: list[np.ndarray]) -> Any:
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise BenchmarkError(f"the ONNX model has inputs {names} but the case gives {len(inputs)}")
    feeds = dict(zip(names, inputs, strict=True))
    return lambda: session.run(None, feeds)


def ortweb_package(node_dir: Path | None = None) -> Path:
    """The installed onnxruntime-web package folder, or a BenchmarkError saying how to install it."""
    node_dir = Path(node_dir) if node_dir else REPO_NODE_DIR
    pkg = node_dir / "node_modules" / "onnxruntime-web"
    if not (pkg / "package.json").is_file():
        raise BenchmarkError(
            f"onnxruntime-web is not installed in {node_dir}/node_modules: run `bash scripts/setup_bench.sh` "
            "(or `make bench-setup`) from the repository root first; it runs `npm ci` there"
        )
    version = json.loads((pkg / "package.json").read_text())["version"]
    if version != ORTWEB_VERSION:
        raise BenchmarkError(
            f"{pkg} is onnxruntime-web {version}, the benchmark pins {ORTWEB_VERSION}: "
            "run `bash scripts/setup_bench.sh` to reinstall from bench/node/package-lock.json"
        )
    if shutil.which("node") is None:
        raise BenchmarkError("node is not on PATH: run `bash scripts/setup_bench.sh` (installs Node 20)")
    return pkg


class OrtWeb:
    """ONNX Runtime Web in a Node subprocess, loaded and warmed up; `run_once()` times one run in Node.

    Kept alive for the whole timing phase so its runs interleave with the in-process systems;
    `close()` ends it and returns its result (times, outputs as arrays, runtime files and bytes).
    """

    def __init__(
        self,
        onnx_path: Path,
        inputs: list[np.ndarray],
        work: Path,
        package: Path,
        warmup: int,
        warmup_seconds: float = 0.0,
        threads: int = 1,
    ):
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        specs = []
        for k, x in enumerate(inputs):
            f = work / f"in{k}.bin"
            np.ascontiguousarray(x).tofile(f)
            specs.append({"dtype": str(x.dtype), "shape": list(x.shape), "file": str(f)})
        spec = {
            "ort_package": str(package),
            "model": str(onnx_path),
            "inputs": specs,
            "warmup": warmup,
            "warmup_seconds": warmup_seconds,
            "repeat": 0,
            "interactive": True,
            "out_dir": str(work),
            "threads": threads,
        }
        (work / "spec.json").write_text(json.dumps(spec))
        self._stderr = (work / "stderr.txt").open("w")
        self.proc = subprocess.Popen(
            ["node", str(RUNNER), str(work / "spec.json")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._expect("@@ready")

    def _fail(self, what: str) -> BenchmarkError:
        self.proc.kill()
        self.proc.wait()
        self._stderr.close()
        err = (self.work / "stderr.txt").read_text().strip()[-800:]
        return BenchmarkError(f"ONNX Runtime Web (node) {what}, exit {self.proc.returncode}: {err}")

    def _expect(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ORT may log other lines; the protocol's start with @@
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise self._fail(f"stopped before answering {prefix!r}")

    def run_once(self) -> float:
        """One run, timed inside Node (performance.now around session.run); returns ms."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("run\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._fail("is gone") from None
        return float(self._expect("@@t"))

    def close(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("end\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=600)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            raise self._fail("did not finish") from None
        self._stderr.close()
        if self.proc.returncode != 0 or not (self.work / "result.json").is_file():
            raise self._fail("failed")
        res = json.loads((self.work / "result.json").read_text())
        res["outputs"] = [
            np.fromfile(o["file"], dtype=np.dtype(o["dtype"])).reshape(o["shape"]) for o in res["outputs"]
        ]
        return res

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def node_version() -> str | None:
    if shutil.which("node") is None:
        return None
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip() or None
