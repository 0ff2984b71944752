"""IR -> C: loop nests rendered from an op table, kernel calls by name, symbolic dims."""

from .emit import ENTRY, generate_c

__all__ = ["ENTRY", "generate_c"]
