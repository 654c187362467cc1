"""Operators that rearrange named axes: stack, concat, split, merge, take, shuffle."""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import replace

from ..ir import Axis, TensorType
from . import (
    _F,
    ARITHMETIC,
    OPS,
    Op,
    OpError,
    Param,
    _align_plan,
    _extent,
    _runtime,
    _torch,
    apply_plan,
    broadcast,
    joined_axis,
    op,
    padded_axis,
    two_tensors,
    window_count,
    windowed,
    windows_fit,
)


def _emit_stack(em, n, args):
    if len(args) == 1:  # a new axis of size 1: a view, not a copy
        return em.method(args[0], "unsqueeze", n.attrs["dim"])
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


def _emit_weighted_sum(em, n, args):
    """Σ_i w[..., i, ...] · t_i (passes.unstack_sums): w lined up under the
    stacked layout, then one slice of it per tensor."""
    weights, *tensors = args
    weights = apply_plan(em, weights, n.attrs["plan"])
    total = None
    for i, t in enumerate(tensors):
        w = em.method(weights, "select", n.attrs["dim"], i)
        if i in n.attrs["copies"]:
            t = em.call(_runtime().own_storage, t, w)
        term = em.call(operator.mul, w, t)
        total = term if total is None else em.call(operator.add, total, term)
    return total


OPS["weighted_sum"] = Op(name="weighted_sum", doc="Σ_i w_i · t_i: a sum over a stacked "
                         "axis of a product, with no stack", emit=_emit_weighted_sum)
OPS["sum_of"] = Op(name="sum_of", doc="t_1 + ... + t_K: a sum over a stacked axis, with no "
                   "stack (passes.unstack_sums)",
                   emit=lambda em, n, args: functools.reduce(
                       lambda a, b: em.call(operator.add, a, b), args))


def _emit_stacked_products(em, n, args):
    """stack(t_1 · v[K = 1], ..., t_K · v[K = K]) (passes.unstack_products): v lined up
    under the product's layout, each t_i under its layout without K."""
    v, *tensors = args
    v, dim = apply_plan(em, v, n.attrs["plan"]), n.attrs["dim"]
    parts = _unbound(em, v, dim)
    products = [None] * len(tensors)
    for i in n.attrs["order"]:
        t, v_i = tensors[i], em.call(operator.getitem, parts, i)
        if i in n.attrs["copies"]:
            t = em.call(_runtime().own_storage, t, v_i)
        products[i] = em.call(operator.mul, apply_plan(em, t, n.attrs["plans"][i]), v_i)
    if n.attrs["broadcast"]:
        products = em.call(_torch().broadcast_tensors, *products)
    return em.call(_torch().stack, products, dim=dim)


OPS["stacked_products"] = Op(name="stacked_products", doc="stack(t_1, ..., t_K) * v as the "
                             "stack of the products t_i · v[K = i], with no stack of the t_i",
                             emit=_emit_stacked_products)


def _unflatten(em, x, dim: int, sizes: tuple, axis: str, at_run_time: bool):
    """x's axis `dim` split into `sizes` (-1: the rest). For an axis known only at run
    time, through runtime.split_axis: sizes that do not divide it are an error naming it."""
    if at_run_time:
        return em.call(_runtime().split_axis, x, dim, sizes, axis)
    return em.method(x, "unflatten", dim, sizes)


def _emit_split(em, n, args):
    axis = n.attrs["axis"]
    dim, sizes = em.type(n.inputs[0]).index(axis), tuple(s for _, s in n.attrs["sizes"])
    # known at run time, the new axis without a size takes the rest
    return _unflatten(em, args[0], dim, tuple(-1 if s is None else s for s in sizes), axis,
                      None in sizes)


def _split_sizes(ins, t, a):
    """The run-time size of a new axis without a fixed one: the rest of the split axis."""
    sizes = dict(ins[0])
    fixed = math.prod(s for _, s in a["sizes"] if s is not None)
    for name, size in a["sizes"]:
        sizes[name] = size if size is not None else ins[0].get(a["axis"], 1) // fixed
    return sizes


@op(name="split", params=(Param("axis", "word"), Param("into", "sized_axes")),
    doc="one axis split into several in its place: split(x, C, G c) makes [B, G, c, H, W]; "
        "a new axis named like an int parameter has its size, one other takes the rest",
    emit=_emit_split, sizes=_split_sizes)
