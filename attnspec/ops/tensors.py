"""Operators without parameters on values: pointwise functions, reductions, pooling."""

from __future__ import annotations

import operator
from dataclasses import replace

from ..ir import Axis, TensorType
from . import (
    _F,
    OPS,
    Op,
    OpError,
    Param,
    _broadcast_size,
    _runtime,
    _torch,
    op,
    two_tensors,
    window_count,
    windowed,
    windows_fit,
)
from .structure import _named_axis


def _pooled_axes(t: TensorType, cfg, name: str) -> tuple[str, ...]:
    """The axes a pooling runs over: `over` (trailing axes of t), by default every axis
    after the channels."""
    over = tuple(cfg.get("over") or t.names[2:])
    if not 1 <= len(over) <= 3:
        raise OpError(f"{name} runs over 1 to 3 axes, not {' '.join(over) or 'none'}; the "
                      f"tensor is {t}", arg="over" if cfg.get("over") else None)
    for axis in over:
        _named_axis(t, axis, name, "over")
    if over != t.names[len(t.axes) - len(over):]:
        raise OpError(f"{name} must run over trailing axes of {t}, not {' '.join(over)}",
                      arg="over", code="axis-mismatch")
    return over


def _window_pool(name, fn, doc):
    def infer(types, cfg):
        t = types[0]
        over = _pooled_axes(t, cfg, name)
        cfg["over"] = over
        if not isinstance(cfg["kernel"], int) or cfg["kernel"] < 1:
            raise OpError(f"kernel must be a positive integer, not {cfg['kernel']!r}",
                          arg="kernel")
        if not 0 <= 2 * cfg["padding"] <= cfg["kernel"]:  # torch's limit: no window of pads
            raise OpError(f"{name}'s padding must be from 0 to half the kernel "
                          f"({cfg['kernel']}), not {cfg['padding']}", arg="padding")
        fixed = [t.axis(a) for a in over if t.axis(a).size is not None]
        if fixed:  # pooling would change a size the spec fixed
            raise OpError(f"{name} would pool axis {fixed[0].name}, whose size is fixed at "
                          f"{fixed[0].size}; it pools {' '.join(over)} of {t}",
                          code="axis-mismatch", hint="name the axes to pool: over = H W")
        # the pooled axes keep their names; their run-time sizes shrink, and index i now
        # sits at position i·stride of the input
        stride = cfg.get("stride") or cfg["kernel"]
        return TensorType(tuple(windowed(a, cfg["kernel"], stride, cfg["padding"],
                                         ceil=cfg["ceil"]) if a.name in over else a
                                for a in t.axes), t.dtype)

    def emit(em, n, args):
        t, over = em.type(n.inputs[0]), n.attrs["over"]
        dims = len(over)
        k, stride = n.attrs["kernel"], n.attrs.get("stride") or n.attrs["kernel"]
        pad = n.attrs.get("padding", 0)
        x = windows_fit(em, n, args[0], over, k, pad)
        if k == 1 and not pad:  # a window of one: every stride-th element, a view
            return em.call(operator.getitem, x, (slice(None),) * (len(t.axes) - dims)
                           + (slice(None, None, stride),) * dims)
        # an average leaves the padding out of each window's mean
        mean_of_inside = {"count_include_pad": False} if pad and fn == "avg_pool" else {}
        ceil = {"ceil_mode": True} if n.attrs.get("ceil") else {}
        if len(t.axes) == dims + 2:  # [B, channels, pooled axes]: torch's own layout
            return em.call(getattr(_F(), f"{fn}{dims}d"), x, k, stride, pad,
                           **mean_of_inside, **ceil)
        # the axes before the pooled ones, other than the batch, as one channel axis
        return em.call(_runtime().pool_over, x, f"{fn}{dims}d", dims, k, stride, pad,
                       **mean_of_inside, **ceil)

    def sizes(ins, t, attrs):
        k, stride = attrs["kernel"], attrs.get("stride") or attrs["kernel"]
        pad, ceil = attrs.get("padding", 0), bool(attrs.get("ceil"))
        return {**ins[0], **{a: window_count(ins[0][a], k, stride, pad, ceil=ceil)
                             for a in attrs["over"]}}

    OPS[name] = Op(name=name, doc=doc, infer=infer, emit=emit, kind="tensor", sizes=sizes,
                   params=(Param("kernel", "int"), Param("stride", "int", None),
                           Param("padding", "int", 0), Param("ceil", "bool", False),
                           Param("over", "axes", None)))


