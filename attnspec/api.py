"""The public surface: every stage callable from Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import check as _check
from .diagnostics import UsageError
from .ir import IR
from .program import Program, load
from .resources import specs_dir
from .source import SourceFile


def _source(text_or_path: str | Path) -> SourceFile:
    if isinstance(text_or_path, Path) or (
            "\n" not in str(text_or_path) and str(text_or_path).endswith(".attn")):
        path = Path(text_or_path)
        if path.is_dir():
            raise UsageError(f"{path} is a folder, not a spec file")
        if not path.is_file():
            raise UsageError(f"no such spec file: {path}")
        return SourceFile.read(path)
    return SourceFile("<string>", str(text_or_path))


def parse(text_or_path: str | Path) -> Program:
    """Parse and check a spec (a path ending in .attn, or the text itself)."""
    program = load(_source(text_or_path))
    _check.check_program(program)
    return program


def build_ir(text_or_path: str | Path | Program, name: str | None = None, **params: Any) -> IR:
    program = text_or_path if isinstance(text_or_path, Program) else load(_source(text_or_path))
    return _check.build_ir(program, params, name)


def compile_file(path: str | Path, name: str | None = None, **params: Any):
    """Compile a spec file into a torch.nn.Module (a torch.fx GraphModule)."""
    from .lower import lower

    return lower(build_ir(Path(path), name, **params))


def compile_text(text: str, name: str | None = None, **params: Any):
    """Compile spec source text (as `compile_file` does a file)."""
    from .lower import lower

    return lower(_check.build_ir(load(SourceFile("<string>", text)), params, name))


def shipped() -> list[str]:
    return sorted(p.stem for p in specs_dir().glob("*.attn"))


def spec_path(name: str) -> Path:
    """The file of a shipped spec, by its name or file name: `se` or `se.attn`."""
    name = name.removesuffix(".attn")
    path = specs_dir() / f"{name}.attn"
    if not path.is_file():
        from .diagnostics import did_you_mean

        hint = did_you_mean(name, shipped()) or "`attnspec list` shows them"
        raise UsageError(f"no shipped spec `{name}` ({hint})")
    return path


def load_spec(name: str, definition: str | None = None, /, **params: Any):
    """A shipped spec compiled with `params`: attnspec.load("se", C=64) (or "se.attn");
    another definition of its file by name: attnspec.load("sliding_window", "Longformer",
    D=768)."""
    return compile_file(spec_path(name), definition, **params)
