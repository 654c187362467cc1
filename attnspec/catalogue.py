"""The shipped specs as one table (name, paper, formulation, parameter count) and a gallery
of their diagrams: `attnspec list` prints the table, `attnspec catalogue` writes it to
docs/catalogue.md with docs/gallery/<spec>.svg, and `attnspec catalogue --check` (run in
the tests) fails when the checked-in catalogue no longer matches the specs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import Diagnostic, SpecError, UsageError
from .ir import COMPOSITION, IR
from .ops import ACTIVATIONS
from .ops.tensors import POINTWISE
from .resources import specs_dir
from .source import SourceFile, Span

REFERENCE_WIDTH = 64  # required int parameters (C, D) take this value for the table
# ... or, when the defaults need more (SGE's 64 groups of 2 halves), the next that fits
REFERENCE_WIDTHS = (REFERENCE_WIDTH, 128, 256, 512)
PARAMS = f"params@{REFERENCE_WIDTH}"
FORM_COLUMNS = ("attention", "over", "Ω_q", "terms", "normaliser", "M")  # per attention
COLUMNS = ("spec", "mechanism", "paper", "year", *FORM_COLUMNS, PARAMS)
SPEC_COLUMNS = tuple(c for c in COLUMNS if c not in FORM_COLUMNS)  # one value per spec
TERMINAL_COLUMNS = tuple(c for c in COLUMNS if c != "paper")  # the long citation is left out

# The header's citation: `"Title", Authors, VENUE YEAR, arXiv:ID`, possibly over several
# comment lines; the arXiv id may be missing (a paper that is not on arXiv).
CITATION = re.compile(
    r'"(?P<title>[^"]+)",\s*(?P<authors>.+?),\s*(?P<venue>[A-Z][\w-]*(?: [A-Z][\w-]*)*)'
    r"\s+(?P<year>(?:19|20)\d\d)(?:,\s*arXiv:(?P<arxiv>\d{4}\.\d{4,5}))?\.?[ \t]*(?:\n|$)",
    re.S)
CITATION_HINT = ('start the file with `# Mechanism`, then `# "Title", Authors, VENUE YEAR, '
                 'arXiv:ID` (the citation may go on over several lines)')
TERM = re.compile(r"E[1-4]")  # E1, E1_memory → E1: the formulation's four terms
# other normaliser ops read as their name
NORMALISER_NAME = {"softmax_keys": "softmax", "unnormalised": "none", "l1_keys": "l1"}
# what may normalise a gate's weight: a function per element, or a softmax over an axis
GATE_FUNCTIONS = {*ACTIVATIONS, *POINTWISE, "softmax"}


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    venue: str
    year: str
    arxiv: str | None

    def __str__(self) -> str:
        arxiv = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f'"{self.title}", {self.venue} {self.year}{arxiv}'


@dataclass(frozen=True)
class Shipped:
    """One shipped spec, built at the reference width."""

    name: str
    source: SourceFile
    ir: IR
    widths: dict[str, int]  # the required int parameters and the width they were given


# ---------------------------------------------------------------------------- the rows


def shipped(directory: Path | None = None) -> list[Shipped]:
    """Every spec in the directory (default: the shipped ones), built. A spec that fails
    stops the catalogue: a table that silently lost a row would look current."""
    paths = sorted((directory or specs_dir()).glob("*.attn"))
    return [_build(path) for path in paths]


def _build(path: Path) -> Shipped:
    from . import check
    from .program import load

    source = SourceFile.read(path)
    try:
        program = load(source)
        main = program.main_definition()
        widths = example_widths(program, main)
        ir = check.build_ir(program, widths, main.name)
    except SpecError:
        raise  # its message already starts with the file and line
    except Exception as err:  # a bug, but the report must still say which spec hit it
        raise RuntimeError(f"building {path.name} for the catalogue: "
                           f"{type(err).__name__}: {err}") from err
    return Shipped(path.stem, source, ir, widths)


def example_widths(program, definition) -> dict[str, int]:
    """The required int parameters at the first of REFERENCE_WIDTHS the defaults accept."""
    from . import check

    required = [p.name for p in definition.params if p.default is None and p.type.name == "int"]
    for width in REFERENCE_WIDTHS:
        widths = dict.fromkeys(required, width)
        try:
            check.build_ir(program, widths, definition.name)
            return widths
        except SpecError as err:
            failure = err
    if not required:
        return {}
    raise failure


def rows(specs: list[Shipped] | None = None) -> list[dict[str, str]]:
    """The table, one row per attention (cells keyed by COLUMNS): the one source for both
    `attnspec list` and docs/catalogue.md."""
    from . import count

    table = []
    for spec in shipped() if specs is None else specs:
        mechanism, paper = header(spec.source)
        params = sum(count.parameters(spec.ir).values())
        # a spec without an attention (plain layers) still gets its row
        for form in formulations(spec.ir) or [dict.fromkeys(FORM_COLUMNS, "—")]:
            table.append({"spec": spec.name, "mechanism": mechanism, "paper": str(paper),
                          "year": paper.year, **form, PARAMS: f"{params:,}"})
    return table


def header(source: SourceFile) -> tuple[str, Paper]:
    """(mechanism, paper) from a spec's leading comment block: its first line names the
    mechanism, the lines after it cite the paper (CITATION_HINT)."""
    lines = []
    for line in source.text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    found = CITATION.match("\n".join(lines[1:]))
    if not lines or not lines[0] or found is None:
        span = Span(source.name, 1, 1, 1, 2)
        raise SpecError([Diagnostic("no-citation", "the header must name the mechanism, then "
                                    "cite its paper", span, CITATION_HINT)], {source.name: source})
    paper = Paper(*(" ".join(found[k].split()) for k in ("title", "authors", "venue", "year")),
                  found["arxiv"])
    return lines[0], paper


def formulations(ir: IR) -> list[dict[str, str]]:
    """Per attention: its name, over, Ω_q, the terms and normaliser of A, and M."""
    forms = []
    for attention in ir.attentions:
        nodes = [n for n in ir.nodes() if ir.attention_of(n.name) is attention]
        gate = attention.range == "self"  # one weight per element: no term, no keys
        if attention.range == COMPOSITION:
            forms.append({"attention": attention.name, "over": "—", "Ω_q": "composition",
                          "terms": "—", "normaliser": "—", "M": "—"})
            continue
        forms.append({
            "attention": attention.name, "over": attention.over, "Ω_q": attention.range,
            "terms": "gate" if gate else _terms(nodes),
            "normaliser": _gate_function(ir, nodes) if gate else _normaliser(nodes),
            "M": attention.heads_text()})
    return forms


def _terms(nodes) -> str:
    found = dict.fromkeys(m.group() for n in nodes if (m := TERM.match(n.op)))
    return ", ".join(sorted(found)) or "—"


def _normaliser(nodes) -> str:
    ops = [n.op for n in nodes if n.role == "normaliser"]
    return ", ".join(NORMALISER_NAME.get(op, op) for op in dict.fromkeys(ops)) or "—"


def _gate_function(ir: IR, nodes) -> str:
    """A gate's normaliser: the function its weight last went through (SE's sigmoid, SK's
    softmax over the branches), followed back from where the weight meets the value, past
    reshapes and resizes but not past a layer (its weight, not a normaliser)."""
    context = next((n for n in nodes if n.role == "context"), None)
    node = ir.node(context.inputs[0]) if context is not None else None
    while node is not None and node.op not in GATE_FUNCTIONS:
        node = ir.node(node.inputs[0]) if node.inputs and node.module is None else None
    return node.op if node is not None else "—"


# ---------------------------------------------------------------------------- rendering


def terminal(table: list[dict[str, str]]) -> str:
    """An aligned text table; a spec's second attention leaves the spec's cells blank."""
    lines = [dict(zip(TERMINAL_COLUMNS, TERMINAL_COLUMNS))] + _blank_repeats(table)
    widths = {c: max(len(line[c]) for line in lines) for c in TERMINAL_COLUMNS}
    return "\n".join("  ".join(line[c].ljust(widths[c]) for c in TERMINAL_COLUMNS).rstrip()
                     for line in lines)


def _blank_repeats(table: list[dict[str, str]]) -> list[dict[str, str]]:
    out, previous = [], None
    for row in table:
        same = row["spec"] == previous
        out.append({c: "" if same and c in SPEC_COLUMNS else v for c, v in row.items()})
        previous = row["spec"]
    return out


INTRO = f"""\
# Catalogue of the shipped specs

