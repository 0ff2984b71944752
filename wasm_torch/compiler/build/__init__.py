"""C -> wasm through the ziglang package, cached by content hash; one build per variant."""

from .variants import VARIANTS, Variant, selected
from .zig import compile_c, compile_variants, flags

__all__ = ["VARIANTS", "Variant", "compile_c", "compile_variants", "flags", "selected"]
