"""The IR: graph, ops (shape rules), verifier, reference interpreter, text form."""

from .graph import DTYPES, Graph, Node, Symbol, TensorType
from .ops import ALL_OPS
from .text import format_graph
from .verify import verify

__all__ = ["ALL_OPS", "DTYPES", "Graph", "Node", "Symbol", "TensorType", "format_graph", "verify"]