def _split(types, cfg):
    t, axis = types[0], cfg["axis"]
    if axis not in t.names[1:]:
        raise OpError(f"split `{axis}`: {t} has no such axis", arg="axis", code="axis-mismatch")
    total, into = t.axis(axis).size, list(cfg["into"])
    unknown = [i for i, (_, size) in enumerate(into) if size is None]
    known_part = math.prod(size for _, size in into if size is not None)
    if len(unknown) > 1:
        raise OpError(f"split {axis} into {' '.join(n for n, _ in into)}: all but one new axis "
                      f"need a size (name them like int parameters)", arg="into")
    for name, size in into:
        if size is not None and size < 1:
            raise OpError(f"split {axis} into {' '.join(n for n, _ in into)}: {name} = {size}; "
                          f"a new axis needs a size of at least 1", arg="into", code="shape")
    if total is None:  # known at run time: the new axis without a size is too
        if not unknown:
            raise OpError(f"split {axis}, whose size is known at run time, into axes of fixed "
                          f"sizes: leave one without a size to take the rest", arg="into")
        cfg["sizes"] = tuple(into)
        i = t.index(axis)
        return TensorType(t.axes[:i] + tuple(Axis(n, s) for n, s in into) + t.axes[i + 1:],
                          t.dtype)
    if unknown:
        into[unknown[0]] = (into[unknown[0]][0], total // known_part)
    if math.prod(size for _, size in into) != total:
        raise OpError(f"{axis} = {total} does not split into "
                      f"{' × '.join(f'{n}={s}' for n, s in into)}", arg="into", code="shape")
    cfg["sizes"] = tuple(into)
    i = t.index(axis)
    return TensorType(t.axes[:i] + tuple(Axis(n, s) for n, s in into) + t.axes[i + 1:], t.dtype)


@op(name="permute", params=(Param("axes", "axes"),),
    doc="the axes in a new order, named: permute(v, B D N) on [B, N, D] puts the features "
        "first for a convolution over N",
    emit=lambda em, n, args: _reorder(em, args[0], tuple(
        em.type(n.inputs[0]).index(a) for a in n.attrs["axes"])))
def _permute(types, cfg):
    t, axes = types[0], tuple(cfg["axes"])
    if sorted(axes) != sorted(t.names):
        raise OpError(f"permute names every axis of {t} once, in the new order; not "
                      f"{' '.join(axes)}", arg="axes", code="axis-mismatch")
    if axes[0] != t.names[0]:
        raise OpError(f"permute {' '.join(axes)}: {_first_axis(t)} stays first", arg="axes",
                      code="axis-mismatch")
    return replace(t, axes=tuple(t.axis(a) for a in axes))


@op(name="merge", params=(Param("axes", "axes"), Param("as", "word")),
    doc="adjacent axes merged into one: merge(y, G c, as = C) undoes split(x, C, G c); "
        "one axis is renamed",
    sizes=lambda ins, t, a: {**ins[0], a["as"]: math.prod(ins[0].get(x, 1)
                                                          for x in a["axes"])},
    emit=lambda em, n, args: _flatten(em, args[0], *_merge_range(em.type(n.inputs[0]),
                                                                  n.attrs["axes"])))
def _merge(types, cfg):
    t, axes = types[0], tuple(cfg["axes"])
    first, last = _merge_range(t, axes)
    if cfg["as"] in t.names and cfg["as"] not in axes:
        raise OpError(f"the merged axis `{cfg['as']}` is already an axis of {t}", arg="as",
                      code="axis-mismatch")
    sizes = [t.axis(a).size for a in axes]
    merged = Axis(cfg["as"], None if None in sizes else math.prod(sizes))
    if len(axes) == 1:  # a rename: the axis keeps its grid
        merged = replace(t.axis(axes[0]), name=cfg["as"])
    return TensorType(t.axes[:first] + (merged,) + t.axes[last + 1:], t.dtype)


def _reorder(em, x, dims: tuple[int, ...]):
    """x.permute(dims); nothing for the order x already has."""
    return x if dims == tuple(range(len(dims))) else em.method(x, "permute", *dims)


def _flatten(em, x, first: int, last: int):
    """x.flatten(first, last); nothing for one axis (a rename)."""
    return x if first == last else em.method(x, "flatten", first, last)


def _merge_range(t: TensorType, axes) -> tuple[int, int]:
    missing = [a for a in axes if a not in t.names]
    if missing or not axes:
        raise OpError(f"merge needs axes of {t}, not {' '.join(axes) or 'none'}", arg="axes",
                      code="axis-mismatch")
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
    t = types[0]
    _dims(t, cfg["axes"])
    if all(t.axis(a).size == 1 for a in cfg["axes"]):  # n − 1 = 0: the std is NaN
        raise OpError(f"standardise over {' '.join(cfg['axes'])} of {t}: one number has no "
                      f"standard deviation", arg="axes", code="shape")
    return t


def _dims(t: TensorType, axes) -> tuple[int, ...]:
    for a in axes:
        if a not in t.per_sample:
            raise OpError(f"`{a}` is not an axis of {t} (after the batch)", arg="axes",
                          code="axis-mismatch")
    return tuple(t.index(a) for a in axes)


def _emit_concat(em, n, args):
    a = n.attrs
    return em.call(_torch().cat, list(args), dim=em.type(n.inputs[0]).index(a["over"][0]))


def _concat_sizes(ins, t, a):
    """The joined axis's run-time size: the sum of the parts'."""
    joined = a.get("as") or a["joins"][0]
    return {**ins[0], joined: sum(sizes.get(axis, 1) for sizes, axis in zip(ins, a["joins"]))}


@op(name="concat", inputs=-1, params=(Param("over", "axes"), Param("as", "word", None)),
    doc="tensors joined along the named axis, whose sizes add up (the other axes agree); "
        "with `as`, along one axis each, named in order, into a new axis: "
        "concat(a, b, over = H W, as = L)",
    emit=_emit_concat, sizes=_concat_sizes)
def _concat(types, cfg):
    over, joined = tuple(cfg["over"]), cfg.get("as")
    if joined is None and len(over) != 1:
        raise OpError("concat joins one axis, or one axis of each tensor into a new one: "
                      "concat(a, b, over = H W, as = L)", arg="over", code="axis-mismatch")
    axes = over * len(types) if joined is None else over  # the axis each tensor joins
    cfg["joins"] = axes
    if len(axes) != len(types):
        raise OpError(f"concat of {len(types)} tensors into `{joined}` names one axis of each, "
                      f"not {len(axes)}", arg="over", code="axis-mismatch")
    first = types[0]
    for t, axis in zip(types, axes):
        if axis not in t.names[1:]:
            raise OpError(f"concat over `{axis}`: {t} has no such axis (after the batch)",
                          arg="over", code="axis-mismatch")
        if t.without(axis).names != first.without(axes[0]).names or \
                t.index(axis) != first.index(axes[0]):
            raise OpError(f"concat needs the same axes besides `{axis}`, in the same places, "
                          f"not {first} and {t}", code="axis-mismatch")
    parts = tuple(t.axis(axis) for t, axis in zip(types, axes))
    sizes = [p.size for p in parts]
    total = None if None in sizes else sum(sizes)
    if joined is None:
        return first.replace_axis(axes[0], Axis(axes[0], total))
    if joined in first.names:
        raise OpError(f"the new axis `{joined}` is already an axis of {first}", arg="as",
                      code="axis-mismatch")
    return first.replace_axis(axes[0], Axis(joined, total, parts=parts))


def _emit_part(em, n, args):
    """The slice of the joined axis that came from one of its parts: its offset is the
    sum of the earlier parts' sizes, fixed or read off the tensors concat joined."""
    a = n.attrs
    t = em.type(n.inputs[0])
    joined = t.axis(a["axis"])
    names = [p.name for p in joined.parts]
    i = names.index(a["name"])
    sizes = [p.size for p in joined.parts[:i + 1]]
    if None in sizes:
        concat = _joined_by(em.ir, n.inputs[0], a["axis"])
        sizes = [p.size if p.size is not None else em.sizes(src, (p.name,))[0]
                 for p, src in zip(joined.parts[:i + 1], concat.inputs)]
    offset = 0
    for size in sizes[:-1]:
        both_fixed = isinstance(offset, int) and isinstance(size, int)
        offset = offset + size if both_fixed else size if offset == 0 else \
            em.call(operator.add, offset, size)
    return em.method(args[0], "narrow", t.index(a["axis"]), offset, sizes[-1])


def _joined_by(ir, name: str, axis: str):
    """The concat node upstream of `name` that made `axis`."""
    todo = [name]
    while todo:
        node = ir.node(todo.pop())
        if node.op == "concat" and node.attrs.get("as") == axis:
            return node
        todo += node.inputs
    raise AssertionError(f"no concat made axis {axis}")  # the checker guarantees one


@op(name="part", params=(Param("axis", "word"), Param("name", "word")),
    doc="the part of an axis joined by concat(..., as = L) that came from one of the joined "
        "axes, under that axis's name again: part(y, L, H)",
    emit=_emit_part)
def _part(types, cfg):
    t, axis, name = types[0], cfg["axis"], cfg["name"]
    _named_axis(t, axis, "part of")
    joined = t.axis(axis)
    names = [p.name for p in joined.parts]
    if name not in names:
        made = f"joined from {' '.join(names)}" if names else "not joined by concat(..., as = )"
        raise OpError(f"`{axis}` of {t} is {made}: it has no part `{name}`", arg="name",
                      code="axis-mismatch")
    if name in t.names:
        raise OpError(f"`{name}` is already an axis of {t}", arg="name", code="axis-mismatch")
    return t.replace_axis(axis, joined.parts[names.index(name)])


def _first_axis(t: TensorType) -> str:
    """What axis 0 is, which no structural operator moves: the batch, or the rows of a
    position table, which E2 and E4 look up by offset."""
    if t.batched:
        return f"the batch axis of {t} (samples never mix)"
    return f"the rows axis of the position table {t} (E2 and E4 look them up by offset)"


def _named_axis(t: TensorType, axis: str, what: str, arg: str = "axis") -> int:
    """The index of a named axis other than the batch axis."""
    if axis == t.names[0]:
        raise OpError(f"{what} `{axis}`: {_first_axis(t)} stays as it is", arg=arg,
                      code="axis-mismatch")
    if axis not in t.names:
        raise OpError(f"{what} `{axis}`: {t} has no such axis", arg=arg, code="axis-mismatch")
    return t.index(axis)


def _unbound(em, x, dim: int):
    """x.unbind(dim), shared by every reader of several indices of one axis, so that the
    backward builds x's gradient once (a stack) instead of a zero-filled full-size tensor
    per select plus their sum (shuffle's two halves: fwd+bwd 1.12x → 1.00x of the
    hand-written module)."""
    parts = next((u for u in x.users if u.op == "call_method"
                  and u.target == "unbind" and u.args == (x, dim)), None)
    return em.method(x, "unbind", dim) if parts is None else parts


def _emit_take(em, n, args):
    t, axis, index = em.type(n.inputs[0]), n.attrs["axis"], n.attrs["index"]
    dim = t.index(axis)
    sized = t.axis(axis).size is not None  # else the index is checked at run time
    takes = [u for u in em.ir.readers(n.inputs[0])
             if em.ir.node(u).op == "take" and em.ir.node(u).attrs["axis"] == axis]
    if len(takes) < 2:
        if not sized:
            return em.call(_runtime().take, args[0], dim, index, axis)
        if t.axis(axis).size == 1:  # its backward a view too, not a zero-filled copy
            return em.method(args[0], "squeeze", dim)
        return em.method(args[0], "select", dim, index)
    parts = _unbound(em, args[0], dim)
    if not sized:
        return em.call(_runtime().take_part, parts, index, axis)
    return em.call(operator.getitem, parts, index)


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
    t, axis = em.type(n.inputs[0]), n.attrs["axis"]
    i = t.index(axis)
    x = _unflatten(em, args[0], i, (n.attrs["groups"], -1), axis, t.axis(axis).size is None)
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


def _dot_emit(em, n, args):
    a, b = (em.type(i) for i in n.inputs)
    over = tuple(n.attrs["over"])
    if _matrix_times_map(a, b, over):  # [1, K, C] · [B, C, ...]: a 1-wide conv1d, the
        rest = b.names[2:]             # fastest forward and backward here (benchmarks/)
        kernel = em.method(em.method(args[0], "squeeze", 0), "unsqueeze", -1)  # [K, C, 1]
        y = em.call(_F().conv1d, em.method(args[1], "flatten", 2) if len(rest) != 1
                    else args[1], kernel)
        return y if len(rest) == 1 else em.method(y, "unflatten", 2,
                                                    em.sizes(n.inputs[1], rest))
    order = _batched_matmul(a, b, over, n.type)
    if order is not None:  # [..., I, K] @ [..., K, J]: no copy of the product, and its
        right = args[1] if order == tuple(range(len(order))) else \
            em.method(args[1], "permute", *order)  # backward is two matmuls
        return em.call(_runtime().batched_matmul, args[0], right)
    letters = {name: chr(ord("a") + i) for i, name in
               enumerate(dict.fromkeys(a.names + b.names))}
    subscripts = ",".join("".join(letters[x] for x in t.names) for t in (a, b))
    out = "".join(letters[x] for x in n.type.names)
    return em.call(_torch().einsum, f"{subscripts}->{out}", args[0], args[1])


def _batched_matmul(a: TensorType, b: TensorType, over: tuple[str, ...],
                    out: TensorType) -> tuple[int, ...] | None:
    """How to permute b so that a @ b is the contraction, or None: a is [..., I, K] with K
    the one summed axis, b has the same leading axes, K and one more, J, and the result is
    [..., I, J] (VOLO's weights times its windows). einsum would copy its result into
    place; torch.matmul broadcasts the leading axes and writes [..., I, J] directly."""
    if len(over) != 1 or len(a.axes) < 3 or a.names[-1] != over[0]:
        return None
    lead, i = a.names[:-2], a.names[-2]
    j = [x for x in b.names if x not in a.names]
    if len(j) != 1 or i in b.names or len(b.axes) != len(a.axes) or \
            out.names != (*lead, i, j[0]):
        return None
    return tuple(b.names.index(x) for x in (*lead, over[0], j[0]))


def _matrix_times_map(a: TensorType, b: TensorType, over: tuple[str, ...]) -> bool:
    """a is [batch = 1, K, C] and b [B, C, ...], contracted over C alone (CSRA's classifier
    over a map): einsum would copy the map, and a matmul broadcasting a's rows over the
    batch is slow backward."""
    return (len(over) == 1 and len(a.axes) == 3 and a.axes[0].size == 1
            and a.names[2] == over[0] and len(b.axes) >= 3 and b.names[1] == over[0]
            and not set(a.names[1:2]) & set(b.names))


def _dot_flops(ins, out, a, bindings):
    summed = math.prod(ins[0].axis(x).size or bindings[x] for x in a["over"])
    # a sum over one element is an elementwise product, which (as every pointwise op, and as
    # torch's flop counter on the einsum it becomes) counts nothing
    return 2 * out.numel(bindings) * summed if summed > 1 else 0


@op(name="dot", inputs=2, params=(Param("over", "axes"),),
    doc="the sum over the named axes of the product of two tensors, their other axes "
        "joined by name, as one contraction (torch.einsum; torch.matmul for a batched "
        "matrix product): on [B, K, C] and [B, C, H, W], dot(m, x, over = C) is "
        "[B, K, H, W]",
    emit=_dot_emit, flops=_dot_flops)
def _dot(types, cfg):
    a, b = types
    over = tuple(cfg["over"])
    for x in over:
        if x not in a.names[1:] or x not in b.names[1:]:
            raise OpError(f"dot sums over `{x}`, an axis both tensors need (after the "
                          f"batch): {a} and {b}", arg="over", code="axis-mismatch")
    if a.names[0] != b.names[0]:
        raise OpError(f"dot needs one batch axis: {a} and {b}", code="axis-mismatch")
    axes = []
    for axis in a.axes + tuple(x for x in b.axes if x.name not in a.names):
        mine, theirs = a.axis(axis.name) if axis.name in a.names else axis, \
            b.axis(axis.name) if axis.name in b.names else axis
        joined = joined_axis(mine, theirs)
        if axis.name not in over:
            axes.append(joined)
    return TensorType(tuple(axes))


@op(name="shift", params=(Param("axes", "axes"), Param("by", "int"),
                          Param("edge", "word", "keep")),
    doc="the tensor moved `by` places along each named axis, out[i] = t[i − by]; the places "
        "left at the edge keep their own values (edge = keep, S²-MLP's), are 0 (edge = "
        "zero), or are the ones moved out at the other end (edge = wrap, torch.roll: Swin's "
        "cyclic shift)",
    emit=lambda em, n, args: args[0] if n.attrs["by"] == 0 else em.call(
        _runtime().shift, args[0], tuple(em.type(n.inputs[0]).index(a)
                                         for a in n.attrs["axes"]), n.attrs["by"],
        n.attrs["edge"]))
def _shift(types, cfg):
    t, axes = types[0], tuple(cfg["axes"])
    if not axes:  # (an axis named twice is the checker's duplicate-axis)
        raise OpError("shift names the axes it moves", arg="axes")
    for a in axes:
        _named_axis(t, a, "shift", "axes")
    if cfg["edge"] not in ("keep", "zero", "wrap"):
        raise OpError(f"shift's edge is keep, zero or wrap, not {cfg['edge']}", arg="edge")
    return t


def _padded(size: int | None, multiple: int) -> int | None:
    return None if size is None else -(-size // multiple) * multiple


def _pad_config(t: TensorType, cfg, what: str) -> tuple[int, ...]:
    """The named axes (after the batch) and a positive multiple."""
    axes = tuple(cfg["axes"])
    if not axes:
        raise OpError(f"{what} names the axes it pads", arg="axes")
    if cfg["multiple"] < 1:
        raise OpError(f"{what} pads to a multiple of a positive integer, not "
                      f"{cfg['multiple']}", arg="multiple")
    return tuple(_named_axis(t, a, what, "axes") for a in axes)


def _padded_sizes(ins, t, a) -> dict:
    return {**ins[0], **{x: _padded(ins[0].get(x, 1), a["multiple"]) for x in a["axes"]}}


def _padding(function: str) -> dict:
    """What `pad` and `padded` share: their settings, their run-time sizes, and a lowering
    to the runtime function given the named axes' positions and the multiple."""
    return dict(params=(Param("axes", "axes"), Param("multiple", "int")), sizes=_padded_sizes,
                emit=lambda em, n, args: em.call(getattr(_runtime(), function), args[0], tuple(
                    em.type(n.inputs[0]).index(a) for a in n.attrs["axes"]),
                    n.attrs["multiple"]))


@op(name="pad", **_padding("pad_end"),
    doc="zeros appended at the end of each named axis up to its next multiple (F.pad); the "
        "axes keep their names, their sizes grow")
def _pad(types, cfg):
    t = types[0]
    dims = _pad_config(t, cfg, "pad")
    if t.dtype != "float":
        raise OpError(f"pad appends zeros to a real tensor, not {t}", code="wrong-type",
                      hint="padded(x, ...) marks the places pad appends")
    return replace(t, axes=tuple(padded_axis(a, cfg["multiple"]) if i in dims else a
                                 for i, a in enumerate(t.axes)))


@op(name="padded", **_padding("padding_mask"),
    doc="where pad(x, axes, multiple) appends: a bool tensor [B, the named axes padded], "
        "true at the appended places")
def _padded_mask(types, cfg):
    t = types[0]
    dims = _pad_config(t, cfg, "padded")
    return TensorType((t.axes[0], *(padded_axis(t.axes[d], cfg["multiple"]) for d in dims)),
                      "bool")


@op(name="crop", inputs=2, params=(Param("axes", "axes"),),
    doc="crop(t, x, H W): t's first places along the named axes, as many as x has at run "
        "time (undoes pad)",
    emit=lambda em, n, args: em.call(_runtime().crop, args[0], tuple(
        em.type(n.inputs[0]).index(a) for a in n.attrs["axes"]),
        em.sizes(n.inputs[1], n.attrs["axes"])),
    sizes=lambda ins, t, a: {**ins[0], **{x: ins[1].get(x, 1) for x in a["axes"]}})
def _crop(types, cfg):
    t, like = two_tensors(types, "crop", "the tensor to crop and the one whose sizes it takes",
                          "crop(t, x, H W) cuts t's H and W to x's sizes")
    axes = tuple(cfg["axes"])
    for a in axes:
        _named_axis(t, a, "crop", "axes")
        _named_axis(like, a, "crop", "axes")
        if t.axis(a).step != like.axis(a).step:
            raise OpError(f"crop takes {a}'s size from a tensor on another grid of it",
                          code="axis-mismatch", axis=a)
    return TensorType(tuple(like.axis(a.name) if a.name in axes else a for a in t.axes),
                      t.dtype)


def _grid_dims(t: TensorType, axes, what: str) -> tuple[int, ...]:
    """The positions of the grid axes a window operator runs over: 1 or 2 of them, after
    the batch."""
    if not 1 <= len(axes) <= 2:
        raise OpError(f"{what} runs over one or two axes, not {' '.join(axes) or 'none'}",
                      arg="axes")
    return tuple(_named_axis(t, a, what, "axes") for a in axes)


def _window_config(cfg, what: str) -> tuple[int, int, int]:
    k, s, p = cfg["kernel"], cfg["stride"], cfg["padding"]
    if k < 1 or s < 1 or p < 0:
        raise OpError(f"{what} needs a positive kernel and stride and a padding of 0 or more, "
                      f"not kernel {k}, stride {s}, padding {p}", arg="kernel")
    return k, s, p


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # nn.Conv2d's padding_mode
# The positions a border padded by p needs (F.pad): a reflection mirrors p positions past
# the edge one, a wrap takes p from the other end; zeros and copies of the edge need none.
BORDER_NEEDS = {"reflect": lambda p: p + 1, "circular": lambda p: p}


def _emit_patches(em, n, x):
    a, t = n.attrs, em.type(n.inputs[0])
    border = BORDER_NEEDS.get(a["padding_mode"], lambda p: 0)(a["padding"])
    x = windows_fit(em, n, x, a["axes"], a["kernel"], a["padding"], at_least=border)
    return em.call(_runtime().patches, x, tuple(t.index(axis) for axis in a["axes"]),
                   a["kernel"], a["stride"], a["padding"], a["padding_mode"])


@op(name="patches", params=(Param("axes", "axes"), Param("kernel", "int"),
                            Param("stride", "int", 1), Param("padding", "int", 0),
                            Param("as", "word"),
                            Param("padding_mode", "word", "zeros", PADDING_MODES)),
    doc="the k × k windows around every stride-th position (F.unfold; the border padded "
        "with zeros, or reflected, replicated or wrapped around): a new axis of the k^n "
        "kernel positions, row-major, before the first grid axis; the grid axes become the "
        "windows' grid",
    emit=lambda em, n, args: _emit_patches(em, n, args[0]),
    sizes=lambda ins, t, a: {**ins[0], a["as"]: a["kernel"] ** len(a["axes"]),
                             **{x: window_count(ins[0].get(x, 1), a["kernel"], a["stride"],
                                                 a["padding"]) for x in a["axes"]}})
def _patches(types, cfg):
    t = types[0]
    dims = _grid_dims(t, tuple(cfg["axes"]), "patches")
    k, s, p = _window_config(cfg, "patches")
    if cfg["as"] in t.names:
        raise OpError(f"the new axis `{cfg['as']}` is already an axis of {t}", arg="as",
                      code="axis-mismatch")
    grid = {t.names[d]: windowed(t.axes[d], k, s, p) for d in dims}
    axes = tuple(grid.get(a.name, a) for a in t.axes)
    first = min(dims)
    return TensorType(axes[:first] + (Axis(cfg["as"], k ** len(dims)),) + axes[first:],
                      t.dtype)


@op(name="fold", inputs=2, params=(Param("axis", "word"), Param("axes", "axes"),
                                   Param("kernel", "int"), Param("stride", "int", 1),
                                   Param("padding", "int", 0)),
    doc="undoes patches by summing: fold(t, x, K, H W, kernel = k, ...) adds each window's "
        "k^n values (the axis K) at their positions in a map of x's H W sizes (F.fold)",
    emit=lambda em, n, args: em.call(
        _runtime().fold, args[0], em.type(n.inputs[0]).index(n.attrs["axis"]),
        tuple(em.type(n.inputs[0]).index(a) for a in n.attrs["axes"]),
        em.sizes(n.inputs[1], n.attrs["axes"]), n.attrs["kernel"], n.attrs["stride"],
        n.attrs["padding"]),
    sizes=lambda ins, t, a: {**{x: s for x, s in ins[0].items() if x != a["axis"]},
                             **{x: ins[1].get(x, 1) for x in a["axes"]}})
def _fold(types, cfg):
    t, like = two_tensors(types, "fold", "the windows and the map whose sizes it takes",
                          "fold(t, x, K, H W, kernel = k) sums t's windows into x's grid")
    axes = tuple(cfg["axes"])
    _grid_dims(t, axes, "fold")
    _grid_dims(like, axes, "fold")
    k, s, p = _window_config(cfg, "fold")
    window = t.axis(cfg["axis"]) if cfg["axis"] in t.names[1:] else None
    if window is None or cfg["axis"] in axes:
        raise OpError(f"fold sums the window axis `{cfg['axis']}`, which {t} must have "
                      f"besides {' '.join(axes)}", arg="axis", code="axis-mismatch")
    if window.size not in (None, k ** len(axes)):
        raise OpError(f"{cfg['axis']} = {window.size} is not a {k}^{len(axes)} window",
                      arg="axis", code="shape")
    for a in axes:
        _fold_grid(t.axis(a), windowed(like.axis(a), k, s, p), like)
    return TensorType(tuple(like.axis(a.name) if a.name in axes else a for a in t.axes
                            if a.name != cfg["axis"]), t.dtype)


def _fold_grid(got: Axis, cut: Axis, like: TensorType) -> None:
    """fold sums windows back into `like`'s grid: along each axis, t must hold the windows
    that patches with the same kernel, stride and padding cuts from that grid."""
    if got.size is not None and cut.size is not None:
        differ = got.size != cut.size
    elif got.size is None and cut.size is None:  # sized at run time: compare how they were cut
        differ = (got.windows, got.step) != (cut.windows, cut.step)
    else:  # one side fixed by a parameter, the other at run time: not decidable here
        differ = False
    if differ:
        held = got.size if got.size is not None else _extent(got)
        wanted = cut.size if cut.size is not None else _extent(cut)
        raise OpError(f"fold puts its windows back into {like}: along {got.name} they would "
                      f"be {wanted}, but the tensor holds {held}", code="axis-mismatch",
                      hint="give fold the kernel, stride and padding patches cut them with")


@op(name="coords", params=(Param("axes", "axes"), Param("as", "word"),
                           Param("corners", "bool", False)),
    doc="each position's coordinates normalised to [-1, 1] along the named axes, one index "
        "of the new axis `as` per named axis, in the order named: [1, as, grid axes]",
    emit=lambda em, n, args: em.call(
        _runtime().coords, args[0], tuple(em.type(n.inputs[0]).index(a)
                                          for a in n.attrs["axes"]), n.attrs["corners"]),
    sizes=lambda ins, t, a: {a["as"]: len(a["axes"]), **{x: ins[0].get(x, 1)
                                                        for x in a["axes"]}})
def _coords(types, cfg):
    t = types[0]
    axes = tuple(cfg["axes"])
    dims = sorted(_named_axis(t, a, "coords over", "axes") for a in axes)
    if cfg["as"] in t.names:
        raise OpError(f"the new axis `{cfg['as']}` is already an axis of {t}", arg="as",
                      code="axis-mismatch")
    if t.dtype != "float":
        raise OpError(f"coords takes its dtype from a real tensor, not {t}", code="wrong-type")
    return TensorType((Axis(t.names[0], 1), Axis(cfg["as"], len(axes)),
                       *(t.axes[d] for d in dims)), t.dtype)


OUTER = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _outer_type(a: TensorType, b: TensorType) -> TensorType:
    """a's axes, then b's others: the axes both have line up by name (a size 1
    stretching), each one's own axes are all kept."""
    joined = tuple(joined_axis(x, b.axis(x.name)) if x.name in b.names else x for x in a.axes)
    return TensorType(joined + tuple(x for x in b.axes if x.name not in a.names), a.dtype)


def _emit_outer(em, n, args):
    out = em.type(n.name)
    a, b = (apply_plan(em, x, _align_plan(em.type(i), out)) for x, i in zip(args, n.inputs))
    return em.call(ARITHMETIC[OUTER[n.attrs["op"]]], a, b)


@op(name="outer", inputs=2, params=(Param("op", "word", "mul", tuple(OUTER)),),
    doc="two tensors combined at every pair of their indices (+ − × ÷): the axes both "
        "have line up by name, every other axis of each is kept",
    emit=_emit_outer,
    sizes=lambda ins, t, a: {x: max(ins[0].get(x, 1), ins[1].get(x, 1))
                             for x in (*ins[0], *ins[1])})
def _outer(types, cfg):
    a, b = two_tensors(types, "outer", "combined at every pair of indices",
                       "outer(a, b, op = sub) is a − b for every pair")
    if a.names[0] != b.names[0]:
        raise OpError(f"outer needs one batch axis: {a} and {b}", code="axis-mismatch")
    if a.dtype != b.dtype:
        raise OpError(f"outer combines tensors of one kind, not {a} and {b}", code="wrong-type")
    return _outer_type(a, b)


def _emit_where(em, n, args):
    out = em.type(n.name)
    cond, a, b = args
    a, b = (apply_plan(em, x, _align_plan(em.type(i), out)) for x, i in zip((a, b), n.inputs[1:]))
    # the condition may be an optional input left out (None): it is aligned at run time
    return em.call(_runtime().choose, cond, a, b, _align_plan(em.type(n.inputs[0]), out))


@op(name="where", inputs=3,
    doc="a where the bool tensor marks true, b elsewhere: the three line up by name",
    emit=_emit_where,
    sizes=lambda ins, t, a: {x: max(s.get(x, 1) for s in ins) for d in ins for x in d})
def _where(types, cfg):
    if len(types) != 3:
        raise OpError(f"where takes three tensors, a condition and the two to choose from, "
                      f"not {len(types)}", code="wrong-arity",
                      hint="where(glob, global_rows, local_rows)")
    cond, a, b = types
    if cond.dtype != "bool":
        raise OpError(f"where's first tensor says where to take a, a bool input, not {cond}",
                      code="wrong-type")
    if a.dtype != b.dtype or a.dtype == "bool":
        raise OpError(f"where chooses between two tensors of one kind, not {a} and {b}",
                      code="wrong-type")
    out = broadcast(a, b)[0]
    for x in cond.axes:
        if x.name not in out.names and x.size != 1:
            raise OpError(f"the condition {cond} has axis `{x.name}`, which {out} lacks",
                          code="axis-mismatch")
    joined = {x.name: joined_axis(out.axis(x.name), x) for x in cond.axes if x.name in out.names}
    return TensorType(tuple(joined.get(x.name, x) for x in out.axes), a.dtype)
