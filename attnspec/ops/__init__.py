"""THE table of operators a spec may call: signature, shape rule, lowering, parameter
building and FLOPs, one entry each. Nothing else in attnspec knows an operator by name.

Shape rules work on named axes (ir.TensorType). Layouts follow torch's own conventions:
`linear`, `mlp` and `layernorm` act on the last axis; `conv`, `conv1x1` and `batchnorm`
on the channel axis right after the batch axis (axis 0 is always the batch).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..ir import Axis, TensorType

REQUIRED = object()


class OpError(Exception):
    """A shape or argument problem; the checker adds the span (of `arg` if named)."""

    def __init__(self, message: str, hint: str | None = None, arg: str | None = None,
                 code: str = "shape", axis: str | None = None):
        super().__init__(message)
        self.message, self.hint, self.arg, self.code = message, hint, arg, code
        self.axis = axis  # the axis whose size was needed, if that was the problem


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int | float | bool | word | axes
    default: Any = REQUIRED
    words: tuple[str, ...] = ()
    keyword: bool = False  # given by name only (`std = 0.01`), never by position


@dataclass(frozen=True)
class Op:
    name: str
    doc: str
    params: tuple[Param, ...] = ()
    inputs: int = 1  # leading tensor arguments; -1: one or more
    infer: Callable[..., TensorType] | None = None  # (types, cfg) -> type
    emit: Callable | None = None  # (em, node, args) -> fx node
    build: Callable | None = None  # (attrs) -> nn.Module, for layers with parameters
    # (in_types, out_type, attrs, bindings) -> FLOPs as torch.utils.flop_counter counts
    # them: 2 per multiply-add of a matmul or convolution, elementwise work not counted
    flops: Callable | None = None
    module_attrs: Callable | None = None  # (types, cfg) -> attrs the module is built from
    count: Callable | None = None  # (module attrs) -> number of learned parameters
    # (run-time sizes of each input's free axes, attrs) -> the output's, for an op that
    # changes sizes its type cannot show (pooling keeps the axes' names); default: the first
    # input's
    sizes: Callable | None = None
    kind: str = "tensor"  # tensor | layer | reduce | scalar | term | normaliser | range


OPS: dict[str, Op] = {}


def op(**kw) -> Callable:
    """Register an operator; the decorated function is its shape rule."""

    def register(fn):
        OPS[kw["name"]] = Op(infer=fn, **kw)
        return fn

    return register


def _torch():
    import torch

    return torch


def _nn():
    import torch.nn as nn

    return nn


def _F():
    import torch.nn.functional as F

    return F


def last(t: TensorType) -> Axis:
    if len(t.axes) < 2:
        raise OpError(f"needs an axis besides the batch axis; the tensor is {t}")
    return t.axes[-1]


def channel(t: TensorType) -> Axis:
    if len(t.axes) < 2:
        raise OpError(f"needs a channel axis after the batch axis; the tensor is {t}")
    return t.axes[1]


def width(size: Any, what: str, arg: str) -> int:
    """A layer width must be a positive integer: C / r = 0 would be an empty layer."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise OpError(f"{what} must be an integer, not {size!r}", arg=arg, code="wrong-type")
    if size < 1:
        raise OpError(f"{what} is {size}: a layer of zero width", arg=arg, code="zero-size",
                      hint="a reduction like C / r must leave at least 1; lower r or raise C")
    return size


def known(axis: Axis, what: str) -> int:
    if axis.size is None:
        raise OpError(f"{what} acts on axis {axis.name}, whose size is only known at run "
                      f"time; a layer needs a fixed size",
                      hint=f"bind {axis.name} to a parameter, or act on another axis",
                      code="unknown-size", axis=axis.name)
    return axis.size


ACTIVATIONS = ("relu", "gelu", "sigmoid", "tanh", "silu", "identity")


INITS = ("default", "zero")
# a weight layer's initialisations: the norms' two, and the weight drawn from N(0, std²),
# kaiming's N(0, 2 / fan) or U(−bound, bound), the bias (if any) zero, as authors write them
WEIGHT_INITS = (*INITS, "normal", "kaiming", "uniform")


def _call_module(em, n, args):
    """A layer's lowering: call its module on the input."""
    return em.module(n.module, args[0])


