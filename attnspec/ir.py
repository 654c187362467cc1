"""The IR: a networkx DiGraph of typed operations, each with its named-axis output type and
its role in the formulation. One source for lowering, drawing and counting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from .source import Span

# The parts of Zhu et al.'s formulation a node can play; draw.py groups nodes by these.
ROLES = ("input", "let", "query", "key", "value", "weight", "range", "normaliser",
         "context", "output", "block")


@dataclass(frozen=True)
class Axis:
    """A named axis; `size` is None when only known at run time (batch, spatial axes).
    `step`: how far apart, in the input's positions, neighbouring indices are (pooling with
    stride s multiplies it by s); relative positions and window ranges read it."""

    name: str
    size: int | None = None
    step: int = 1
    # an axis `concat(..., as = L)` joined from others: those axes, in order (`part` reads
    # one back)
    parts: tuple[Axis, ...] = ()
    # a free axis cut into windows whose grid is not ⌈n / step⌉ positions (a padding that
    # is not (k − 1) / 2): each cut's (kernel, stride, padding, dilation, ceil mode); or
    # padded at its end to a multiple m, ("pad", m). Its size differs from the axis it came
    # from at run time: operands differing here do not join.
    windows: tuple[tuple[int, int, int, int, bool] | tuple[str, int], ...] = ()

    def __str__(self) -> str:
        return self.name if self.size is None else f"{self.name}={self.size}"


@dataclass(frozen=True)
class TensorType:
    axes: tuple[Axis, ...]
    dtype: str = "float"
    batched: bool = True  # axis 0 is the batch; a position table's rows are not one

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def per_sample(self) -> tuple[str, ...]:
        """The axes an operator may act on: every axis but the batch."""
        return self.names[1:] if self.batched else self.names

    def index(self, name: str) -> int:
        return self.names.index(name)

    def axis(self, name: str) -> Axis:
        return self.axes[self.index(name)]

    def replace_axis(self, name: str, new: Axis) -> TensorType:
        return replace(self, axes=tuple(new if a.name == name else a for a in self.axes))

    def without(self, *names: str) -> TensorType:
        return replace(self, axes=tuple(a for a in self.axes if a.name not in names))

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.axes)) + "]"

    def numel(self, bindings: dict[str, int]) -> int:
        """Elements for given run-time sizes of the free axes (merged names like `H·W` too)."""
        return math.prod(axis_size(a, bindings) for a in self.axes)


def axis_size(axis: Axis, bindings: dict[str, int]) -> int:
    if axis.size is not None:
        return axis.size
    if axis.name in bindings:  # a key axis whose keys were pooled has its own binding
        return bindings[axis.name]
    # merged axes are named `H·W`; a key axis repeating the query's is primed: `N'`
    return math.prod(bindings.get(part, 1) for part in axis.name.rstrip("'").split("·"))


@dataclass(frozen=True)
class Node:
    """One operation. `inputs` are node names in argument order; `module` names the
    nn.Module (for layers with parameters) that the lowered code calls."""

    name: str
    op: str
    inputs: tuple[str, ...]
    type: TensorType
    role: str
    span: Span
    attrs: dict[str, Any] = field(default_factory=dict)
    module: str | None = None

    def line(self) -> str:
        """One greppable line per node, as torch.fx prints its graphs."""
        args = ", ".join(f"%{i}" for i in self.inputs)
        attrs = ", ".join(f"{k}={v}" for k, v in self.attrs.items())
        target = f"[{self.module}]" if self.module else ""
        joined = ", ".join(s for s in (args, attrs) if s)
        return f"%{self.name}: {self.type} = {self.op}{target}({joined})  # {self.role}"


@dataclass(frozen=True)
class ModuleDecl:
    """A layer with parameters: which op builds it and the sizes it was first applied to."""

    op: str
    attrs: dict[str, Any]
    span: Span


COMPOSITION = "composition"  # the range of an attention that only composes others


@dataclass
class Attention:
    """What a drawing writes on an attention: its name, Ω_q, M and what q/k index."""

    scope: str
    name: str
    range: str
    heads: int | None
    over: str
    identity: tuple[str, ...] = ()  # parts that are the identity: W' = I, W = I
    kv: int | None = None  # `heads M, kv = G`: the key and value heads, when shared

    def heads_text(self) -> str:
        """M as a drawing and `attnspec list` print it: `4`, `8, kv = 1`, `?`."""
        if self.heads is None:
            return "?"
        return str(self.heads) if self.kv is None else f"{self.heads}, kv = {self.kv}"


RETURNED = "<returned>"  # a user that is not a node: the module's return


class IR:
    """The graph, its inputs and output, and the layers in declaration order."""

    def __init__(self, name: str):
        self.name = name
        self.graph = nx.DiGraph()
        self.inputs: list[str] = []
        self.output: str | None = None
        self.extra_outputs: list[str] = []  # `output y, mu`: returned after the output
        self.modules: dict[str, ModuleDecl] = {}
        self.attentions: list[Attention] = []

    def add(self, node: Node) -> Node:
        if node.name in self.graph:
            raise ValueError(f"IR node {node.name} exists")  # a compiler bug, not a user's
        self.graph.add_node(node.name, node=node)
        for position, source in enumerate(node.inputs):
            self.graph.add_edge(source, node.name, position=position)
        return node

    def node(self, name: str) -> Node:
        return self.graph.nodes[name]["node"]

    def nodes(self) -> list[Node]:
        """Nodes in a stable topological order (ties broken by insertion order)."""
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        names = nx.lexicographical_topological_sort(self.graph, key=order.__getitem__)
        return [self.node(n) for n in names]

    def attention_of(self, name: str) -> Attention | None:
        """The attention a node belongs to: the one whose scope is the longest prefix of
        the node's name (blocks nest scopes: `cbam.channel_gate.`)."""
        matches = [a for a in self.attentions if name.startswith(a.scope)]
        return max(matches, key=lambda a: len(a.scope), default=None)

    def readers(self, name: str) -> list[str]:
        """The nodes reading `name`."""
        return list(self.graph.successors(name))

    def users(self, name: str) -> list[str]:
        """The nodes reading `name`, and RETURNED if the module returns it besides its
        output (`output y, w`: a pass may not fuse it away)."""
        return self.readers(name) + ([RETURNED] if name in self.extra_outputs else [])

    def replace(self, old: list[str], new: Node) -> None:
        """Replace a chain of nodes ending in old[-1] by `new` (a pass's rewrite)."""
        edges = self._reader_edges(old[-1])
        for name in old:
            self.graph.remove_node(name)
        self.add(new)
        self._rewire(old[-1], new.name, edges)

    def redirect(self, old: str, new: str) -> None:
        """Remove node `old`, its readers (and the module's returns) reading node `new`."""
        edges = self._reader_edges(old)
        self.graph.remove_node(old)
        self._rewire(old, new, edges)

    def _reader_edges(self, name: str) -> list[tuple[str, int]]:
        return [(u, self.graph.edges[name, u]["position"]) for u in self.readers(name)]

    def _rewire(self, old: str, new: str, edges: list[tuple[str, int]]) -> None:
        """Readers of the removed node `old` (their edges, and the nodes naming it in
        `sizes_of`) read `new` instead."""
        for user, position in edges:
            self.graph.add_edge(new, user, position=position)
            node = self.node(user)
            inputs = tuple(new if i == old else i for i in node.inputs)
            self.graph.nodes[user]["node"] = replace(node, inputs=inputs)
        # a node that reads `old`'s run-time sizes names it in `sizes_of`, not by an edge
        for name in list(self.graph.nodes):
            node = self.node(name)
            if node.attrs.get("sizes_of") == old:
                self.graph.nodes[name]["node"] = replace(
                    node, attrs={**node.attrs, "sizes_of": new})
        if self.output == old:
            self.output = new
        self.extra_outputs = [new if o == old else o for o in self.extra_outputs]

    def outputs(self) -> list[str]:
        """What the module returns: the output, then any others (`output y, mu`)."""
        return [self.output, *self.extra_outputs]

    def prune(self) -> IR:
        """Drop the nodes the output does not depend on (a `let` read only by the branch
        of an `if` that was not taken), and the layers only they applied."""
        live = {*self.outputs(), *self.inputs}
        live |= set().union(*(nx.ancestors(self.graph, o) for o in self.outputs()))
        self.graph.remove_nodes_from([n for n in list(self.graph.nodes) if n not in live])
        used = {self.node(n).module for n in self.graph.nodes}
        self.modules = {k: v for k, v in self.modules.items() if k in used}
        return self

    def text(self) -> str:
        lines = [f"ir {self.name}"]
        lines += [f"  module {k}: {v.op}({', '.join(f'{a}={b}' for a, b in v.attrs.items())})"
                  for k, v in self.modules.items()]
        lines += ["  " + n.line() for n in self.nodes()]
        lines.append("  return " + ", ".join(f"%{o}" for o in self.outputs()))
        return "\n".join(lines)
