"""The peer benchmark behind `wasm-torch bench` and `make bench` (docs/benchmarks.md).

ours (wasm_torch.compile + wasmtime) vs ONNX Runtime Web (Node), ONNX Runtime native and PyTorch
eager, one thread each, on the suite in models.py: latency, code and runtime sizes, memory, and
each system's agreement with PyTorch. Compile side: imports torch, onnxruntime and matplotlib.
"""

from .models import CASES, SYSTEMS
from .suite import bench, markdown_table, run_suite

__all__ = ["CASES", "SYSTEMS", "bench", "markdown_table", "run_suite"]