_window_pool("maxpool", "max_pool", "max pooling over windows of the axes after the "
             "channels, or of the trailing axes `over` names (stride = kernel unless given)")


_window_pool("avgpool", "avg_pool", "average pooling over windows of the axes after the "
             "channels, or of the trailing axes `over` names (stride = kernel unless given)")


INTERPOLATION = {"nearest": ("nearest",) * 3, "linear": ("linear", "bilinear", "trilinear")}


def _emit_upsample(em, n, args):
    t = em.type(n.inputs[1])
    dims, spatial = len(t.axes) - 2, t.names[2:]
    mode = INTERPOLATION[n.attrs["mode"]][dims - 1]
    corners = {} if mode == "nearest" else {"align_corners": bool(n.attrs.get("corners"))}
    return em.call(_runtime().resize, args[0], em.sizes(n.inputs[1], spatial), mode=mode,
                   **corners)


@op(name="upsample", inputs=2, params=(Param("mode", "word", "nearest",
                                             tuple(INTERPOLATION)),
                                       Param("corners", "bool", False)),
    doc="the first tensor resized (F.interpolate) to the run-time sizes of the second's "
        "axes after the channels: a pooled branch brought back to its input's size",
    emit=_emit_upsample,
    sizes=lambda ins, t, attrs: {**ins[0], **{a: ins[1][a] for a in t.names[2:]}})
def _upsample(types, cfg):
    t, like = two_tensors(types, "upsample", "the one to resize and the one whose sizes it "
                          "takes", "upsample(t, x) resizes t to the sizes of x")
    if len(t.axes) not in (3, 4, 5):
        raise OpError(f"upsample resizes the 1 to 3 axes after the channels; the tensor is {t}")
    if t.names[0] != like.names[0] or t.names[2:] != like.names[2:]:
        raise OpError(f"upsample resizes {t} to the sizes of {like}: they need the same batch "
                      f"axis and the same axes after the channels", code="axis-mismatch")
    # a resized map is a grid of its own: its indices are its positions (step 1)
    return TensorType((t.axes[0], t.axes[1], *(replace(a, step=1) for a in like.axes[2:])))


POINTWISE: set[str] = set()  # the operators registered below, one function per element


def _pointwise(name, fn_name, doc, functional=False, emit=None):
    """An elementwise operator calling torch.<fn_name>, or F.<fn_name> if `functional`,
    unless `emit` writes the code itself."""
    def call(em, n, args):
        return em.call(getattr(_F() if functional else _torch(), fn_name), args[0])

    OPS[name] = Op(name=name, doc=doc, infer=lambda types, cfg: types[0], emit=emit or call)
    POINTWISE.add(name)


_pointwise("sigmoid", "sigmoid", "the logistic function; as a normaliser, per weight")


def _emit_hard_sigmoid(em, n, args):
    # Written out as relu6(x + 3) / 6 (eSE's authors' Hsigmoid), not F.hardsigmoid: the same
    # values, but F.hardsigmoid's CPU backward multiplies by 1/6 rounded to float32, a
    # relative error of ~3e-8 in every float64 gradient.
    shifted = em.call(operator.add, args[0], 3.0)
    return em.call(operator.truediv, em.call(_F().relu6, shifted), 6.0)


_pointwise("hard_sigmoid", "hardsigmoid", "relu6(x + 3) / 6, a piecewise-linear sigmoid "
           "(F.hardsigmoid's values)", emit=_emit_hard_sigmoid)


def _emit_hard_swish(em, n, args):
    # x · relu6(x + 3) / 6 written out, as the authors of coordinate attention write h_swish
    # (and for hard_sigmoid's float64-exact gradient, above)
    return em.call(operator.mul, args[0], _emit_hard_sigmoid(em, n, args))


_pointwise("hard_swish", "hardswish", "x · relu6(x + 3) / 6 (F.hardswish's values)",
           emit=_emit_hard_swish)


_pointwise("detach", "detach", "the input, through which no gradient flows back (what the "
           "authors compute under torch.no_grad, e.g. EMANet's EM iterations)")


_pointwise("relu", "relu", "max(0, x)")


_pointwise("tanh", "tanh", "hyperbolic tangent")


_pointwise("exp", "exp", "e to the x (Luong's Gaussian window, exp(−d² / 2σ²))")


_pointwise("gelu", "gelu", "Gaussian error linear unit", functional=True)