def _runtime():
    from .. import runtime

    return runtime


ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
              "**": operator.pow}


# the operators that take complex tensors (the rest of a spectrum's way is + - *)
COMPLEX_OPS = ("irfft",)


def two_tensors(types, name: str, what: str, hint: str) -> tuple[TensorType, TensorType]:
    """The two tensors an operator like upsample(t, x) takes: t, then the one whose sizes
    it reads."""
    if len(types) != 2:
        raise OpError(f"{name} takes two tensors, {what}, not {len(types)}",
                      code="wrong-arity", hint=hint)
    return types[0], types[1]


def broadcast(a: TensorType, b: TensorType) -> tuple[TensorType, Any, Any]:
    """Named broadcasting: the operand with fewer axes is lined up under the other's axes
    by name; an axis of size 1 the other lacks is dropped. Returns the result type and,
    per operand, how to reshape it (None: torch's own broadcasting already fits)."""
    big, small, swapped = (a, b, False) if _fits(b, a) or not _fits(a, b) else (b, a, True)
    if len(small.axes) > len(big.axes):
        big, small, swapped = small, big, not swapped
    joined = {}
    for ax in small.axes:
        if ax.name in big.names:
            joined[ax.name] = joined_axis(big.axis(ax.name), ax)
        elif ax.size != 1:
            raise OpError(f"cannot combine {a} and {b}: `{ax.name}` is not an axis of {big}",
                          code="axis-mismatch",
                          hint="reduce it first (mean/max/sum), or name the axes alike")
    out = TensorType(tuple(joined.get(x.name, x) for x in big.axes))
    plan = _align_plan(small, big)
    return (out, plan, None) if swapped else (out, None, plan)


def joined_axis(p: Axis, q: Axis) -> Axis:
    """An axis two operands both have, as their combination has it: its sizes must agree
    (a size 1 stretching), and it must index the same positions on both sides (a map
    pooled or strided by 2, index i at input position 2i, does not line up with the map
    it came from)."""
    size = _broadcast_size(p.size, q.size, p.name)
    if p.step != q.step and 1 not in (p.size, q.size):
        raise OpError(f"axis {p.name} holds every {_nth(p.step)} position on one side and "
                      f"every {_nth(q.step)} on the other", code="axis-mismatch",
                      hint="bring them to one grid first: upsample(t, x), or pool the other")
    if p.windows != q.windows and 1 not in (p.size, q.size):
        raise OpError(f"axis {p.name} is {_extent(p)} on one side and {_extent(q)} on the "
                      "other: their sizes differ at run time", code="axis-mismatch",
                      hint="a padding of (kernel − 1) / 2 keeps the size; crop(t, x, ...) "
                           "cuts a grid to x's")
    return replace(p, size=size)


def windows_fit(em, n, x, axes, kernel: int, padding: int, dilation: int = 1,
                at_least: int = 0):
    """x, checked at run time to hold one window along each of `axes` whose size the spec
    leaves free, and `at_least` positions (what a border padded by reflection needs):
    torch's own error ("Output size is too small") names no axis. A size the spec fixes
    is checked when the spec is (`windowed`)."""
    t = em.type(n.inputs[0])
    need = max(dilation * (kernel - 1) + 1 - 2 * padding, at_least)
    free = tuple((t.index(a), a) for a in axes if t.axis(a).size is None)
    if need <= 1 or not free:
        return x
    where = f"`{n.op}` ({Path(n.span.file).name}:{n.span.line}:{n.span.col})"
    return em.call(_runtime().windows_fit, x, free, need, where)


def window_count(n: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                 ceil: bool = False) -> int:
    """How many windows torch cuts from n positions (conv, unfold, pooling); with ceil_mode
    a last window may hang over the end, but none starts in the padding."""
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil else span // stride) + 1
    return out - 1 if ceil and (out - 1) * stride >= n + padding else out


