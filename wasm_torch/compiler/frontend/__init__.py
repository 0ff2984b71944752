"""PyTorch -> IR. The only compile-side folder that imports torch."""

from . import rules  # noqa: F401  (the rule families beyond aten.py register into its TABLE)
from .aten import supported_ops
from .export import export, from_exported, from_torch

__all__ = ["export", "from_exported", "from_torch", "supported_ops"]