_pointwise("silu", "silu", "x · sigmoid(x)", functional=True)


@op(name="elu", params=(Param("alpha", "float", 1.0),),
    doc="x for x > 0, alpha · (exp(x) − 1) below (linear attention's feature map is elu + 1)",
    emit=lambda em, n, args: em.call(_F().elu, args[0], n.attrs["alpha"]))
def _elu(types, cfg):
    return types[0]


@op(name="leaky_relu", params=(Param("slope", "float", 0.01),),
    doc="max(0, x) + slope · min(0, x)",
    emit=lambda em, n, args: em.call(_F().leaky_relu, args[0], n.attrs["slope"]))
def _leaky_relu(types, cfg):
    return types[0]


OPS["identity"] = Op(name="identity", doc="the input unchanged (W = I, W' = I)",
                     infer=lambda types, cfg: types[0], emit=lambda em, n, args: args[0])


def _emit_variance(em, n, x, t: TensorType, dims: tuple[int, ...]):
    """As the calls `x - mean(x, axes)` and `d * d` would emit them, so that the emitter
    reuses a deviation the spec computes itself (SimAM), then summed over n − 1 (torch.var's
    single-pass kernel is several times slower on CPU)."""
    torch = _torch()
    mean = em.call(torch.mean, x, dim=dims)
    index = tuple(None if i in dims else slice(None) for i in range(len(t.axes)))
    d = em.call(operator.sub, x, em.call(operator.getitem, mean, index))
    total = em.call(torch.sum, em.call(operator.mul, d, d), dim=dims)
    first, *rest = em.sizes(n.inputs[0], tuple(t.names[i] for i in dims))
    count = first
    for size in rest:
        count = em.call(operator.mul, count, size)
    return em.call(operator.truediv, total, em.call(operator.sub, count, 1))


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
            from .. import runtime

            return em.call(runtime.max_over, args[0], dims)
        if name == "norm":
            return em.call(torch.linalg.vector_norm, args[0], dim=dims)
        if name == "var":  # unbiased: the squared deviations' sum over n − 1
            return _emit_variance(em, n, args[0], t, dims)
        return em.call(getattr(torch, name), args[0], dim=dims)

    OPS[name] = Op(name=name, doc=doc, params=(Param("axes", "axes"),), kind="reduce",
                   infer=infer, emit=emit)


_reduce("mean", "the mean over the named axes, which disappear (global average pooling)")


_reduce("max", "the maximum over the named axes, which disappear (global max pooling)")


_reduce("sum", "the sum over the named axes, which disappear")


_reduce("norm", "the Euclidean (L2) norm over the named axes, which disappear")


_reduce("var", "the unbiased variance over the named axes, which disappear")


_reduce("logsumexp", "log Σ exp over the named axes, which disappear")


def _emit_index(em, n, args):
    like = args[0]
    size = n.attrs["size"]
    if size is None:  # index(t, S): the run-time size of t's axis S
        size = em.sizes(n.inputs[0], (n.attrs["axis"],))[0]
    values = em.call(_torch().arange, size, dtype=em.call(getattr, like, "dtype"),
                     device=em.call(getattr, like, "device"))
    return em.method(values, "unsqueeze", 0)


# `index(K)`, `index(t, S)` (no `infer`: the checker's call_index types them): 0 … K − 1 on
# a new axis
OPS["index"] = Op(name="index", doc="the numbers 0 … K − 1 along a new axis K",
                  emit=_emit_index, kind="core")


def _emit_length(em, n, args):
    dim = em.type(n.inputs[0]).index(n.attrs["over"])
    mask = args[1] if len(args) > 1 else None
    return em.call(_runtime().length, args[0], dim, mask)


@op(name="length", inputs=-1, params=(Param("over", "word"),),
    doc="each sample's number of positions along the named axis: the axis's size, or the "
        "positions a padding mask leaves",
    emit=_emit_length, sizes=lambda ins, t, a: {})
def _length(types, cfg):
    t, axis = types[0], cfg["over"]
    if axis not in t.names[1:]:
        raise OpError(f"length over `{axis}`: {t} has no such axis (after the batch)",
                      arg="over", code="axis-mismatch")
    if len(types) > 2:
        raise OpError(f"length takes a tensor and its padding mask, not {len(types)} tensors",
                      code="wrong-arity", hint="length(memory, pad, over = S)")
    if len(types) == 2 and (types[1].dtype != "bool" or
                            types[1].names != (t.names[0], axis)):
        raise OpError(f"length's mask marks padding along `{axis}`: a bool [{t.names[0]}, "
                      f"{axis}], not {types[1]}", code="wrong-type")
    return TensorType((Axis(t.names[0], None),), t.dtype)