def windowed(axis: Axis, kernel: int, stride: int, padding: int, dilation: int = 1,
             ceil: bool = False) -> Axis:
    """The grid of windows along `axis` (every stride-th, the border padded; with `ceil`,
    a last partial window, as torch's ceil_mode): index i at input position i·stride; a
    free size that the windows change is marked (Axis.windows)."""
    def grid(n: int) -> int:
        return window_count(n, kernel, stride, padding, dilation, ceil)

    size = None if axis.size is None else grid(axis.size)
    if size is not None and size < 1:
        raise OpError(f"windows of {kernel} (dilation {dilation}, padding {padding}) do not "
                      f"fit in axis {axis.name} of size {axis.size}", code="zero-size",
                      axis=axis.name)
    reach = dilation * (kernel - 1) + 2 * padding + 2 * stride
    keeps = all(grid(n) == -(-n // stride) for n in range(1, reach + 1))
    windows = axis.windows if axis.size is not None or keeps else \
        axis.windows + ((kernel, stride, padding, dilation, ceil),)
    return replace(axis, size=size, step=axis.step * stride, windows=windows)


def padded_axis(axis: Axis, multiple: int) -> Axis:
    """`axis` with zeros appended up to its next multiple: a fixed size grows; a free size
    that may grow is marked (Axis.windows), since it then differs from the axis's own."""
    if axis.size is not None:
        return replace(axis, size=-(-axis.size // multiple) * multiple)
    return axis if multiple == 1 else replace(axis, windows=axis.windows + (("pad", multiple),))


def _extent(a: Axis) -> str:
    if not a.windows:
        return "its positions" if a.step == 1 else f"every {_nth(a.step)} position"
    if a.windows[-1][0] == "pad":
        return f"padded to a multiple of {a.windows[-1][1]}"
    k, s, p, d, ceil = a.windows[-1]
    extra = (f", stride {s}" if s != 1 else "") + (f", dilation {d}" if d != 1 else "") + \
        (", the last one partial" if ceil else "")
    return f"a grid of windows of {k} with padding {p}{extra}"


def _nth(step: int) -> str:
    return "input" if step == 1 else {2: "2nd", 3: "3rd"}.get(step, f"{step}th")


def _broadcast_size(p: int | None, q: int | None, name: str = "") -> int | None:
    """The size of an axis both operands have: a size 1 stretches to the other's (a
    learned tensor's batch of 1 to the free batch B); None is known only at run time; two
    other fixed sizes must agree."""
    if None not in (p, q) and 1 not in (p, q) and p != q:
        raise OpError(f"axis {name} has size {p} on one side and {q} on the other",
                      code="axis-mismatch")
    if p == 1:
        return q
    if q == 1:
        return p
    return p if p is not None else q


def _fits(small: TensorType, big: TensorType) -> bool:
    """Every axis of `small` is an axis of `big` or has size 1."""
    return all(x.name in big.names or x.size == 1 for x in small.axes)


def _align_plan(t: TensorType, target: TensorType):
    if len(t.axes) == len(target.axes) and all(
            x.name == y.name or x.size == 1 for x, y in zip(t.axes, target.axes)):
        return None
    squeeze = tuple(i for i, x in enumerate(t.axes) if x.name not in target.names)
    kept = [x.name for x in t.axes if x.name in target.names]
    ordered = [n for n in target.names if n in kept]
    permute = tuple(kept.index(n) for n in ordered)
    index = tuple(slice(None) if n in kept else None for n in target.names)
    return {"squeeze": squeeze, "permute": None if permute == tuple(range(len(kept)))
            else permute, "index": index}


def apply_plan(em, x, plan):
    if plan is None:
        return x
    for d in reversed(plan["squeeze"]):
        x = em.method(x, "squeeze", d)
    if plan["permute"] is not None:
        x = em.method(x, "permute", *plan["permute"])
    return em.call(operator.getitem, x, plan["index"])


def _emit_arith(em, n, args):
    left, right = (apply_plan(em, x, n.attrs.get(p)) if isinstance(x, object) else x
                   for x, p in zip(args, ("left", "right")))
    return em.call(ARITHMETIC[n.attrs["op"]], left, right)


OPS["arith"] = Op(name="arith", doc="+ - * / with named broadcasting", emit=_emit_arith)


SCALAR_FUNCTIONS: dict[str, tuple[int, Callable]] = {
    "sqrt": (1, math.sqrt), "log2": (1, math.log2), "abs": (1, abs), "int": (1, int),
    "float": (1, float), "round": (1, round), "min": (2, min), "max": (2, max),
}


# The operators, one family a module; importing them fills OPS.
from . import layers, structure, tensors  # noqa: E402, F401

