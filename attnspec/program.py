"""Stage: files → Program. Parses a file and every file it `use`s, once each, with the
definitions of all of them by name. `use` paths are relative to the file that uses them,
then to the shipped specs/; a path may not leave those folders, and cycles are errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .diagnostics import Diagnostic, SpecError
from .parse import parse_source
from .resources import specs_dir
from .source import SourceFile, Span
from .spec import Attention, Block, Spec


@dataclass
class Program:
    """Everything one compile sees: definitions by name, and the sources for messages."""

    main: Spec
    definitions: dict[str, Attention | Block] = field(default_factory=dict)
    sources: dict[str, SourceFile] = field(default_factory=dict)

    def main_definition(self) -> Attention | Block:
        """The definition named like the file (case and `_` ignored), else the last one."""
        stem = Path(self.main.file).stem.replace("_", "").lower()
        defs = self.main.definitions
        for d in defs:
            if d.name.replace("_", "").lower() == stem:
                return d
        if not defs:
            raise SpecError([Diagnostic("empty", "the file defines no attention or block",
                                        self.main.span)], self.sources)
        return defs[-1]


def load(source: SourceFile) -> Program:
    """Parse `source` and everything it uses; raise SpecError with every problem."""
    loader = _Loader()
    spec = loader.file(source, chain=())
    if loader.diagnostics:
        raise SpecError(loader.diagnostics, loader.sources)
    program = Program(main=spec, sources=loader.sources)
    for parsed in loader.parsed.values():
        for d in parsed.definitions:
            first = program.definitions.get(d.name)
            if first is not None and first is not d:
                loader.diagnostics.append(Diagnostic(
                    "duplicate-name", f"`{d.name}` is also defined in {d.span.file}",
                    first.name_span, "rename one of them"))
            program.definitions.setdefault(d.name, d)
    if loader.diagnostics:
        raise SpecError(loader.diagnostics, loader.sources)
    return program


class _Loader:
    def __init__(self):
        self.parsed: dict[str, Spec] = {}
        self.sources: dict[str, SourceFile] = {}
        self.diagnostics: list[Diagnostic] = []

    def file(self, source: SourceFile, chain: tuple[str, ...]) -> Spec | None:
        key = _key(source.name)
        if key in self.parsed:
            return self.parsed[key]
        self.sources[source.name] = source
        try:
            spec = parse_source(source)
        except SpecError as err:
            self.diagnostics.extend(err.diagnostics)
            return None
        self.parsed[key] = spec
        for use in spec.uses:
            for path in use.paths:
                self._use(source, path.value, path.span, chain + (key,))
        return spec

    def _use(self, user: SourceFile, target: str, span: Span, chain: tuple[str, ...]):
        found = _resolve(user.name, target)
        if isinstance(found, Diagnostic):
            self.diagnostics.append(Diagnostic(found.code, found.message, span, found.hint))
            return
        key = _key(str(found))
        shown = _display(user.name, target, found)
        if key in chain:
            cycle = " → ".join(Path(c).name for c in chain[chain.index(key):] + (key,))
            self.diagnostics.append(Diagnostic(
                "circular-use", f"circular use: {cycle}", span,
                "two files may not use each other; move the shared definitions to a third"))
            return
        self.file(SourceFile.read(found, shown), chain)


def _display(user: str, target: str, found: Path) -> str:
    """How messages name a used file: beside its user's name, or as a shipped spec."""
    if found.is_relative_to(specs_dir().resolve()) and not \
            (Path(user).parent / target).is_file():
        return f"<shipped>/{found.relative_to(specs_dir().resolve())}"
    return os.path.normpath(os.path.join(os.path.dirname(user), target))


def _key(name: str) -> str:
    path = Path(name)
    return str(path.resolve()) if path.exists() else name


def _resolve(user: str, target: str) -> Path | Diagnostic:
    here = Path(user).parent if Path(user).exists() else Path.cwd()
    folder = f"the folder {os.path.dirname(user) or '.'}"
    roots = {folder: here.resolve(), "the shipped specs": specs_dir().resolve()}
    for where, root in roots.items():
        candidate = (root / target).resolve()
        if not candidate.is_relative_to(root):
            return Diagnostic("use-outside", f"`{target}` leaves {where}", _nowhere(),
                              "a spec may use files in its folder or the shipped specs only")
        if candidate.is_file():
            return candidate
    hint = f"looked in {os.path.dirname(user) or '.'} and in the shipped specs"
    if not target.endswith(".attn") and isinstance(_resolve(user, target + ".attn"), Path):
        hint = f'did you mean "{target}.attn"? a path names the file'
    return Diagnostic("use-missing", f"cannot find `{target}`", _nowhere(), hint)


def _nowhere() -> Span:
    return Span("<use>", 0, 0, 0, 0)
