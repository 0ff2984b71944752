"""Run artifacts with wasmtime. Imports neither torch nor the compiler."""

from .api import load
from .module import WasmModule
from .threads import VariantModule
from .variants import ThreadsUnavailableWarning

__all__ = ["ThreadsUnavailableWarning", "VariantModule", "WasmModule", "load"]
