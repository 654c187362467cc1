"""The shipped specs as a table: name, paper, formulation, parameter count."""

from __future__ import annotations

import re

from .resources import specs_dir

REFERENCE_WIDTH = 64  # required int parameters (C, D) take this value for the table


def header(text: str) -> tuple[str, str]:
    """(mechanism, paper citation) from a spec's leading comment block: its first line
    names the mechanism, the lines up to the one with the arXiv id cite the paper."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    title = lines[0] if lines else ""
    cited = []
    for line in lines[1:]:
        cited.append(line)
        if "arXiv" in line:
            break
    return title, " ".join(cited)


def year(paper: str) -> str:
    found = re.findall(r"\b(?:19|20)\d\d\b", paper)
    return found[0] if found else ""


def rows() -> list[tuple]:
    from . import check, count
    from .program import load
    from .source import SourceFile

    table = [("spec", "mechanism", "year", "over → range, M", "params@64")]
    for path in sorted(specs_dir().glob("*.attn")):
        source = SourceFile.read(path)
        program = load(source)
        main = program.main_definition()
        params = {p.name: REFERENCE_WIDTH for p in main.params
                  if p.default is None and p.type.name == "int"}
        ir = check.build_ir(program, params, main.name)
        forms = "; ".join(f"{a.over} → {a.range}, M={a.heads}" for a in ir.attentions)
        title, paper = header(source.text)
        table.append((path.stem, title, year(paper), forms, sum(count.parameters(ir).values())))
    return table
