"""C -> wasm through the ziglang package, cached by content hash."""

from .zig import FLAGS, compile_c

__all__ = ["FLAGS", "compile_c"]
