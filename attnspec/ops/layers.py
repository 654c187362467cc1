"""Operators that are layers with learned parameters: linear, convolutions, norms, γ, ..."""

from __future__ import annotations

import operator

from ..ir import Axis, TensorType
from . import (
    ACTIVATIONS,
    INITS,
    WEIGHT_INITS,
    OpError,
    Param,
    _call_module,
    _nn,
    _runtime,
    _torch,
    channel,
    known,
    last,
    op,
    width,
    window_count,
    windowed,
    windows_fit,
)
from .structure import _named_axis

# the settings of a drawn weight: `std` for normal, `mode` for kaiming, `bound` for uniform
INIT_SETTINGS = (Param("std", "float", None, keyword=True),
                 Param("mode", "word", None, ("fan_in", "fan_out"), keyword=True),
                 Param("bound", "float", None, keyword=True))
_SETTING_OF = {"normal": "std", "kaiming": "mode", "uniform": "bound"}
_INIT_OF = {setting: init for init, setting in _SETTING_OF.items()}


def _init_attrs(cfg) -> dict:
    """`init` and the one setting it takes (recorded only then): `init = normal, std = s`,
    `init = kaiming, mode = fan_out` (fan_in when left out), `init = uniform, bound = b`."""
    init = cfg["init"]
    wanted = _SETTING_OF.get(init)
    for name in ("std", "mode", "bound"):
        if cfg.get(name) is not None and name != wanted:
            raise OpError(f"`{name}` sets how init = {_INIT_OF[name]} draws the weight, not "
                          f"init = {init}", arg=name, code="wrong-arity",
                          hint=f"write init = {_INIT_OF[name]}, {name} = ...")
    if init == "kaiming":
        return {"init": init, "mode": cfg.get("mode") or "fan_in"}
    if wanted is not None:
        value = cfg.get(wanted)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            given = "" if value is None else f", not {value!r}"
            raise OpError(f"init = {init} needs a positive `{wanted}`{given}", arg=wanted,
                          code="wrong-type", hint=f"e.g. init = {init}, {wanted} = 0.01")
        return {"init": init, wanted: float(value)}
    return {"init": init}


def _linear_attrs(types, cfg):
    a = last(types[0])
    cin, out = known(a, "linear"), width(cfg["out"], "linear's width", "out")
    attrs = {"in": cin, "out": out, "bias": cfg["bias"], **_init_attrs(cfg)}
    groups = cfg["groups"]
    if groups != 1:  # recorded only when used: a plain linear keeps its attributes
        if not isinstance(groups, int) or groups < 1 or cin % groups or out % groups:
            raise OpError(f"groups={groups!r} must be a positive integer dividing both {cin} "
                          f"input and {out} output features", arg="groups")
        attrs["groups"] = groups
    return attrs


def _linear_flops(numel: int, a) -> int:
    per_output = a["in"] // a.get("groups", 1)  # features summed into each output
    if per_output == 1 and a.get("groups", 1) > 1:
        return 0  # one product per output: an elementwise multiply, as torch counts it
    return 2 * numel * a["out"] // a.get("groups", 1)


def _build_linear(a):
    if a.get("groups", 1) == 1:
        return _init(_nn().Linear(a["in"], a["out"], bias=a["bias"]), a)
    from ..layers import GroupedLinear

    return _init(GroupedLinear(a["in"], a["out"], a["groups"], bias=a["bias"]), a)


@op(name="linear", kind="layer", doc="a fully connected layer on the last axis",
    params=(Param("out", "int"), Param("bias", "bool", True),
            Param("init", "word", "default", WEIGHT_INITS), Param("groups", "int", 1),
            *INIT_SETTINGS),
    module_attrs=_linear_attrs,
    count=lambda a: a["in"] * a["out"] // a.get("groups", 1) + a["bias"] * a["out"],
    build=_build_linear,
    emit=_call_module,
    flops=lambda ins, out, a, b: _linear_flops(ins[0].numel(b), a))
def _linear(types, cfg):
    t = types[0]
    return t.replace_axis(last(t).name, Axis(last(t).name, cfg["out"]))


