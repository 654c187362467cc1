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
from dataclasses import dataclass, field
from typing import Any

from .ir import Axis, TensorType

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
    extra: dict = field(default_factory=dict)


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


# ---------------------------------------------------------------------------- layers


def _linear_attrs(types, cfg):
    a = last(types[0])
    return {"in": known(a, "linear"), "out": width(cfg["out"], "linear's width", "out"),
            "bias": cfg["bias"], "init": cfg["init"]}


@op(name="linear", kind="layer", doc="a fully connected layer on the last axis",
    params=(Param("out", "int"), Param("bias", "bool", True),
            Param("init", "word", "default", INITS)),
    module_attrs=_linear_attrs, count=lambda a: a["in"] * a["out"] + a["bias"] * a["out"],
    build=lambda a: _init(_nn().Linear(a["in"], a["out"], bias=a["bias"]), a),
    emit=lambda em, n, args: em.module(n.module, args[0]),
    flops=lambda ins, out, a, b: 2 * ins[0].numel(b) * a["out"])
def _linear(types, cfg):
    t = types[0]
    return t.replace_axis(last(t).name, Axis(last(t).name, cfg["out"]))


def _init(module, attrs):
    if attrs.get("init") == "zero":
        for p in module.parameters():
            _nn().init.zeros_(p)
    return module


def _conv_attrs(types, cfg):
    t = types[0]
    over = _conv_over(t, cfg)
    has_channels = len(t.axes) - 1 > len(over)
    cin = known(channel(t), "conv") if has_channels else 1
    k = cfg["kernel"]
    if not isinstance(k, int) or k < 1:
        raise OpError(f"kernel size must be a positive integer, not {k!r}", arg="kernel")
    groups = cfg["groups"]
    out = width(cfg["out"], "conv's out", "out")
    if cin % groups or out % groups:
        raise OpError(f"groups={groups} must divide both {cin} input and {out} output "
                      f"channels", arg="groups")
    return {"dims": len(over), "in": cin, "out": out, "kernel": k, "dilation": cfg["dilation"],
            "groups": groups, "bias": cfg["bias"], "init": cfg["init"],
            "channels": has_channels}


def _conv_over(t: TensorType, cfg) -> tuple[str, ...]:
    over = cfg.get("over")
    if over is None:
        return t.names[2:]
    for name in over:
        if name not in t.names:
            raise OpError(f"conv over `{name}`: the tensor {t} has no such axis", arg="over")
    if over != t.names[len(t.axes) - len(over):]:
        raise OpError(f"conv must run over the trailing axes of {t}", arg="over")
    return over


def _build_conv(a):
    nn = _nn()
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}.get(max(a["dims"], 1))
    k, d = a["kernel"], a["dilation"]
    module = cls(a["in"], a["out"], k, padding=d * (k - 1) // 2, dilation=d,
                 groups=a["groups"], bias=a["bias"])
    return _init(module, a)


def _emit_conv(em, n, args):
    x = args[0]
    if not n.attrs["channels"]:  # a map with no channel axis is one channel
        x = em.method(x, "unsqueeze", 1)
    y = em.module(n.module, x)
    return y if n.attrs["channels"] else em.method(y, "squeeze", 1)


def _conv_count(a) -> int:
    weights = a["out"] * a["in"] // a["groups"] * a["kernel"] ** max(a["dims"], 1)
    return weights + a["bias"] * a["out"]


def _conv_flops(ins, out, a, b):
    per_out = 2 * a["in"] // a["groups"] * a["kernel"] ** max(a["dims"], 1)
    return per_out * out.numel(b)


@op(name="conv", kind="layer",
    doc="a convolution with 'same' padding over the trailing axes; `over` names them, "
        "the axis after the batch is the channels unless `over` covers it",
    params=(Param("out", "int", 1), Param("kernel", "int", 3), Param("over", "axes", None),
            Param("dilation", "int", 1), Param("groups", "int", 1),
            Param("bias", "bool", True), Param("init", "word", "default", INITS)),
    module_attrs=_conv_attrs, build=_build_conv, emit=_emit_conv, flops=_conv_flops,
    count=lambda a: _conv_count(a))
