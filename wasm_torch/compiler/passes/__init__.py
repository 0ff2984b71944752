"""Graph -> Graph passes, in the order the pipeline runs them. Adding a pass = adding a line."""

from collections.abc import Callable

from ..ir.graph import Graph
from .conv_bn import fold_conv_bn
from .dce import eliminate_dead_code
from .fold import fold_constants
from .fuse_attention import fuse_attention
from .fuse_elementwise import fuse_elementwise
from .fuse_epilogue import fuse_epilogue
from .pack_conv import pack_conv
from .pack_weights import pack_weights
from .shapes import propagate_shapes
from .simplify import simplify

PASSES: list[tuple[str, Callable[[Graph], Graph]]] = [
    ("fold_constants", fold_constants),
    ("simplify", simplify),
    ("fuse_attention", fuse_attention),
    ("fold_conv_bn", fold_conv_bn),
    ("pack_weights", pack_weights),
    ("fuse_epilogue", fuse_epilogue),
    ("pack_conv", pack_conv),
    ("fuse_elementwise", fuse_elementwise),
    ("eliminate_dead_code", eliminate_dead_code),
    ("propagate_shapes", propagate_shapes),
]

__all__ = ["PASSES"]
