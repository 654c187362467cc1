"""Stage: IR → graphviz diagram.

One cluster per attention (labelled with its name, Ω_q, M and what q and k index), inside it
one sub-cluster per part of the formulation (its `let`s, query, key, value, weight A,
context, output); edges carry the named-axis type of the tensor that flows along them. Node
ids are IR node names and every iteration is in IR order, so the DOT source is stable
enough to golden-test.
"""

from __future__ import annotations

from pathlib import Path

import graphviz

from .diagnostics import UsageError
from .ir import COMPOSITION, IR, Attention, Node

# role → (the part of the formulation it belongs to, fill colour). Parts are drawn as
# sub-clusters in this order; A_m's terms, its range mask and its normaliser form one part.
ROLE_STYLE: dict[str, tuple[str, str]] = {
    "input": ("input", "#e9ecef"),
    "let": ("let", "#e3f2fd"),
    "query": ("query", "#cfe2ff"),
    "key": ("key", "#d1e7dd"),
    "value": ("value", "#fff3cd"),
    "weight": ("weight A", "#f8d7da"),
    "range": ("weight A", "#f1aeb5"),
    "normaliser": ("weight A", "#ea868f"),
    "context": ("context", "#e2d9f3"),
    "output": ("output", "#ffe5d0"),
    "block": ("block", "#ffffff"),
}
PARTS = ("let", "query", "key", "value", "weight A", "context", "output")
# a `let`'s node drawn in another part takes the part's colour (weight A: the terms')
PART_FILL = {part: colour for part, colour in reversed(ROLE_STYLE.values())}

# Rendered formats by file extension; None means "write the DOT source itself".
FORMATS: dict[str, str | None] = {".svg": "svg", ".png": "png", ".pdf": "pdf",
                                  ".dot": None, ".gv": None}

INSTALL_HINT = ("Install graphviz to render it: `apt-get install graphviz`, "
                "`brew install graphviz` or `conda install graphviz`.")

FONT = "Helvetica"
# newrank lets q, k and v share a rank although each sits in its own cluster
GRAPH_ATTR = {"rankdir": "TB", "newrank": "true", "nodesep": "0.3", "ranksep": "0.35",
              "fontname": FONT, "fontsize": "14", "labelloc": "t"}
NODE_ATTR = {"shape": "box", "style": "rounded,filled", "fontname": FONT, "fontsize": "11",
             "margin": "0.12,0.05", "height": "0.3"}
EDGE_ATTR = {"fontname": FONT, "fontsize": "9", "fontcolor": "#555555", "color": "#555555",
             "arrowsize": "0.7"}
# The diagram's output sink: parentheses never occur in an IR node name (and graphviz
# keeps ids starting with `%` for its anonymous objects).
RETURN = "(return)"

# How ops read on a node, where their IR name says less than the paper's notation would.
OP_LABEL = {"E1": "E1: query · key", "E1_memory": "E1: query · memory",
            "E2": "E2: query · position", "E3": "E3: key", "E4": "E4: position",
            "softmax_keys": "softmax over k", "aggregate": "Σ_k A ⊙ value",
            "add_terms": "+", "sinusoid": "R(q − k): sinusoid",
            "pair_factor": "× a factor per (q, k)"}
ARITH_SYMBOL = {"*": "⊙", "+": "+", "-": "−", "/": "÷"}


def to_dot(ir: IR) -> graphviz.Digraph:
    """The IR as a graphviz Digraph: clusters per attention and per part, typed edges."""
    # A block's name goes on top; a lone attention's name is already on its cluster.
    title = {} if [a.name for a in ir.attentions] == [ir.name] else {"label": ir.name}
    dot = graphviz.Digraph(ir.name, graph_attr={**GRAPH_ATTR, **title},
                           node_attr=NODE_ATTR, edge_attr=EDGE_ATTR)
    # a result handed back under its caller's axis names is drawn as the edge it is
    drawn_as = {n.name: n.inputs[0] for n in ir.nodes() if n.op == "rename" and n.role != "input"}

    def drawn(name: str) -> str:
        while name in drawn_as:
            name = drawn_as[name]
        return name

    nodes = [n for n in ir.nodes() if n.name not in drawn_as]
    owner = {n.name: ir.attention_of(n.name) for n in nodes}
    for node in nodes:
        if node.role == "input" or owner[node.name] is None:
            _add_node(dot, node, None)
    for index, attention in enumerate(ir.attentions):
        members = [n for n in nodes if n.role != "input" and owner[n.name] is attention]
        _add_attention(dot, index, attention, members, _parts(ir, attention, members))
    for node in nodes:
        for source in node.inputs:
            dot.edge(drawn(source), node.name, label=str(ir.node(source).type))
    if ir.output is None:
        return dot
    for i, name in enumerate(ir.outputs()):  # `output y, mu`: y, then y2, ...
        sink = RETURN if i == 0 else f"{RETURN[:-1]}{i + 1})"
        dot.node(sink, "y" if i == 0 else f"y{i + 1}", shape="oval", style="filled",
                 fillcolor=ROLE_STYLE["input"][1])
        dot.edge(drawn(name), sink, label=str(ir.node(name).type))
    return dot