<!-- generated by `attnspec catalogue`; do not edit. -->

Generated by `attnspec catalogue` from [specs/](../specs/); do not edit. The tests run
`attnspec catalogue --check`, which fails when this page or a diagram is missing or out of
date. One row per attention (a block such as CBAM has several), in the terms of Zhu et al.'s
formulation, `y_q = Σ_m W_m [ Σ_{{k ∈ Ω_q}} A_m(q, k, z_q, x_k) ⊙ W'_m x_k ]`:

- **over**: what q and k index (positions, channels, memory slots).
- **Ω_q**: the keys each query attends to: `all`, `causal`, `criss_cross` (the query's row
  and column), `window(R)` (within R positions), `partition(s)` (the query's part of
  the map), or `self`, a gate (one weight per element, no keys).
- **terms**: which terms make up A: E1 (query and key content), E2 (query content and
  relative position), E3 (key content only), E4 (relative position only); `gate` when
  Ω_q = self.
- **normaliser**: how A is normalised over Ω_q: softmax, count (divide by |Ω_q|),
  double_norm (softmax over one axis, then L1 over the other), l1 (divide by the sum over
  the keys), sigmoid, none (the terms are the weights); for a gate, the last pointwise
  function of its weight.
- **M**: the number of heads.
- **{PARAMS}**: learned parameters at a reference shape: every required int parameter (the
  width, C or D) is {REFERENCE_WIDTH} (or, where the defaults need more, the first of
  {", ".join(map(str, REFERENCE_WIDTHS[1:]))} they accept), the others keep their
  defaults. The diagrams are drawn at the same widths.
