"""Source text and spans: where in which file a piece of a spec came from.

Lines and columns are 1-based, as editors show them; `end_col` is exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceFile:
    """A spec's text and the name to show for it (a path, or `<string>`)."""

    name: str
    text: str

    @classmethod
    def read(cls, path: str | Path) -> SourceFile:
        path = Path(path)
        return cls(str(path), path.read_text(encoding="utf-8"))

    def line(self, lineno: int) -> str:
        lines = self.text.splitlines()
        return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column, end column exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of `other`."""
        return Span(self.file, self.line, self.col, other.end_line, other.end_col)


NOWHERE = Span("<builtin>", 0, 0, 0, 0)