# ---------------------------------------------------------------------------- sampling


def _sample_plan(t: TensorType, grid: TensorType, cfg):
    """How `sample` lines its tensors up: the axes both have (the batch first), t's
    feature axes, the sampled axes (in the order named), the grid's point axes."""
    axes, over = tuple(cfg["axes"]), cfg["over"]
    space = [_named_axis(t, a, "sample over", "axes") for a in axes]
    if not 1 <= len(axes) <= 2:
        raise OpError(f"sample reads one or two axes, not {' '.join(axes) or 'none'}",
                      arg="axes")
    if t.names[0] != grid.names[0]:
        raise OpError(f"sample needs one batch axis: {t} and {grid}", code="axis-mismatch")
    if over not in grid.names[1:] or grid.axis(over).size != len(axes):
        raise OpError(f"the points' coordinates are the axis `{over}` of the grid, of size "
                      f"{len(axes)} (one per axis read): the grid is {grid}", arg="over",
                      code="axis-mismatch")
    if over in t.names or any(a in grid.names for a in axes):
        raise OpError(f"the grid {grid} holds points, not {' '.join(axes)} of {t}, nor its "
                      f"`{over}`", code="axis-mismatch")
    shared = [a.name for a in t.axes if a.name in grid.names]
    features = [a.name for a in t.axes if a.name not in grid.names and a.name not in axes]
    points = [a.name for a in grid.axes if a.name not in t.names and a.name != over]
    return shared, features, [t.names[d] for d in space], points


@op(name="sample", inputs=2, params=(Param("axes", "axes"), Param("over", "word"),
                                     Param("corners", "bool", False),
                                     Param("mode", "word", "bilinear", ("bilinear", "nearest"))),
    doc="t read at the grid's points (F.grid_sample, zeros outside): the axes named are "
        "replaced by the grid's point axes",
    emit=lambda em, n, args: _emit_sample(em, n, args),
    sizes=lambda ins, t, a: {**{x: s for x, s in ins[0].items() if x not in a["axes"]},
                             **{x: s for x, s in ins[1].items() if x not in ins[0]}})
def _sample(types, cfg):
    t, grid = two_tensors(types, "sample", "the map and the points to read it at",
                          "sample(t, points, H W, over = P) reads t's H W at the points")
    if t.dtype != "float" or grid.dtype != "float":
        raise OpError(f"sample reads a real map at real points, not {t} at {grid}",
                      code="wrong-type")
    shared, features, space, points = _sample_plan(t, grid, cfg)
    first = min(t.index(a) for a in space)
    kept = [replace(a, size=_broadcast_size(a.size, grid.axis(a.name).size))
            if a.name in shared else a for a in t.axes]
    axes = [a for a in kept[:first] if a.name not in space]
    axes += [replace(grid.axis(a), step=1) for a in points]
    axes += [a for a in kept[first:] if a.name not in space]
    return TensorType(tuple(axes), t.dtype)


def _emit_sample(em, n, args):
    t, grid, out = em.type(n.inputs[0]), em.type(n.inputs[1]), em.type(n.name)
    shared, features, space, points = _sample_plan(t, grid, n.attrs)
    made = [*shared, *features, *points]  # runtime.sample's order
    return em.call(_runtime().sample, args[0], args[1],
                   tuple(t.index(a) for a in (*shared, *features, *space)),
                   tuple(grid.index(a) for a in (*shared, *points, n.attrs["over"])),
                   (len(shared), len(features), len(points)), n.attrs["corners"],
                   n.attrs["mode"], tuple(made.index(a) for a in out.names))


# ---------------------------------------------------------------------------- spectra


def _spectral_dims(t: TensorType, axes, what: str) -> tuple[int, ...]:
    return tuple(_named_axis(t, a, f"{what} over", "axes") for a in axes)


def _emit_rfft(em, n, args):
    t = em.type(n.inputs[0])
    dims = _spectral_dims(t, n.attrs["axes"], "rfft")
    (name, size), = n.attrs["as"]
    last = n.attrs["axes"][-1]
    if size is not None and t.axis(last).size is None:  # a filter of fixed frequencies
        return em.call(_runtime().rfft, args[0], dims, size, last)
    return em.call(_torch().fft.rfftn, args[0], dim=dims, norm="ortho")