"""

NOT_YET_INTRO = """\
## Variants not written yet

Every Tier-1 mechanism of the catalogue ships as a spec above. These variants of shipped
specs (options of the authors' code, or forms the papers describe) are not written yet, with
what each would need (docs/language.md §12 walks every mechanism).
"""

# (spec, the variant left out, what it needs)
NOT_YET = (
    ("aft", "AFT-full's and AFT-local's factorised w: w_{t,t'} = u_tᵀ v_{t'}, u and v "
     "T × d' tables (d' = 128), the parameterisation the paper trains them with (as "
     "recalled: its text could not be read here)", "a term from two learned tables of "
     "absolute positions, cut to the run's length, their dot product shared by every head "
     "(the shipped spec learns the T × T table w itself)"),
    ("cbam", "the parallel arrangement of the channel and spatial gates (§4.1's ablation; "
     "the sequential orders ship as `order`)", "the facts: how the paper combines the two "
     "gates side by side could not be read here, and the authors' code builds only the "
     "sequential channel-then-spatial module"),
    ("deformable", "deformable RoI pooling", "nothing: it is a pooling of boxes, outside "
     "the module (DCNv2's modulation ships as `modulation`)"),
    ("gather_excite", "GE-θ with a local extent (learned strided depthwise gathers, the "
     "paper's GE-θ at extents below global)", "the facts: the authors' prototxts are the "
     "global GE-θ, GE-θ⁻ and GE-θ⁺; their extent-8 GE-θ is a figure in their README "
     "(figures/GEP8.jpg), and neither it nor the paper's text on the local learned gather "
     "could be read here"),
    ("halo", "HaloNet's attention downsampling (the strided layers of its stages, which "
     "replace the strided convolutions)", "the facts: how the paper subsamples a block's "
     "queries could not be read here, and there is no official code (the language writes "
     "strided queries: `over positions(H W, stride = s)`)"),
)

TIER2_INTRO = """\
## Tier 2 not shipped yet

The rest of the catalogue's second tier (the mechanisms the attention zoos ship). None of
these is listed above; each row says what shipping it needs: facts about the paper that
could not be checked here, or a construct the language lacks.
"""

# (mechanism, paper, what it needs)
TIER2_NOT_YET = (
    ("ufo", "UFO-ViT, Song 2021", "expressible (`dot` over the tokens for Kᵀ V, `norm`, a "
     "learned γ per head); not shipped because the axis XNorm normalises Kᵀ V over could "
     "not be checked against the paper here (its method section is not readable here), "
     "there is no official code, and third-party copies disagree on it"),
)

GALLERY_INTRO = """\
## Gallery

What `attnspec draw <spec>` draws: one box per attention, labelled with its name, Ω_q, M and
what q and k index; inside it one dashed box per part of the formulation (query, key, value,
weight A, context, output), a `let`'s nodes in the part that reads them or in a box `let` of
their own; each edge carries the named-axis type of its tensor.
"""

ARXIV = re.compile(r"arXiv:(\d{4}\.\d{4,5})")


def markdown(specs: list[Shipped]) -> str:
    """docs/catalogue.md: the intro, the table, then one diagram per spec."""
    table = _blank_repeats(rows(specs))
    lines = [INTRO, "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if c in ("M", PARAMS) else "---" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(c, row[c]) for c in COLUMNS) + " |" for row in table]
    lines += ["", NOT_YET_INTRO, "| spec | variant | what it needs |", "|---|---|---|"]
    lines += [f"| {name} | {variant} | {needs} |" for name, variant, needs in NOT_YET]
    lines += ["", TIER2_INTRO, "| mechanism | paper | what it needs |", "|---|---|---|"]
    lines += [f"| {name} | {paper} | {needs} |" for name, paper, needs in TIER2_NOT_YET]
    lines += ["", GALLERY_INTRO]
    for spec in specs:
        lines += [f"### {spec.name}", "", f"![{spec.name}](gallery/{spec.name}.svg)", "",
                  _caption(spec), ""]
    return "\n".join(lines)


def _cell(column: str, text: str) -> str:
    text = text.replace("|", "\\|")
    if column == "spec" and text:
        return f"[{text}](#{text})"  # to its diagram below
    if column == "paper":
        return ARXIV.sub(r"[arXiv:\1](https://arxiv.org/abs/\1)", text)
    return text


def _caption(spec: Shipped) -> str:
    mechanism, _ = header(spec.source)
    widths = ", ".join(f"{k} = {v}" for k, v in spec.widths.items()) or "its defaults"
    return f"*{mechanism}*, [specs/{spec.name}.attn](../specs/{spec.name}.attn), drawn " \
           f"with {widths}."


# ---------------------------------------------------------------------------- the files


def docs_dir() -> Path:
    """docs/ beside specs/: the catalogue is written in a checkout, not an installed wheel."""
    docs = specs_dir().parent / "docs"
    if not docs.is_dir():
        raise UsageError(f"no docs/ directory beside {specs_dir()}: `attnspec catalogue` "
                         "runs in a checkout of attnspec")
    return docs


def write(docs: Path | None = None, specs: list[Shipped] | None = None) -> list[Path]:
    """Write docs/catalogue.md and docs/gallery/<spec>.svg, removing diagrams of specs
    that are gone. Everything is built before anything is written."""
    from .draw import render

    specs = shipped() if specs is None else specs  # a broken spec first: it is the news
    docs = docs or docs_dir()
    text = markdown(specs)
    gallery = docs / "gallery"
    gallery.mkdir(exist_ok=True)
    written = [render(spec.ir, gallery / f"{spec.name}.svg") for spec in specs]
    for orphan in _orphans(gallery, specs):
        orphan.unlink()
    page = docs / "catalogue.md"
    page.write_bytes(text.encode())  # bytes: the same newlines on every platform
    return [page, *written]


def stale(docs: Path | None = None, specs: list[Shipped] | None = None) -> list[str]:
    """What `write` would change, one message per file (empty when all is current). The
    diagrams are only checked to exist: graphviz versions draw the same graph differently."""
    specs = shipped() if specs is None else specs
    docs = docs or docs_dir()
    problems = []
    page, expected = docs / "catalogue.md", markdown(specs)
    actual = page.read_bytes().decode() if page.is_file() else None
    if actual is None:
        problems.append(f"{_shown(page)} is missing")
    elif actual != expected:
        diff = difflib.unified_diff(actual.splitlines(), expected.splitlines(),
                                    f"{_shown(page)} (checked in)", "expected", lineterm="")
        problems.append(f"{_shown(page)} is out of date:\n" + "\n".join(diff))
    for spec in specs:
        svg = docs / "gallery" / f"{spec.name}.svg"
        if not svg.is_file():
            problems.append(f"{_shown(svg)} is missing")
    problems += [f"{_shown(p)} draws no shipped spec" for p in _orphans(docs / "gallery", specs)]
    return problems


def _orphans(gallery: Path, specs: list[Shipped]) -> list[Path]:
    names = {spec.name for spec in specs}
    return sorted(p for p in gallery.glob("*.svg") if p.stem not in names)


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is under it (as CI logs read)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