def _conv(types, cfg):
    t = types[0]
    over = _conv_over(t, cfg)
    if len(over) > 3:
        raise OpError(f"conv runs over 1 to 3 axes, not {len(over)}", arg="over")
    if len(t.axes) - 1 > len(over):
        return t.replace_axis(t.axes[1].name, Axis(t.axes[1].name, cfg["out"]))
    if cfg["out"] != 1:
        raise OpError("a conv over a map with no channel axis yields one channel",
                      arg="out", hint="drop `out`, or keep a channel axis")
    return t


def _conv1x1_attrs(types, cfg):
    t = types[0]
    c = channel(t)
    return {"dims": len(t.axes) - 2, "in": known(c, "conv1x1"),
            "out": width(cfg["out"], "conv1x1's width", "out"), "kernel": 1, "dilation": 1,
            "groups": 1, "bias": cfg["bias"], "init": cfg["init"], "channels": True}


def _build_conv1x1(a):
    if a["dims"] == 0:  # [B, C]: a 1x1 convolution of a vector is a linear layer
        return _init(_nn().Linear(a["in"], a["out"], bias=a["bias"]), a)
    return _build_conv(a)


@op(name="conv1x1", kind="layer", doc="a 1×1 convolution on the channel axis (axis 1)",
    params=(Param("out", "int"), Param("bias", "bool", True),
            Param("init", "word", "default", INITS)),
    module_attrs=_conv1x1_attrs, build=_build_conv1x1, count=lambda a: _conv_count(a),
    emit=lambda em, n, args: em.module(n.module, args[0]), flops=_conv_flops)
def _conv1x1(types, cfg):
    t = types[0]
    return t.replace_axis(channel(t).name, Axis(channel(t).name, cfg["out"]))


def _mlp_attrs(types, cfg):
    a = last(types[0])
    cin = known(a, "mlp")
    out = cfg["out"] if cfg["out"] is not None else cin
    return {"in": cin, "hidden": width(cfg["hidden"], "mlp's hidden width", "hidden"),
            "out": width(out, "mlp's out", "out"), "act": cfg["act"], "bias": cfg["bias"]}


def _build_mlp(a):
    from collections import OrderedDict

    nn = _nn()
    return nn.Sequential(OrderedDict(
        fc1=nn.Linear(a["in"], a["hidden"], bias=a["bias"]), act=activation(a["act"]),
        fc2=nn.Linear(a["hidden"], a["out"], bias=a["bias"])))


def activation(name: str):
    nn = _nn()
    return {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "silu": nn.SiLU, "identity": nn.Identity}[name]()


@op(name="mlp", kind="layer",
    doc="linear → activation → linear on the last axis (SE's excitation)",
    params=(Param("hidden", "int"), Param("out", "int", None), Param("bias", "bool", True),
            Param("act", "word", "relu", ACTIVATIONS)),
    module_attrs=_mlp_attrs, build=_build_mlp,
    count=lambda a: a["hidden"] * (a["in"] + a["out"]) + a["bias"] * (a["hidden"] + a["out"]),
    emit=lambda em, n, args: em.module(n.module, args[0]),
    flops=lambda ins, out, a, b: 2 * ins[0].numel(b) // a["in"] * a["hidden"]
    * (a["in"] + a["out"]))
def _mlp(types, cfg):
    t = types[0]
    a = last(t)
    return t.replace_axis(a.name, Axis(a.name, cfg["out"] if cfg["out"] is not None else a.size))


def _norm_attrs(kind):
    def attrs(types, cfg):
        t = types[0]
        a = last(t) if kind == "layer" else channel(t)
        return {"features": known(a, f"{kind}norm"), "dims": len(t.axes) - 2,
                **{k: cfg[k] for k in ("init", "eps", "momentum") if k in cfg}}

    return attrs


