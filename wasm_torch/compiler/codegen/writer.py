"""An indent-aware C source writer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class CWriter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "") -> None:
        self.lines.append(("    " * self.depth + text) if text else "")

    @contextmanager
    def block(self, head: str) -> Iterator[None]:
        self.line(head + " {")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self.line("}")

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"