def _parts(ir: IR, attention: Attention, members: list[Node]) -> dict[str, str]:
    """The part each member is drawn in: its role's; a `let`'s nodes in the one part that
    reads them (CBAM's pooled terms in weight A), else, or in a composition, in `let`."""
    part = {n.name: ROLE_STYLE[n.role][0] for n in members}
    for node in reversed(members):  # members are in IR order: users come later
        if node.role != "let" or attention.range == COMPOSITION:
            continue
        readers = {part.get(user, "let") for user in ir.readers(node.name)}
        part[node.name] = readers.pop() if len(readers) == 1 else "let"
    return part


def _add_attention(dot: graphviz.Digraph, index: int, attention: Attention,
                   members: list[Node], part_of: dict[str, str]) -> None:
    heads = attention.heads_text()
    # `\l` ends a left-justified line in DOT
    label = (f"{attention.name}\\lΩ_q = {attention.range}    M = {heads}\\l"
             f"q, k over {attention.over}\\l")
    if attention.range == COMPOSITION:  # no formulation of its own
        label = f"{attention.name}\\l(composes other attentions and layers)\\l"
    identities = {"value": "W′ = I", "output": "W = I"}
    shown = [identities[p] for p in attention.identity if p in identities]
    if shown:
        label += "    ".join(shown) + "\\l"
    with dot.subgraph(name=f"cluster_{index}") as box:
        box.attr(label=label, style="rounded", color="#495057", penwidth="1.5",
                 fontsize="13", labeljust="l")
        for part in PARTS:
            in_part = [n for n in members if part_of[n.name] == part]
            if in_part:
                _add_part(box, f"cluster_{index}_{part.replace(' ', '_')}", part, in_part,
                          attention.scope)
        for node in members:
            if part_of[node.name] not in PARTS:
                _add_node(box, node, attention.scope)
        # q, k and v side by side, as the papers draw them
        firsts = [next((n.name for n in members if n.role == role), None)
                  for role in ("query", "key", "value")]
        if sum(name is not None for name in firsts) > 1:
            with box.subgraph() as row:
                row.attr(rank="same")
                for name in filter(None, firsts):
                    row.node(name)


def _add_part(box: graphviz.Digraph, name: str, part: str, nodes: list[Node],
              scope: str) -> None:
    with box.subgraph(name=name) as sub:
        sub.attr(label=part, style="rounded,dashed", color="#868e96", fontsize="10",
                 fontcolor="#495057", labeljust="l")
        for node in nodes:
            _add_node(sub, node, scope, PART_FILL[part])


def _add_node(graph: graphviz.Digraph, node: Node, scope: str | None,
              colour: str | None = None) -> None:
    colour = colour if node.role == "let" else ROLE_STYLE[node.role][1]
    if node.op == "stand_in":  # `optional = x`
        graph.node(node.name, f"{node.attrs['given']}, else {node.attrs['default']}",
                   fillcolor=colour)
        return
    if node.role == "input":
        optional = node.attrs.get("optional", False)
        graph.node(node.name, _strip(node.name, scope) + (" (optional)" if optional else ""),
                   shape="oval", style="dashed,filled" if optional else "filled",
                   fillcolor=colour)
        return
    graph.node(node.name, _label(node, scope), fillcolor=colour)


def _label(node: Node, scope: str | None) -> str:
    """The op with its telling attribute, then the layer it calls (without the scope)."""
    op, attrs = OP_LABEL.get(node.op, node.op), node.attrs
    if node.op == "arith":
        op = ARITH_SYMBOL.get(attrs.get("op"), attrs.get("op", op))
    elif node.op == "shift":  # S²-MLP's shifts, Swin's cyclic roll
        edge = "" if attrs["edge"] == "keep" else f" ({attrs['edge']})"
        op = f"shift {' '.join(attrs['axes'])} by {attrs['by']}{edge}"
    elif "axes" in attrs:
        op = f"{op} over {' '.join(attrs['axes'])}"
    elif node.op == "scale":
        op = f"× {attrs['factor']:.4g}"
    elif node.op == "stack":
        op = f"stack as {attrs['as']}"
    elif node.op == "range" and attrs.get("causal"):
        op = "range (causal)"
    return op if node.module is None else f"{op}\\n{_strip(node.module, scope)}"


def _strip(name: str, scope: str | None) -> str:
    if scope is None:
        scope = name.rpartition(".")[0] + "." if "." in name else ""
    return name.removeprefix(scope)


def render(ir: IR, out: str | Path) -> Path:
    """Write the diagram to `out`, in the format its extension names (.svg .png .pdf .dot
    .gv). Without the graphviz `dot` program, writes the DOT source next to it and says so."""
    out = Path(out)
    suffix = out.suffix.lower()
    if out.is_dir():
        raise UsageError(f"cannot draw to `{out}`: it is a directory; name a file in it, "
                         f"e.g. {out / (ir.name + '.svg')}")
    if suffix not in FORMATS:
        supported = " ".join(FORMATS)
        raise UsageError(f"cannot draw to `{out}`: unknown extension `{out.suffix}` "
                         f"(supported: {supported})")
    dot = to_dot(ir)
    fmt = FORMATS[suffix]
    if fmt is None:
        _write(out, dot.source.encode())
        return out
    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        source = out.with_suffix(".dot")
        _write(source, dot.source.encode())
        raise UsageError(f"the graphviz `dot` program was not found, so `{out}` was not "
                         f"rendered; wrote the DOT source to `{source}` instead. "
                         f"{INSTALL_HINT}") from None
    _write(out, data)
    return out


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise UsageError(f"cannot write `{path}`: {error.strerror}") from None