def _build_batchnorm(a):
    nn = _nn()
    m = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[a["dims"]]
    m = m(a["features"], eps=a["eps"], momentum=a["momentum"])
    if a["init"] == "zero":  # the block starts as the identity (Non-local §4.1)
        _nn().init.zeros_(m.weight)
    return m


@op(name="batchnorm", kind="layer", doc="batch normalisation over the channel axis (axis 1)",
    params=(Param("init", "word", "default", INITS), Param("eps", "float", 1e-5),
            Param("momentum", "float", 0.1)),
    module_attrs=_norm_attrs("batch"), build=_build_batchnorm, count=lambda a: 2 * a["features"],
    emit=lambda em, n, args: em.module(n.module, args[0]),
    )
def _batchnorm(types, cfg):
    channel(types[0])
    return types[0]


def _build_layernorm(a):
    m = _nn().LayerNorm(a["features"], eps=a["eps"])
    if a["init"] == "zero":
        _nn().init.zeros_(m.weight)
    return m


@op(name="layernorm", kind="layer", doc="layer normalisation over the last axis",
    params=(Param("init", "word", "default", INITS), Param("eps", "float", 1e-5)),
    module_attrs=_norm_attrs("layer"), build=_build_layernorm, count=lambda a: 2 * a["features"],
    emit=lambda em, n, args: em.module(n.module, args[0]),
    )
def _layernorm(types, cfg):
    last(types[0])
    return types[0]


def _build_gamma(a):
    from .layers import Scale

    return Scale(a["init"])


@op(name="gamma", kind="layer",
    doc="a learned scalar γ times its input (DANet's and CCNet's γ·y, zero at first)",
    params=(Param("init", "float", 0.0),),
    module_attrs=lambda types, cfg: {"init": float(cfg["init"])}, build=_build_gamma,
    emit=lambda em, n, args: em.call(operator.mul, em.attr(f"{n.module}.gamma"), args[0]),
    count=lambda a: 1)
def _gamma(types, cfg):
    return types[0]


# ---------------------------------------------------------------------------- functions


