"""Graph -> Graph passes, in the order the pipeline runs them. Adding a pass = adding a line."""

from collections.abc import Callable

from ..ir.graph import Graph
from .dce import eliminate_dead_code
from .fold import fold_constants
from .memory_plan import MemoryPlan, plan_memory
from .pack_weights import pack_weights
from .shapes import propagate_shapes
from .simplify import simplify

PASSES: list[tuple[str, Callable[[Graph], Graph]]] = [
    ("fold_constants", fold_constants),
    ("simplify", simplify),
    ("pack_weights", pack_weights),
    ("eliminate_dead_code", eliminate_dead_code),
    ("propagate_shapes", propagate_shapes),
]

__all__ = ["PASSES", "MemoryPlan", "plan_memory"]
