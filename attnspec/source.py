"""Source text and spans: where in which file a piece of a spec came from.

Lines and columns are 1-based, as editors show them; `end_col` is exclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# A byte that is not UTF-8, as `surrogateescape` keeps it: U+DC00 + the byte (0x80-0xff).
NOT_UTF8 = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class SourceFile:
    """A spec's text and the name to show for it (a path, or `<string>`)."""

    name: str
    text: str

    @classmethod
    def read(cls, path: str | Path, name: str | None = None) -> SourceFile:
        """The file's UTF-8 text (a byte-order mark dropped). Bytes that are not UTF-8 are
        kept, as `NOT_UTF8` characters, for the parser to report where they are."""
        path = Path(path)
        text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
        return cls(str(path) if name is None else name, text)

    def line(self, lineno: int) -> str:
        """Line `lineno` as it can be printed: a byte that is not UTF-8 shows as U+FFFD."""
        lines = self.text.splitlines()
        line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        return NOT_UTF8.sub("\ufffd", line)


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