def _init(module, attrs):
    """The initialisation `init` names: all zero, or the weight drawn (bias zero)."""
    nn, init = _nn(), attrs.get("init")
    if init == "zero":
        for p in module.parameters():
            nn.init.zeros_(p)
    elif init in _SETTING_OF:
        w = module.weight
        if init == "normal":
            nn.init.normal_(w, 0.0, attrs["std"])
        elif init == "kaiming":  # N(0, 2 / fan): He et al.'s, for a ReLU after
            nn.init.kaiming_normal_(w, mode=attrs["mode"], nonlinearity="relu")
        else:
            nn.init.uniform_(w, -attrs["bound"], attrs["bound"])
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    return module


def _conv_attrs(types, cfg):
    t = types[0]
    over = _conv_over(t, cfg)
    has_channels = len(t.axes) - 1 > len(over)
    cin = known(channel(t), "conv") if has_channels else 1
    k = cfg["kernel"]
    if not isinstance(k, int) or k < 1:
        raise OpError(f"kernel size must be a positive integer, not {k!r}", arg="kernel")
    if not isinstance(cfg["dilation"], int) or cfg["dilation"] < 1:
        raise OpError(f"dilation must be a positive integer, not {cfg['dilation']!r}",
                      arg="dilation")
    if cfg["padding"] is None and (k - 1) * cfg["dilation"] % 2:  # 'same': (k − 1)·d / 2
        raise OpError(f"conv keeps its axes' sizes, which needs an odd kernel, not {k}",
                      hint=f"use kernel = {k - 1} or {k + 1}, or give a padding", arg="kernel")
    if cfg["padding"] is not None and (not isinstance(cfg["padding"], int)
                                       or cfg["padding"] < 0):
        raise OpError(f"padding must be an integer of 0 or more, not {cfg['padding']!r}",
                      arg="padding")
    groups = cfg["groups"]
    out = width(cfg["out"], "conv's out", "out")
    if not isinstance(groups, int) or groups < 1 or cin % groups or out % groups:
        raise OpError(f"groups={groups!r} must be a positive integer dividing both {cin} "
                      f"input and {out} output channels", arg="groups")
    if cfg["init"] == "shift" and cin // groups != k ** len(over):
        raise OpError(f"init = shift gives each of a group's input channels one kernel "
                      f"position: it needs {k ** len(over)} input channels per group, not "
                      f"{cin // groups}", arg="init")
    attrs = {"dims": len(over), "in": cin, "out": out, "kernel": k,
             "dilation": cfg["dilation"], "groups": groups, "bias": cfg["bias"],
             **_init_attrs(cfg), "channels": has_channels}
    if cfg["padding"] is not None:  # recorded only when given: 'same' by default
        attrs["padding"] = cfg["padding"]
    if cfg["stride"] != 1:  # recorded only when used (checked by _strided)
        attrs["stride"] = cfg["stride"]
    return attrs


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
    module = cls(a["in"], a["out"], k, stride=a.get("stride", 1),
                 padding=a.get("padding", d * (k - 1) // 2), dilation=d, groups=a["groups"],
                 bias=a["bias"])
    if a["init"] == "shift":
        return _shift_init(module)
    return _init(module, a)


def _shift_init(conv):
    """ACmix's initialisation: a group's i-th input channel is the input moved by kernel
    position i (row-major), a weight of 1 there and 0 elsewhere, for every output
    channel; no bias. A grouped convolution that starts as the shifts it generalises."""
    torch = _torch()
    positions = conv.weight.shape[1]  # = kernel^n, checked with the attributes
    with torch.no_grad():
        shifts = torch.eye(positions).reshape(positions, *conv.weight.shape[2:])
        conv.weight.copy_(shifts.expand_as(conv.weight))
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


def _emit_conv(em, n, args):
    a, t = n.attrs, em.type(n.inputs[0])
    k, d = a["kernel"], a["dilation"]
    over = t.names[len(t.axes) - a["dims"]:]  # the trailing axes it slides over
    x = windows_fit(em, n, args[0], over, k, a.get("padding", d * (k - 1) // 2), d)
    if not n.attrs["channels"]:  # a map with no channel axis is one channel
        x = em.method(x, "unsqueeze", 1)
    y = em.module(n.module, x)
    return y if n.attrs["channels"] else em.method(y, "squeeze", 1)


def _conv_count(a) -> int:
    weights = a["out"] * a["in"] // a["groups"] * a["kernel"] ** max(a["dims"], 1)
    return weights + a["bias"] * a["out"]


def _conv_sizes(ins, t, a):
    if a.get("stride", 1) == 1 and a.get("padding") is None:
        return ins[0]  # 'same': the sizes stay (axes merged like `H·W` included)
    over = a.get("over") or t.names[2:]
    return {**ins[0], **{x: _conv_size(ins[0][x], a) for x in over if x in ins[0]}}


def _conv_size(n: int | None, a) -> int | None:
    """An axis's size after the conv: ⌈n / stride⌉ with 'same' padding."""
    k, d, s = a.get("kernel", 3), a.get("dilation", 1), a.get("stride", 1)
    p = a.get("padding")
    p = d * (k - 1) // 2 if p is None else p
    return None if n is None else window_count(n, k, s, p, d)


def _conv_flops(ins, out, a, b):
    per_out = 2 * a["in"] // a["groups"] * a["kernel"] ** max(a["dims"], 1)
    return per_out * out.numel(_conv_sizes([b], out, a))  # b: the input's sizes


@op(name="conv", kind="layer",
    doc="a convolution with 'same' padding over the trailing axes; `over` names them, "
        "the axis after the batch is the channels unless `over` covers it",
    params=(Param("out", "int", 1), Param("kernel", "int", 3), Param("over", "axes", None),
            Param("dilation", "int", 1), Param("groups", "int", 1),
            Param("bias", "bool", True),
            Param("init", "word", "default", (*WEIGHT_INITS, "shift")),
            Param("stride", "int", 1), Param("padding", "int", None), *INIT_SETTINGS),
    module_attrs=_conv_attrs, build=_build_conv, emit=_emit_conv, flops=_conv_flops,
    count=lambda a: _conv_count(a), sizes=_conv_sizes)
def _conv(types, cfg):
    t = types[0]
    over = _conv_over(t, cfg)
    if not 1 <= len(over) <= 3:  # [B, C]: no axis after the channels to slide over
        raise OpError(f"conv runs over 1 to 3 axes, not {len(over) or 'none'}; the tensor "
                      f"is {t}", arg="over", hint="name the axes it slides over: "
                      "conv(t, kernel = k, over = C) is ECA's, across the channels")
    if len(t.axes) - 2 > len(over):  # axes neither convolved nor the channels
        raise OpError(f"conv over {' '.join(over)} of {t} leaves "
                      f"{' '.join(t.names[2:len(t.axes) - len(over)])} between the channels "
                      f"and the axes it slides over", arg="over", code="axis-mismatch",
                      hint="slide over every axis after the channels, or merge the others "
                           "into the channel axis first")
    t = _strided(t, over, cfg)
    if len(t.axes) - 1 > len(over):
        return t.replace_axis(t.axes[1].name, Axis(t.axes[1].name, cfg["out"]))
    if cfg["out"] != 1:
        raise OpError("a conv over a map with no channel axis yields one channel",
                      arg="out", hint="drop `out`, or keep a channel axis")
    return t


def _strided(t: TensorType, over, cfg) -> TensorType:
    """A strided conv's axes: index i of the result sits at i·stride of its input, and a
    fixed size n becomes ⌈n / stride⌉ ('same' padding) or what the padding gives."""
    if cfg["stride"] == 1 and cfg["padding"] is None:
        return t
    if not isinstance(cfg["stride"], int) or cfg["stride"] < 1:
        raise OpError(f"stride must be a positive integer, not {cfg['stride']!r}", arg="stride")
    k, d = cfg["kernel"], cfg["dilation"]
    p = d * (k - 1) // 2 if cfg["padding"] is None else cfg["padding"]
    return TensorType(tuple(windowed(a, k, cfg["stride"], p, d) if a.name in over else a
                            for a in t.axes), t.dtype)


def _conv1x1_attrs(types, cfg):
    t = types[0]
    c = channel(t)
    return {"dims": len(t.axes) - 2, "in": known(c, "conv1x1"),
            "out": width(cfg["out"], "conv1x1's width", "out"), "kernel": 1, "dilation": 1,
            "groups": 1, "bias": cfg["bias"], **_init_attrs(cfg), "channels": True}


def _at_most_three_after_channels(t: TensorType, name: str, verb: str) -> None:
    """torch's convolutions, batch norms and channel dropouts take 0 to 3 axes after the
    channels (axis 1)."""
    if len(t.axes) > 5:
        raise OpError(f"{name} {verb} the channels (axis 1) of a tensor with at most 3 axes "
                      f"after them, not {t}", hint="merge axes first")


def _build_conv1x1(a):
    if a["dims"] == 0:  # [B, C]: a 1x1 convolution of a vector is a linear layer
        return _init(_nn().Linear(a["in"], a["out"], bias=a["bias"]), a)
    return _build_conv(a)


@op(name="conv1x1", kind="layer", doc="a 1×1 convolution on the channel axis (axis 1)",
    params=(Param("out", "int"), Param("bias", "bool", True),
            Param("init", "word", "default", WEIGHT_INITS), *INIT_SETTINGS),
    module_attrs=_conv1x1_attrs, build=_build_conv1x1, count=lambda a: _conv_count(a),
    emit=_call_module, flops=_conv_flops)
def _conv1x1(types, cfg):
    t = types[0]
    _at_most_three_after_channels(t, "conv1x1", "mixes")
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
    emit=_call_module,
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
    return _zero_scale(m(a["features"], eps=a["eps"], momentum=a["momentum"]), a)


def _zero_scale(norm, attrs):
    """`init = zero`: a norm whose scale starts at 0, so the block after it starts as
    nothing and a residual as the identity (Non-local §4.1)."""
    if attrs["init"] == "zero":
        _nn().init.zeros_(norm.weight)
    return norm


def _emit_batchnorm(em, n, args):
    # the gradient into BatchNorm made contiguous: runtime.contiguous_gradient says why
    return em.call(_runtime().contiguous_gradient, em.module(n.module, args[0]))


@op(name="batchnorm", kind="layer", doc="batch normalisation over the channel axis (axis 1)",
    params=(Param("init", "word", "default", INITS), Param("eps", "float", 1e-5),
            Param("momentum", "float", 0.1)),
    module_attrs=_norm_attrs("batch"), build=_build_batchnorm, count=lambda a: 2 * a["features"],
    emit=_emit_batchnorm)
def _batchnorm(types, cfg):
    channel(types[0])
    _at_most_three_after_channels(types[0], "batchnorm", "normalises")
    return types[0]


def _build_layernorm(a):
    return _zero_scale(_nn().LayerNorm(a["features"], eps=a["eps"]), a)


@op(name="layernorm", kind="layer", doc="layer normalisation over the last axis",
    params=(Param("init", "word", "default", INITS), Param("eps", "float", 1e-5)),
    module_attrs=_norm_attrs("layer"), build=_build_layernorm, count=lambda a: 2 * a["features"],
    emit=_call_module)
def _layernorm(types, cfg):
    last(types[0])
    return types[0]


def _build_gamma(a):
    from ..layers import Scale

    return Scale(a["init"])


@op(name="gamma", kind="layer",
    doc="a learned scalar γ times its input (DANet's and CCNet's γ·y, zero at first)",
    params=(Param("init", "float", 0.0),),
    module_attrs=lambda types, cfg: {"init": float(cfg["init"])}, build=_build_gamma,
    emit=lambda em, n, args: em.call(operator.mul, em.attr(f"{n.module}.gamma"), args[0]),
    count=lambda a: 1)
def _gamma(types, cfg):
    return types[0]


@op(name="dropout", kind="layer", params=(Param("p", "float", 0.5),
                                          Param("channels", "bool", False)),
    doc="dropout while training (with `channels`, whole channels: nn.Dropout2d)",
    module_attrs=lambda types, cfg: {"p": float(cfg["p"]), "channels": cfg["channels"],
                                     "dims": len(types[0].axes) - 2},
    build=lambda a: _dropout(a), emit=_call_module,
    count=lambda a: 0)
def _dropout_type(types, cfg):
    if not 0 <= cfg["p"] < 1:
        raise OpError(f"dropout's p must be in [0, 1), not {cfg['p']}", arg="p")
    if cfg["channels"]:
        if len(types[0].axes) < 2:
            raise OpError(f"dropout of whole channels needs a channel axis (axis 1), which "
                          f"{types[0]} lacks", arg="channels")
        _at_most_three_after_channels(types[0], "dropout", "drops")
    return types[0]


def _dropout(a):
    nn = _nn()
    if not a["channels"] or a["dims"] == 0:  # [B, C]: a channel is one number
        return nn.Dropout(a["p"])
    return {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}[a["dims"]](a["p"])


@op(name="drop_path", kind="layer", params=(Param("p", "float", 0.0),),
    doc="stochastic depth: while training, whole samples dropped with probability p, the "
        "rest scaled by 1 / (1 − p) (timm's drop_path, for residual branches)",
    module_attrs=lambda types, cfg: {"p": float(cfg["p"])},
    build=lambda a: _drop_path(a), emit=_call_module, count=lambda a: 0)
def _drop_path_type(types, cfg):
    if not 0 <= cfg["p"] < 1:
        raise OpError(f"drop_path's p must be in [0, 1), not {cfg['p']}", arg="p")
    return types[0]


def _drop_path(a):
    from ..layers import DropPath

    return DropPath(a["p"])


def _build_affine(a):
    from ..layers import Affine

    return Affine(a["size"], a["weight"], a["bias"])


def _emit_affine(em, n, args):
    t = em.type(n.inputs[0])
    shape = tuple(-1 if name == n.attrs["over"] else 1 for name in t.per_sample)
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
    if cfg["over"] not in t.per_sample:
        raise OpError(f"affine over `{cfg['over']}`: {t} has no such axis", arg="over",
                      code="axis-mismatch")
    return cfg["over"]


def _groupnorm_attrs(types, cfg):
    t = types[0]
    _named_axis(t, cfg["over"], "groupnorm over", "over")
    features = known(t.axis(cfg["over"]), "groupnorm")
    groups = features if cfg["groups"] is None else cfg["groups"]
    if not isinstance(groups, int) or groups < 1 or features % groups:
        raise OpError(f"groups = {groups} must be a positive integer dividing the {features} "
                      f"channels of {cfg['over']}", arg="groups")
    return {"features": features, "groups": groups, "over": cfg["over"],
            "eps": float(cfg["eps"]), "affine": bool(cfg["affine"])}


def _emit_groupnorm(em, n, args):
    i = em.type(n.inputs[0]).index(n.attrs["over"])
    if i == 1:  # torch's layout already: [N, C, ...]
        return em.module(n.module, args[0])
    # the axes before `over` become one batch axis, then take their sizes back
    y = em.module(n.module, em.method(args[0], "flatten", 0, i - 1))
    return em.method(y, "view_as", args[0])


@op(name="groupnorm", kind="layer",
    params=(Param("over", "word"), Param("groups", "int", None), Param("eps", "float", 1e-5),
            Param("affine", "bool", True)),
    doc="group normalisation (nn.GroupNorm) of the channel axis `over`: its channels in "
        "`groups` groups (one per channel unless given), each normalised over its channels "
        "and the axes after `over`, per index of the axes before; a learned scale and shift "
        "per channel unless affine = false (then, one group per channel, InstanceNorm)",
    module_attrs=_groupnorm_attrs, count=lambda a: 2 * a["features"] if a["affine"] else 0,
    build=lambda a: _nn().GroupNorm(a["groups"], a["features"], eps=a["eps"],
                                    affine=a["affine"]),
    emit=_emit_groupnorm)
def _groupnorm(types, cfg):
    _named_axis(types[0], cfg["over"], "groupnorm over", "over")
    return types[0]
