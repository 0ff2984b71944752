"""Helpers for the serving benchmarks that drive a real `wasm-torch serve` process: the two small
models they serve (an FP32 MLP and an INT64 token model whose bad ids trap), starting and stopping
the server, reading its metrics. Imported by bench/fuzz_http.py, bench/serve_trap_dos.py and
bench/serve_limits.py."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
VOCAB = 50


def compile_models(root: Path) -> Path:
    """root/mlp (FP32 [batch, 4] -> [batch, 3]) and root/tok (INT64 ids [batch, seq] -> [batch, 3])."""
    import torch

    import wasm_torch

    class TokenClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, 8)
            self.out = torch.nn.Linear(8, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.out(self.emb(ids).mean(dim=1))

    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("seq", min=1, max=32)
    if not (root / "mlp" / "manifest.json").exists():
        mlp = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
        wasm_torch.compile(mlp, (torch.randn(2, 4),), root / "mlp", dynamic_shapes=({0: batch},))
    if not (root / "tok" / "manifest.json").exists():
        ids = torch.zeros(2, 4, dtype=torch.long)
        tok = TokenClassifier().eval()
        wasm_torch.compile(tok, (ids,), root / "tok", dynamic_shapes=({0: batch, 1: seq},))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`wasm-torch serve models --port P *flags` as a child process (stopped by its own pid)."""

    def __init__(self, models: Path, log: Path, *flags: str) -> None:
        if "--grpc-port" not in flags and "--no-grpc" not in flags:
            flags = (*flags, "--no-grpc")  # gRPC's default port (8001) would clash between servers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("wasm-torch")
        self.command = ["wasm-torch", "serve", str(models), "--port", str(self.port), *flags]
        self.log = log.open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [str(exe), *self.command[1:]], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/v2/health/live", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:g} s")

    def rss_bytes(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=30).text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def counter(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