def _window_pool(name, fn, doc):
    def infer(types, cfg):
        t = types[0]
        if len(t.axes) not in (3, 4, 5):
            raise OpError(f"{name} runs over the 1 to 3 axes after the channels; the tensor "
                          f"is {t}")
        if not isinstance(cfg["kernel"], int) or cfg["kernel"] < 1:
            raise OpError(f"kernel must be a positive integer, not {cfg['kernel']!r}",
                          arg="kernel")
        fixed = [a for a in t.axes[2:] if a.size is not None]
        if fixed:  # pooling would change a size the spec fixed
            raise OpError(f"{name} would pool axis {fixed[0].name}, whose size is fixed at "
                          f"{fixed[0].size}; it pools the axes after the channels of {t}",
                          code="axis-mismatch")
        return t  # the spatial axes keep their names; their run-time sizes shrink

    def emit(em, n, args):
        dims = len(em.type(n.inputs[0]).axes) - 2
        k, stride = n.attrs["kernel"], n.attrs.get("stride") or n.attrs["kernel"]
        return em.call(getattr(_F(), f"{fn}{dims}d"), args[0], k, stride)

    def sizes(ins, t, attrs):
        k, stride = attrs["kernel"], attrs.get("stride") or attrs["kernel"]
        return {**ins[0], **{a: (ins[0][a] - k) // stride + 1 for a in t.names[2:]}}

    OPS[name] = Op(name=name, doc=doc, infer=infer, emit=emit, kind="tensor", sizes=sizes,
                   params=(Param("kernel", "int"), Param("stride", "int", None)))


_window_pool("maxpool", "max_pool", "max pooling over windows of the axes after the "
             "channels (stride = kernel unless given)")
_window_pool("avgpool", "avg_pool", "average pooling over windows of the axes after the "
             "channels (stride = kernel unless given)")


INTERPOLATION = {"nearest": ("nearest",) * 3, "linear": ("linear", "bilinear", "trilinear")}


def _emit_upsample(em, n, args):
    t = em.type(n.inputs[1])
    dims, spatial = len(t.axes) - 2, t.names[2:]
    mode = INTERPOLATION[n.attrs["mode"]][dims - 1]
    corners = {} if mode == "nearest" else {"align_corners": False}
    return em.call(_F().interpolate, args[0], size=em.sizes(n.inputs[1], spatial), mode=mode,
                   **corners)


@op(name="upsample", inputs=2, params=(Param("mode", "word", "nearest",
                                             tuple(INTERPOLATION)),),
    doc="the first tensor resized (F.interpolate) to the run-time sizes of the second's "
        "axes after the channels: a pooled branch brought back to its input's size",
    emit=_emit_upsample,
    sizes=lambda ins, t, attrs: {**ins[0], **{a: ins[1][a] for a in t.names[2:]}})
def _upsample(types, cfg):
    if len(types) != 2:
        raise OpError(f"upsample takes two tensors, the one to resize and the one whose sizes "
                      f"it takes, not {len(types)}", code="wrong-arity",
                      hint="upsample(t, x) resizes t to the sizes of x")
    t, like = types
    if len(t.axes) not in (3, 4, 5):
        raise OpError(f"upsample resizes the 1 to 3 axes after the channels; the tensor is {t}")
    if t.names[0] != like.names[0] or t.names[2:] != like.names[2:]:
        raise OpError(f"upsample resizes {t} to the sizes of {like}: they need the same batch "
                      f"axis and the same axes after the channels", code="axis-mismatch")
    return TensorType((t.axes[0], t.axes[1], *like.axes[2:]))


def _pointwise(name, fn_name, doc):
    def emit(em, n, args):
        return em.call(getattr(_torch(), fn_name) if fn_name != "gelu" else _F().gelu, args[0])

    OPS[name] = Op(name=name, doc=doc, infer=lambda types, cfg: types[0], emit=emit)


_pointwise("sigmoid", "sigmoid", "the logistic function; as a normaliser, per weight")
_pointwise("relu", "relu", "max(0, x)")
_pointwise("tanh", "tanh", "hyperbolic tangent")
_pointwise("gelu", "gelu", "Gaussian error linear unit")
_pointwise("silu", "silu", "x · sigmoid(x)")


@op(name="leaky_relu", params=(Param("slope", "float", 0.01),),
    doc="max(0, x) + slope · min(0, x)",
    emit=lambda em, n, args: em.call(_F().leaky_relu, args[0], n.attrs["slope"]))
def _leaky_relu(types, cfg):
    return types[0]


@op(name="dropout", kind="layer", params=(Param("p", "float", 0.5),
                                          Param("channels", "bool", False)),
    doc="dropout while training (with `channels`, whole channels: nn.Dropout2d)",
    module_attrs=lambda types, cfg: {"p": float(cfg["p"]), "channels": cfg["channels"],
                                     "dims": len(types[0].axes) - 2},
    build=lambda a: _dropout(a), emit=lambda em, n, args: em.module(n.module, args[0]),
    count=lambda a: 0)
def _dropout_type(types, cfg):
    if not 0 <= cfg["p"] < 1:
        raise OpError(f"dropout's p must be in [0, 1), not {cfg['p']}", arg="p")
    return types[0]


def _dropout(a):
    nn = _nn()
    if not a["channels"]:
        return nn.Dropout(a["p"])
    return {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}[max(1, a["dims"])](a["p"])

OPS["identity"] = Op(name="identity", doc="the input unchanged (W = I, W' = I)",
                     infer=lambda types, cfg: types[0], emit=lambda em, n, args: args[0])


def _reduce(name, doc):
    def infer(types, cfg):
        t = types[0]
        for a in cfg["axes"]:
            if a not in t.names:
                raise OpError(f"{name} over `{a}`: the tensor {t} has no such axis", arg="axes",
                              code="axis-mismatch")
            if a == t.names[0]:
                raise OpError(f"{name} over the batch axis `{a}` would mix samples", arg="axes",
                              code="axis-mismatch")
        return t.without(*cfg["axes"])

    def emit(em, n, args):
        t = em.type(n.inputs[0])
        dims = tuple(t.index(a) for a in n.attrs["axes"])
        torch = _torch()
        if name == "max":
            return em.call(torch.amax, args[0], dim=dims)
        return em.call(getattr(torch, name), args[0], dim=dims)

    OPS[name] = Op(name=name, doc=doc, params=(Param("axes", "axes"),), kind="reduce",
                   infer=infer, emit=emit)


_reduce("mean", "the mean over the named axes, which disappear (global average pooling)")
_reduce("max", "the maximum over the named axes, which disappear (global max pooling)")
_reduce("sum", "the sum over the named axes, which disappear")


def _emit_stack(em, n, args):
    plans = n.attrs.get("plans")
    if plans is not None:  # line the tensors up under one type, then expand them to it
        args = em.call(_torch().broadcast_tensors,
                       *(apply_plan(em, x, plan) for x, plan in zip(args, plans)))
    return em.call(_torch().stack, list(args) if plans is None else args, dim=n.attrs["dim"])


@op(name="stack", inputs=-1, params=(Param("as", "word"), Param("after", "word", None)),
    doc="tensors stacked along a new axis placed after the batch axis (or after `after`); "
        "tensors of different axes are broadcast to one type first (§8)",
    emit=_emit_stack)
def _stack(types, cfg):
    first = types[0]
    if all(t.names == first.names for t in types[1:]):
        common, cfg["plans"] = first, None  # one type: stacked as they are
    else:
        common = first
        for t in types[1:]:
            try:
                common = broadcast(common, t)[0]
            except OpError as err:
                raise OpError(f"stack needs tensors of one type or types that broadcast "
                              f"(§8): {err.message}", err.hint, code="axis-mismatch") from None
        cfg["plans"] = tuple(_align_plan(t, common) for t in types)
    if cfg["as"] in common.names:
        raise OpError(f"the new axis `{cfg['as']}` is already an axis of {common}", arg="as",
                      code="axis-mismatch")
    after = cfg.get("after") or common.names[0]
    if after not in common.names:
        raise OpError(f"stack after `{after}`: {common} has no such axis", arg="after",
                      code="axis-mismatch")
    cfg["dim"] = common.index(after) + 1
    return TensorType(common.axes[:cfg["dim"]] + (Axis(cfg["as"], len(types)),)
                      + common.axes[cfg["dim"]:])


@op(name="split", params=(Param("axis", "word"), Param("into", "sized_axes")),
    doc="one axis split into several in its place: split(x, C, G c) makes [B, G, c, H, W]; "
        "a new axis named like an int parameter has its size, one other takes the rest",
    emit=lambda em, n, args: em.method(args[0], "unflatten", em.type(n.inputs[0]).index(
        n.attrs["axis"]), tuple(size for _, size in n.attrs["sizes"])))
def _split(types, cfg):
    t, axis = types[0], cfg["axis"]
    if axis not in t.names[1:]:
        raise OpError(f"split `{axis}`: {t} has no such axis", arg="axis", code="axis-mismatch")
    total, into = t.axis(axis).size, list(cfg["into"])
    unknown = [i for i, (_, size) in enumerate(into) if size is None]
    known_part = math.prod(size for _, size in into if size is not None)
    if total is None:
        raise OpError(f"split needs {axis} to have a fixed size, not one known at run time",
                      arg="axis", code="unknown-size", axis=axis)
    if len(unknown) > 1:
        raise OpError(f"split {axis} into {' '.join(n for n, _ in into)}: all but one new axis "
                      f"need a size (name them like int parameters)", arg="into")
    if unknown:
        into[unknown[0]] = (into[unknown[0]][0], total // known_part)
    if math.prod(size for _, size in into) != total:
        raise OpError(f"{axis} = {total} does not split into "
                      f"{' × '.join(f'{n}={s}' for n, s in into)}", arg="into", code="shape")
    cfg["sizes"] = tuple(into)
    i = t.index(axis)
    return TensorType(t.axes[:i] + tuple(Axis(n, s) for n, s in into) + t.axes[i + 1:])


@op(name="merge", params=(Param("axes", "axes"), Param("as", "word")),
    doc="adjacent axes merged into one: merge(y, G c, as = C) undoes split(x, C, G c)",
    emit=lambda em, n, args: em.method(args[0], "flatten", *_merge_range(
        em.type(n.inputs[0]), n.attrs["axes"])))
def _merge(types, cfg):
    t, axes = types[0], tuple(cfg["axes"])
    first, last = _merge_range(t, axes)
    sizes = [t.axis(a).size for a in axes]
    merged = Axis(cfg["as"], None if None in sizes else math.prod(sizes))
    return TensorType(t.axes[:first] + (merged,) + t.axes[last + 1:])


def _merge_range(t: TensorType, axes) -> tuple[int, int]:
    missing = [a for a in axes if a not in t.names]
    if missing or len(axes) < 2:
        raise OpError(f"merge needs two or more axes of {t}", arg="axes", code="axis-mismatch")
    first = t.index(axes[0])
    if t.names[first:first + len(axes)] != tuple(axes) or first == 0:
        raise OpError(f"merge needs adjacent axes in order, after the batch: {t}", arg="axes",
                      code="axis-mismatch")
    return first, first + len(axes) - 1


@op(name="standardise", params=(Param("axes", "axes"), Param("eps", "float", 1e-5)),
    doc="(x − mean) / (std + eps) over the named axes (unbiased std), per everything else",
    emit=lambda em, n, args: em.call(_runtime().standardise, args[0], _dims(
        em.type(n.inputs[0]), n.attrs["axes"]), n.attrs["eps"]))
def _standardise(types, cfg):
    _dims(types[0], cfg["axes"])
    return types[0]


def _dims(t: TensorType, axes) -> tuple[int, ...]:
    for a in axes:
        if a not in t.names[1:]:
            raise OpError(f"`{a}` is not an axis of {t} (after the batch)", arg="axes",
                          code="axis-mismatch")
    return tuple(t.index(a) for a in axes)


def _runtime():
    from . import runtime

    return runtime


def _build_affine(a):
    from .layers import Affine

    return Affine(a["size"], a["weight"], a["bias"])


def _emit_affine(em, n, args):
    t = em.type(n.inputs[0])
    shape = tuple(-1 if name == n.attrs["over"] else 1 for name in t.names[1:])
    weight = em.method(em.attr(f"{n.module}.weight"), "view", *shape)
    bias = em.method(em.attr(f"{n.module}.bias"), "view", *shape)
    return em.call(operator.add, em.call(operator.mul, args[0], weight), bias)


@op(name="affine", kind="layer",
    params=(Param("over", "word"), Param("weight", "float", 1.0), Param("bias", "float", 0.0)),
    doc="x · w + b with a learned w and b per index of the named axis (initial values given)",
    module_attrs=lambda types, cfg: {"size": known(types[0].axis(_axis_of(types[0], cfg)),
                                                   "affine"), "over": cfg["over"],
                                     "weight": float(cfg["weight"]), "bias": float(cfg["bias"])},
    build=_build_affine, emit=_emit_affine, count=lambda a: 2 * a["size"])
def _affine(types, cfg):
    _axis_of(types[0], cfg)
    return types[0]


def _axis_of(t: TensorType, cfg) -> str:
    if cfg["over"] not in t.names[1:]:
        raise OpError(f"affine over `{cfg['over']}`: {t} has no such axis", arg="over",
                      code="axis-mismatch")
    return cfg["over"]


@op(name="concat", inputs=-1, params=(Param("over", "word"),),
    doc="tensors joined along the named axis, whose sizes add up (the other axes agree)",
    emit=lambda em, n, args: em.call(_torch().cat, list(args),
                                     dim=em.type(n.inputs[0]).index(n.attrs["over"])))
def _concat(types, cfg):
    first, axis = types[0], cfg["over"]
    for t in types:
        if axis not in t.names:
            raise OpError(f"concat over `{axis}`: {t} has no such axis", arg="over",
                          code="axis-mismatch")
        if t.without(axis).names != first.without(axis).names:
            raise OpError(f"concat needs the same axes besides `{axis}`, not {first} and {t}",
                          code="axis-mismatch")
    sizes = [t.axis(axis).size for t in types]
    total = None if None in sizes else sum(sizes)
    return first.replace_axis(axis, Axis(axis, total))


def _named_axis(t: TensorType, axis: str, what: str, arg: str = "axis") -> int:
    """The index of a named axis other than the batch axis."""
    if axis == t.names[0]:
        raise OpError(f"{what} `{axis}`: the batch axis of {t} would mix samples", arg=arg,
                      code="axis-mismatch")
    if axis not in t.names:
        raise OpError(f"{what} `{axis}`: {t} has no such axis", arg=arg, code="axis-mismatch")
    return t.index(axis)


def _emit_take(em, n, args):
    dim = em.type(n.inputs[0]).index(n.attrs["axis"])
    takes = [u for u in em.ir.users(n.inputs[0])
             if em.ir.node(u).op == "take" and em.ir.node(u).attrs["axis"] == n.attrs["axis"]]
    if len(takes) < 2:
        return em.method(args[0], "select", dim, n.attrs["index"])
    # several indices of one axis: one shared unbind, so the backward builds the input's
    # gradient once (a stack) instead of a zero-filled full-size tensor per select plus
    # their sum (shuffle's two halves: fwd+bwd 1.12x → 1.00x of the hand-written module)
    parts = next((u for u in args[0].users if u.op == "call_method"
                  and u.target == "unbind" and u.args == (args[0], dim)), None)
    if parts is None:
        parts = em.method(args[0], "unbind", dim)
    return em.call(operator.getitem, parts, n.attrs["index"])


@op(name="take", params=(Param("axis", "word"), Param("index", "int")),
    doc="index `index` of the named axis, which disappears: take(g, halves, 0) is the "
        "first half",
    emit=_emit_take)
def _take(types, cfg):
    t = types[0]
    _named_axis(t, cfg["axis"], "take from")
    size, i = t.axis(cfg["axis"]).size, cfg["index"]
    if size is not None and not -size <= i < size:
        raise OpError(f"take {i} of axis {cfg['axis']}, which has {size} indices", arg="index",
                      hint=f"indices run from 0 to {size - 1} (or -{size} to -1 from the end)")
    return t.without(cfg["axis"])


def _shuffle_emit(em, n, args):
    i = em.type(n.inputs[0]).index(n.attrs["axis"])
    x = em.method(args[0], "unflatten", i, (n.attrs["groups"], -1))
    return em.method(em.method(x, "transpose", i, i + 1), "flatten", i, i + 1)


@op(name="shuffle", params=(Param("axis", "word"), Param("groups", "int")),
    doc="ShuffleNet's channel shuffle of the named axis: its indices read as `groups` rows, "
        "written out by columns",
    emit=_shuffle_emit)
def _shuffle(types, cfg):
    t, groups = types[0], cfg["groups"]
    _named_axis(t, cfg["axis"], "shuffle")
    size = t.axis(cfg["axis"]).size
    if not isinstance(groups, int) or groups < 1:
        raise OpError(f"groups must be a positive integer, not {groups!r}", arg="groups")
    if size is not None and size % groups:
        raise OpError(f"{cfg['axis']} = {size} does not split into {groups} groups",
                      arg="groups")
    return t


def _groupnorm_attrs(types, cfg):
    t = types[0]
    _named_axis(t, cfg["over"], "groupnorm over", "over")
    features = known(t.axis(cfg["over"]), "groupnorm")
    groups = features if cfg["groups"] is None else cfg["groups"]
    if not isinstance(groups, int) or groups < 1 or features % groups:
        raise OpError(f"groups = {groups} must be a positive integer dividing the {features} "
                      f"channels of {cfg['over']}", arg="groups")
    return {"features": features, "groups": groups, "over": cfg["over"],
            "eps": float(cfg["eps"])}


def _emit_groupnorm(em, n, args):
    i = em.type(n.inputs[0]).index(n.attrs["over"])
    if i == 1:  # torch's layout already: [N, C, ...]
        return em.module(n.module, args[0])
    # the axes before `over` become one batch axis, then take their sizes back
    y = em.module(n.module, em.method(args[0], "flatten", 0, i - 1))
    return em.method(y, "view_as", args[0])


@op(name="groupnorm", kind="layer",
    params=(Param("over", "word"), Param("groups", "int", None), Param("eps", "float", 1e-5)),
    doc="group normalisation (nn.GroupNorm) of the channel axis `over`: its channels in "
        "`groups` groups (one per channel unless given), each normalised over its channels "
        "and the axes after `over`, per index of the axes before; a learned scale and shift "
        "per channel",
    module_attrs=_groupnorm_attrs, count=lambda a: 2 * a["features"],
    build=lambda a: _nn().GroupNorm(a["groups"], a["features"], eps=a["eps"]),
    emit=_emit_groupnorm)
def _groupnorm(types, cfg):
    _named_axis(types[0], cfg["over"], "groupnorm over", "over")
    return types[0]


# ---------------------------------------------------------------------------- elementwise

ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def broadcast(a: TensorType, b: TensorType) -> tuple[TensorType, Any, Any]:
    """Named broadcasting: the operand with fewer axes is lined up under the other's axes
    by name; an axis of size 1 the other lacks is dropped. Returns the result type and,
    per operand, how to reshape it (None: torch's own broadcasting already fits)."""
    big, small, swapped = (a, b, False) if _fits(b, a) or not _fits(a, b) else (b, a, True)
    if len(small.axes) > len(big.axes):
        big, small, swapped = small, big, not swapped
    for ax in small.axes:
        if ax.name in big.names:
            other = big.axis(ax.name)
            if None not in (ax.size, other.size) and 1 not in (ax.size, other.size) \
                    and ax.size != other.size:
                raise OpError(f"axis {ax.name} has size {other.size} on one side and "
                              f"{ax.size} on the other", code="axis-mismatch")
        elif ax.size != 1:
            raise OpError(f"cannot combine {a} and {b}: `{ax.name}` is not an axis of {big}",
                          code="axis-mismatch",
                          hint="reduce it first (mean/max/sum), or name the axes alike")
    out = TensorType(tuple(
        Axis(x.name, x.size if x.size not in (None, 1) or x.name not in small.names
             else (small.axis(x.name).size or x.size)) for x in big.axes))
    plan = _align_plan(small, big)
    return (out, plan, None) if swapped else (out, None, plan)


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


# ---------------------------------------------------------------------------- parameter math

SCALAR_FUNCTIONS: dict[str, tuple[int, Callable]] = {
    "sqrt": (1, math.sqrt), "log2": (1, math.log2), "abs": (1, abs), "int": (1, int),
    "float": (1, float), "round": (1, round), "min": (2, min), "max": (2, max),
}
