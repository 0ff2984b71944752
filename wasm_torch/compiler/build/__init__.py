"""C -> wasm through the ziglang package, cached by content hash."""

from .zig import compile_c, flags

__all__ = ["compile_c", "flags"]
