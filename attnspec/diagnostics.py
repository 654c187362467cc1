"""Diagnostics: one message about a spec, with its span and a hint, and the one renderer."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from .source import SourceFile, Span


@dataclass(frozen=True)
class Diagnostic:
    code: str  # a stable kebab-case name, e.g. "unknown-name"; tests and docs use it
    message: str
    span: Span
    hint: str | None = None

    def render(self, sources: dict[str, SourceFile]) -> str:
        """`file:line:col: error[code]: message`, the source line, a caret, the hint."""
        out = [f"{self.span}: error[{self.code}]: {self.message}"]
        source = sources.get(self.span.file)
        if source is not None and self.span.line > 0:
            text = source.line(self.span.line).expandtabs(1)
            width = (
                max(1, self.span.end_col - self.span.col)
                if self.span.end_line == self.span.line
                else max(1, len(text) - self.span.col + 1)
            )
            gutter = f"{self.span.line:>4} | "
            out.append(gutter + text)
            out.append(" " * (len(gutter) + self.span.col - 1) + "^" * width)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class SpecError(Exception):
    """Every problem found in a spec, raised once; the CLI prints them and exits 1."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, SourceFile]):
        # a definition checked alone and again inside a block reports its error once
        self.diagnostics = sorted(
            dict.fromkeys(diagnostics), key=lambda d: (d.span.file, d.span.line, d.span.col,
                                                       d.code))
        self.sources = dict(sources)
        super().__init__(self.render())

    def render(self) -> str:
        body = "\n\n".join(d.render(self.sources) for d in self.diagnostics)
        n = len(self.diagnostics)
        return f"{body}\n\n{n} error{'s' if n != 1 else ''} found"


class UsageError(Exception):
    """A mistake in how the tool or API was called (bad --param, missing file): exit 2."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, when one is close enough to be a typo."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None
