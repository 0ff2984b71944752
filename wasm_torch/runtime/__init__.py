"""Run artifacts with wasmtime. Imports neither torch nor the compiler."""

from .module import WasmModule, load

__all__ = ["WasmModule", "load"]
