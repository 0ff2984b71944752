from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import torch

import wasm_torch.serve.ray.env  # noqa: F401  (before test_ray imports ray: see serve/ray/env.py)
from wasm_torch.serve.pool import ModelPool
from wasm_torch.serve.settings import ServeSettings
from wasm_torch.serve.sim.faults import FaultPlan, FaultyModel

from .fakes import FakeModel

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan()


@pytest.fixture
def make_pool(plan):
    pools: list[ModelPool] = []

    def make(factory=FakeModel, faulty: bool = True, **settings) -> ModelPool:
        s = ServeSettings(**{"replicas": 2, "max_queue_delay_s": 0.005, "healing": False, **settings})
        f = (lambda: FaultyModel(factory(), plan)) if faulty else factory
        pool = ModelPool("m", f, s)
        pools.append(pool)
        return pool

    yield make
    for p in pools:
        p.close()


# --- real compiled models and a real `wasm-torch serve` process ------------------------------------
VOCAB = 50


class TokenClassifier(torch.nn.Module):
    """ids (batch, seq) int64 -> logits (batch, 3): an embedding, so a bad id traps (IndexOutOfRange)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids).mean(dim=1))


@pytest.fixture(scope="session")
def compiled(artifacts):
    """{"mlp": (path, torch model), "tok": (path, torch model)}: batch (and seq) dims are dynamic."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    a = artifacts("serve_mlp", mlp, (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    tok = TokenClassifier().eval()
    seq = torch.export.Dim("seq", min=1, max=32)
    ids = torch.zeros(2, 4, dtype=torch.long)
    b = artifacts("serve_tok", tok, (ids,), dynamic_shapes=({0: batch, 1: seq},))
    return {"mlp": (a.path, mlp), "tok": (b.path, tok)}


@pytest.fixture(scope="session")
def model_dir(compiled, tmp_path_factory) -> Path:
    """A folder of the two compiled artifacts (copies: tests may not touch the shared ones)."""
    root = tmp_path_factory.mktemp("served")
    for name, (path, _) in compiled.items():
        shutil.copytree(path, root / name)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A `wasm-torch serve` child process on 127.0.0.1."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    grpc_port: int | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def rss_bytes(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def metrics(self, headers: dict[str, str] | None = None) -> str:
        return httpx.get(self.url + "/metrics", headers=headers, timeout=30).text


def start_server(models: Path, log: Path, *flags: str, wait_s: float = 120.0) -> Served:
    """Start `wasm-torch serve models --port P --grpc-port G *flags` and wait until /v2/health/live
    answers (gRPC on a free port too, unless the flags say --no-grpc or name a port)."""
    port = free_port()
    grpc_port = None
    if "--no-grpc" not in flags and "--grpc-port" not in flags:
        grpc_port = free_port()
        flags = ("--grpc-port", str(grpc_port), *flags)
    elif "--grpc-port" in flags:
        grpc_port = int(flags[flags.index("--grpc-port") + 1])
    exe = Path(sys.executable).with_name("wasm-torch")
    cmd = [str(exe), "serve", str(models), "--host", "127.0.0.1", "--port", str(port), *flags]
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/v2/health/live", timeout=2).status_code == 200:
                return Served(url, port, proc, log, grpc_port)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise AssertionError(f"server did not start within {wait_s:g} s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
