"""The values a spec's expressions evaluate to while checking (check.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .ir import TensorType
from .source import Span


class _Unknown:
    """A parameter with no value yet (`attnspec check` without --param): unknown sizes."""

    def __repr__(self) -> str:
        return "?"


class _Poison:
    """The value of an expression that already has an error: silences follow-on errors."""

    def __repr__(self) -> str:
        return "<error>"


UNKNOWN = _Unknown()
POISON = _Poison()


@dataclass(frozen=True)
class Word:
    """A bare identifier that names nothing in scope: `relu`, `zero`, `all`, a choice."""

    name: str
    span: Span


@dataclass(frozen=True)
class AxesValue:
    names: tuple[str, ...]
    span: Span


@dataclass(frozen=True)
class Tensor:
    node: str
    type: TensorType


@dataclass(frozen=True)
class Logits:
    """An unnormalised weight: E1–E4 terms and their scaled sums, laid out [B, M, Q?, K].
    `keys`: the tensor whose axes are the keys (their run-time sizes, their steps)."""

    node: str
    type: TensorType
    has_query: bool
    keys: str | None = None
    has_key: bool = True  # False: E3(query = ...), the same for every key


@dataclass(frozen=True)
class Weights:
    """A normalised weight A(q, k): what `weight` gives when the range is not `self`."""

    node: str
    type: TensorType
    has_query: bool


class WindowRange(str):
    """`range window(R)`: the keys within R positions of the query on every indexed axis
    (a (2R+1)-wide square around it on an image); `window(R, dilation = d)`: the keys
    i·d away, |i| ≤ R (Longformer's dilated window), in the last k of the M heads alone
    with `dilated_heads = k` (the others undilated); `causal = true`: of those, the keys
    not after the query; `global = g`: the tokens a bool input g marks see every key and
    are seen by every query (Longformer's global tokens); `centre = p`: the keys within R
    of a point p each query gives, not of the query (Luong's local-p). Compares unequal
    to every range word."""

    radius: int
    dilation: int
    causal: bool
    marked: Any  # the `global` input's Tensor, or None
    centre: Any  # `centre = p`: a Tensor of each query's centre, or None
    dilated_heads: int | None  # None: every head

    def __new__(cls, radius: int, dilation: int = 1, causal: bool = False,
                marked: Any = None, marked_name: str = "", centre: Any = None,
                centre_name: str = "", dilated_heads: int | None = None):
        options = (f", dilation = {dilation}" if dilation != 1 else "") + \
            (f", dilated_heads = {dilated_heads}"  # which heads a dilation applies to
             if dilated_heads is not None and dilation != 1 else "") + \
            (", causal = true" if causal else "") + \
            (f", global = {marked_name}" if marked is not None else "") + \
            (f", centre = {centre_name}" if centre is not None else "")
        obj = super().__new__(cls, f"window({radius}{options})")
        obj.radius, obj.dilation, obj.causal, obj.marked = radius, dilation, causal, marked
        obj.centre, obj.dilated_heads = centre, dilated_heads
        return obj

    def head_dilations(self, heads: int) -> int | tuple[int, ...]:
        """The dilation, or one per head when only the last `dilated_heads` are dilated."""
        k = self.dilated_heads
        if k is None or k == heads or self.dilation == 1:
            return self.dilation
        return (1,) * (heads - k) + (self.dilation,) * k


class PartitionRange(str):
    """`range partition(s)`: the map cut into s parts along every indexed axis (the last
    part takes the remainder, as OCNet's pyramid); a query sees the keys of its part."""

    parts: int

    def __new__(cls, parts: int):
        obj = super().__new__(cls, f"partition({parts})")
        obj.parts = parts
        return obj


class BlocksRange(str):
    """`range blocks(b, shift = s)`: every indexed axis cut into blocks b wide, the first
    cut s positions in (position i in block ⌊(i − s) / b⌋: Swin's windows, shifted by s
    for its SW-MSA blocks, cut at the map's edges); a query sees the keys of its block.
    `blocks(b, halo = h)`: a query sees the keys of its block and of the h positions
    around it on every axis that lie on the map (HaloNet's blocked local attention: the
    queries in blocks, each block's keys a (b + 2h)-wide window); with `edge = zeros` the
    window's positions beyond the map are keys too, zero vectors (a zero-padded map)."""

    size: int
    shift: int
    halo: int | None  # None: Swin's blocks; a number (0 too): haloed blocks
    zeros: bool

    def __new__(cls, size: int, shift: int = 0, halo: int | None = None, zeros: bool = False):
        extra = f", shift = {shift}" if shift else "" if halo is None else f", halo = {halo}"
        extra += ", edge = zeros" if zeros else ""
        obj = super().__new__(cls, f"blocks({size}{extra})")
        obj.size, obj.shift, obj.halo, obj.zeros = size, shift, halo, zeros
        return obj


@dataclass(frozen=True)
class Encoding:
    """`sinusoid(dim, ...)`, `offsets(R)`, `axis_offsets(R)`, `displacement(R)`,
    `bilinear(R)`, `pairs(T)`, `absolute(T)` or `distance()`:
    R_{q−k}, an encoding of the offset between a query and a key (absolute(T): of the key's
    own index), and the layers applied to it after `>>` (E2's and E4's `position = ...`)."""

    dim: int
    wave: float
    magnitude: float
    span: Span
    layers: tuple = ()
    radius: int | None = None  # `offsets(R)` / `bilinear(R)`: the kernel's radius;
    #                            `pairs(T)` / `absolute(T)`: (T,), the positions covered
    kind: str = "sinusoid"  # sinusoid | offsets | axis_offsets | displacement | bilinear |
    #                         pairs | absolute | distance
    within: int | None = None  # pairs(T, within = w): pairs farther apart than w give 0
    of_query: bool = False  # offsets(R, of = query): rows by q − k (Swin's table), not k − q
    dilation: int = 1  # bilinear(R, dilation = d): the kernel's positions d apart
    groups: int = 1  # bilinear(R, groups = G): G displacements per kernel position


@dataclass(frozen=True)
class Memory:
    """`memory(S)`: S learned slots standing in for keys or values (External attention)."""

    slots: int
    dim: Any
    span: Span
    name: str = "S"  # the key axis's name in weights: the slot count's name in the spec


@dataclass
class Layer:
    """A layer not yet applied: an operator with its configuration, or a composition.
    A `let`-bound layer is shared: its modules are made on first use and reused."""

    op: str | None
    config: dict
    span: Span
    parts: tuple[Layer, ...] = ()
    shared_as: str | None = None
    arg_exprs: dict = field(default_factory=dict)  # setting → its expression, for messages
    modules: dict[int, str] = field(default_factory=dict)
    first_types: dict[int, TensorType] = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    """A block-level value: attentions composed; `apply` builds them on an input."""

    apply: Callable
    span: Span


@dataclass(frozen=True)
class DefinitionRef:
    name: str
    span: Span
