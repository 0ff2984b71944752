"""The IR: graph, op registry (ir/op.py; the ops themselves are in compiler/ops/), verifier,
reference interpreter, text form."""

from .graph import DTYPES, Graph, Node, Symbol, TensorType
from .op import OPS, OpDef, all_ops
from .text import format_graph, parse_graph
from .verify import verify

__all__ = ["DTYPES", "OPS", "Graph", "Node", "OpDef", "Symbol", "TensorType", "all_ops", "format_graph", "parse_graph", "verify"]