@op(name="rfft", params=(Param("axes", "axes"), Param("as", "sized_axes")),
    doc="the real FFT over the named axes, orthonormal (torch.fft.rfftn): a complex "
        "spectrum, the last axis becoming `as`, of size n // 2 + 1",
    emit=_emit_rfft,
    sizes=lambda ins, t, a: {**ins[0],
                             a["as"][0][0]: ins[0].get(a["axes"][-1], 1) // 2 + 1})
def _rfft(types, cfg):
    t, axes = types[0], tuple(cfg["axes"])
    _spectral_dims(t, axes, "rfft")
    if t.dtype != "float":
        raise OpError(f"rfft takes a real tensor, not {t.dtype} {t}", code="wrong-type")
    if len(cfg["as"]) != 1:
        raise OpError("rfft names one new axis: as = F", arg="as")
    (name, size), = cfg["as"]
    if name in t.names:
        raise OpError(f"the new axis `{name}` is already an axis of {t}", arg="as",
                      code="axis-mismatch")
    last = t.axis(axes[-1])
    if None not in (last.size, size) and last.size // 2 + 1 != size:
        raise OpError(f"{last.name} = {last.size} has {last.size // 2 + 1} frequencies, not "
                      f"{name} = {size}", arg="as")
    half = Axis(name, size if size is not None else
                None if last.size is None else last.size // 2 + 1)
    return replace(t.replace_axis(last.name, half), dtype="complex")


def _emit_irfft(em, n, args):
    dims = _spectral_dims(em.type(n.inputs[0]), n.attrs["axes"], "irfft")
    real = (*n.attrs["axes"][:-1], n.attrs["as"])  # the axes of x the result takes
    return em.call(_torch().fft.irfftn, args[0], s=em.sizes(n.inputs[1], real), dim=dims,
                   norm="ortho")


@op(name="irfft", inputs=2, params=(Param("axes", "axes"), Param("as", "word")),
    doc="undoes rfft: irfft(t, x, H F, as = W) is the real inverse FFT over t's axes H F "
        "(orthonormal, torch.fft.irfftn), of x's H and W sizes; F becomes W",
    emit=_emit_irfft,
    sizes=lambda ins, t, a: {**{k: v for k, v in ins[0].items() if k != a["axes"][-1]},
                             **{x: ins[1].get(x, 1) for x in (*a["axes"][:-1], a["as"])}})
def _irfft(types, cfg):
    t, like = two_tensors(types, "irfft", "the spectrum and the map whose sizes it takes",
                          "irfft(t, x, H F, as = W) brings rfft(x, H W, as = F) back")
    axes = tuple(cfg["axes"])
    _spectral_dims(t, axes, "irfft")
    if t.dtype != "complex":
        raise OpError(f"irfft takes a complex spectrum (rfft's), not {t}", code="wrong-type")
    real = (*axes[:-1], cfg["as"])
    _spectral_dims(like, real, "irfft's sizes")
    out = t.replace_axis(axes[-1], like.axis(cfg["as"]))
    return replace(out, axes=tuple(like.axis(a.name) if a.name in real else a
                                   for a in out.axes), dtype="float")


def _emit_complex(em, n, args):
    t = em.type(n.inputs[0])
    x = args[0]
    if t.names[-1] != n.attrs["axis"]:  # view_as_complex reads pairs from the last axis
        x = em.method(em.method(x, "movedim", t.index(n.attrs["axis"]), -1), "contiguous")
    return em.call(_torch().view_as_complex, x)


@op(name="complex", params=(Param("axis", "word"),),
    doc="a real tensor whose named axis of size 2 holds (real, imaginary) parts, as "
        "complex numbers (torch.view_as_complex), the axis removed: a learned filter",
    emit=_emit_complex)
def _complex(types, cfg):
    t = types[0]
    if cfg["axis"] not in t.names[1:] or t.axis(cfg["axis"]).size != 2:
        raise OpError(f"complex reads (real, imaginary) pairs from an axis of size 2 after "
                      f"the batch; {t} has no axis `{cfg['axis']}` of size 2", arg="axis",
                      code="axis-mismatch")
    if t.dtype != "float":
        raise OpError(f"complex takes a real tensor, not {t}", code="wrong-type")
    return replace(t.without(cfg["axis"]), dtype="complex")
