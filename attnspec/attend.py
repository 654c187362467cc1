"""The formulation's own operators (terms, ranges, normalisers, aggregation, the fused
SDPA kernel), registered in the same table as every other operator (ops.OPS).

Inside the attention core a weight tensor is laid out [B, M, Q, K]: batch, heads, query
elements, key elements. Queries, keys and values keep their spec layout in the IR;
the lowering below moves them to [B, M, N, d] ("heads layout") and back.
"""

from __future__ import annotations

import math
import operator

from .ir import Node, TensorType, axis_size
from .ops import _F, OPS, Op, OpError, Param, _torch

# ---------------------------------------------------------------------------- layouts


def to_heads(em, x, t: TensorType, tokens: tuple[str, ...], features: tuple[str, ...],
             heads: int, keys_first: bool = False):
    """[B, ..., F, ...] → [B, M, N, F/M] (or [B, M, F/M, N] with keys_first, as kᵀ).
    N flattens the token axes, F the feature axes."""
    names, k = t.names, len(tokens)
    if names == (names[0], *features, *tokens) and len(features) == 1:  # channels first
        if k != 1:
            x = em.method(x, "flatten", 2)
        x = em.method(x, "unsqueeze", 1) if heads == 1 else em.method(
            x, "unflatten", 1, (heads, _head_width(t, features, heads)))
        return x if keys_first else em.method(x, "transpose", -1, -2)
    if names != (names[0], *tokens, *features):  # any other order: make it channels last
        x = em.method(x, "permute", 0, *(names.index(a) for a in (*tokens, *features)))
    if k != 1:
        x = em.method(x, "flatten", 1, k)
    if len(features) != 1:
        x = em.method(x, "flatten", 2)
    x = em.method(x, "unsqueeze", 1) if heads == 1 else em.method(
        em.method(x, "unflatten", -1, (heads, _head_width(t, features, heads))),
        "transpose", 1, 2)
    return em.method(x, "transpose", -1, -2) if keys_first else x


def from_heads(em, y, out: TensorType, tokens: tuple[str, ...], features: tuple[str, ...],
               heads: int, sizes_of):
    """[B, M, N, d] → the layout `out` (query tokens and features); the run-time sizes of
    the token axes come from the tensor `sizes_of`."""
    names, k = out.names, len(tokens)
    if names == (names[0], *features, *tokens) and len(features) == 1:
        y = em.method(y, "transpose", -1, -2)  # [B, M, d, N]
        y = em.method(y, "squeeze", 1) if heads == 1 else em.method(y, "flatten", 1, 2)
        return y if k == 1 else em.method(y, "unflatten", 2, em.sizes(sizes_of, tokens))
    y = em.method(y, "squeeze", 1) if heads == 1 else em.method(
        em.method(y, "transpose", 1, 2), "flatten", 2)  # [B, N, F]
    if len(features) != 1:
        y = em.method(y, "unflatten", -1, _sizes(em, out, features, sizes_of))
    if k != 1:
        y = em.method(y, "unflatten", 1, em.sizes(sizes_of, tokens))
    current = (names[0], *tokens, *features)
    if names != current:
        y = em.method(y, "permute", *(current.index(a) for a in names))
    return y


def _head_width(t: TensorType, features: tuple[str, ...], heads: int) -> int:
    """A head's share of the flattened features; -1 (torch infers it) when a feature axis
    is sized at run time (features C H of [B, C, H, W] over positions(W))."""
    total = width(t, features)
    return -1 if total is None else total // heads


def width(t: TensorType, features: tuple[str, ...], bindings: dict | None = None) -> int | None:
    """The size of the flattened feature axes (None if one is only known at run time)."""
    sizes = [axis_size(t.axis(f), bindings) if bindings is not None else t.axis(f).size
             for f in features]
    return None if None in sizes else math.prod(sizes)


def _sizes(em, t: TensorType, axes: tuple[str, ...], sizes_of) -> tuple:
    """Each axis's fixed size, or its run-time size read off the tensor `sizes_of`."""
    return tuple(t.axis(a).size if t.axis(a).size is not None else em.sizes(sizes_of, (a,))[0]
                 for a in axes)


def _register(name: str, doc: str, emit, flops=None, kind: str = "core", sizes=None) -> None:
    OPS[name] = Op(name=name, doc=doc, emit=emit, flops=flops, kind=kind, sizes=sizes)


def key_axis(q_tokens, k_tokens) -> str:
    """The name of the logits' key axis: primed when the keys index the queries' axes."""
    name = "·".join(k_tokens)
    return name + "'" if tuple(q_tokens) == tuple(k_tokens) else name


def _with_keys(queries: dict, keys: dict, a) -> dict:
    """Run-time sizes of logits [B, M, Q, K]: the queries', and the keys' (pooled keys
    have their own) under the key axis's name and as `k:AXIS` for each axis."""
    out = {**queries, key_axis(a["q_tokens"], a["k_tokens"]):
           math.prod(keys.get(t, 1) for t in a["k_tokens"])}
    out.update({f"k:{t}": keys.get(t, 1) for t in a["k_tokens"]})
    return out


def kv_heads(a) -> int:
    """The key and value heads: `heads M, kv = G` gives G, shared by M / G query heads."""
    return a.get("kv") or a["heads"]


def grouped_matmul(em, a, b, heads_a: int, heads_b: int):
    """a @ b per head, when one side has M heads and the other G (M / G heads of the one
    share each head of the other: `kv = G`). G = 1 and G = M broadcast as they are; other
    G split the M heads into [G, M / G] (views, no copies)."""
    few, many = sorted((heads_a, heads_b))
    if few in (1, many):
        return em.call(_torch().matmul, a, b)

    def grouped(t, heads):  # [B, M, ...] → [B, G, M/G, ...]; [B, G, ...] → [B, G, 1, ...]
        return em.method(t, "unflatten", 1, (few, many // few)) if heads == many else \
            em.method(t, "unsqueeze", 2)

    product = em.call(_torch().matmul, grouped(a, heads_a), grouped(b, heads_b))
    return em.method(product, "flatten", 1, 2)


# ---------------------------------------------------------------------------- terms


def _emit_e1(em, n: Node, args):
    a = n.attrs
    q = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    if a.get("factor", 1.0) != 1.0:  # passes.fold_content_scales: the scale on the queries
        q = em.call(operator.mul, q, a["factor"])
    k = to_heads(em, args[1], em.type(n.inputs[1]), a["k_tokens"], a["k_feature"], kv_heads(a),
                 keys_first=True)
    return grouped_matmul(em, q, k, a["heads"], kv_heads(a))


def _e1_flops(ins, out, a, b):
    return 2 * out.numel(b) * width(ins[0], a["q_feature"], b) // a["heads"]


_register("E1", "query content × key content: (W_q x_q)·(W_k x_k), per head",
          _emit_e1, _e1_flops, sizes=lambda ins, t, a: _with_keys(ins[0], ins[1], a))


def _emit_e1_sum(em, n: Node, args):
    """Every query plus every key, per head: [B, M, Q, K, d] (an additive score's input)."""
    a = n.attrs
    q = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    k = to_heads(em, args[1], em.type(n.inputs[1]), a["k_tokens"], a["k_feature"], a["heads"])
    return em.call(operator.add, em.method(q, "unsqueeze", 3), em.method(k, "unsqueeze", 2))


_register("E1_sum", "query content + key content for every pair, per head (an additive "
          "score's input)", _emit_e1_sum, sizes=lambda ins, t, a: _with_keys(ins[0], ins[1], a))
_register("E1_scores", "one score per pair and head: the additive score's last axis of 1 "
          "dropped", lambda em, n, args: em.method(args[0], "squeeze", -1))


def _query_steps(a) -> dict:
    """`q_steps` for the runtime, only where the queries are not every position."""
    steps = a.get("q_steps") or ()
    return {"q_steps": steps} if set(steps) - {1} else {}


def _pair_sizes(em, n: Node) -> tuple:
    """A per-axis encoding's query and key sizes, and where its keys start: the whole map's
    pairs, or under haloed blocks (passes.fuse_halo) one block's queries against its
    window, which starts `halo` positions before the block."""
    a = n.attrs
    if a.get("block"):
        size, halo = a["block"]
        count = len(a["q_tokens"])
        return (size,) * count, (size + 2 * halo,) * count, {"k_origin": -halo}
    return (em.sizes(n.inputs[0], a["q_tokens"]), em.sizes(n.inputs[1], a["k_tokens"]),
            _query_steps(a))


def _emit_sinusoid(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q_sizes, k_sizes, extra = _pair_sizes(em, n)
    return em.call(runtime.sinusoid_pairs, args[0], q_sizes, k_sizes, a["steps"], a["dim"],
                   a["wave"], a["magnitude"], **extra)


def _sinusoid_sizes(ins, t, a):
    pairs = sum(ins[0].get(q, 1) * ins[1].get(k, 1) for q, k in zip(a["q_tokens"], a["k_tokens"]))
    return {"pairs": pairs}


_register("sinusoid", "R_{q−k}: sines and cosines of each axis's offset between a query and a "
          "key, one row per (axis, query, key) on that axis", _emit_sinusoid,
          sizes=_sinusoid_sizes)


def _emit_distance(em, n: Node, args):
    from . import runtime

    q_sizes, k_sizes, extra = _pair_sizes(em, n)
    return em.call(runtime.distance_pairs, args[0], q_sizes, k_sizes, n.attrs["steps"], **extra)


_register("distance", "|q − k| on each axis, one row per (axis, query, key) on that axis",
          _emit_distance, sizes=_sinusoid_sizes)


def _emit_axis_offsets(em, n: Node, args):
    from . import runtime

    q_sizes, k_sizes, extra = _pair_sizes(em, n)
    return em.call(runtime.axis_offset_pairs, args[0], q_sizes, k_sizes, n.attrs["steps"],
                   n.attrs["radii"], **extra)


_register("axis_offsets", "each axis's offset k − q as a one-hot of its own within R, one row "
          "per (axis, query, key) on that axis", _emit_axis_offsets, sizes=_sinusoid_sizes)


def _emit_e2(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    return em.call(runtime.relative_logits, q, _scaled(em, args[1], a),
                   em.sizes(a["sizes_of"], a["q_tokens"]), em.sizes(n.inputs[2], a["k_tokens"]))


def _scaled(em, table, a):
    """A position table times the factor a pass folded into its term (passes.py)."""
    return table if a.get("factor", 1.0) == 1.0 else em.call(operator.mul, table, a["factor"])


def _e2_flops(ins, out, a, b):
    d = width(ins[0], a["q_feature"], b) // a["heads"]
    if d == 1:  # a product with nothing to sum: torch's einsum multiplies elementwise
        return 0
    queries = out.numel(b) // axis_size(out.axes[-1], b)  # B·M·Q
    return sum(2 * queries * b[f"k:{t}"] * d for t in a["k_tokens"])


_register("E2", "query content × relative position: (W_q x_q)·(V^R R_{q−k}), per head",
          _emit_e2, _e2_flops, sizes=lambda ins, t, a: _with_keys(ins[0], ins[2], a))


def _per_head_columns(em, n: Node, table, heads: int):
    """A position table [rows, G] of one score per group of M / G heads → [rows, M]
    (AFT-conv's kernel per head group); width 1 and M stay as they are."""
    g = em.type(n.inputs[0]).axes[-1].size
    return table if g in (1, heads) else em.method(table, "repeat_interleave", heads // g, 1)


def _emit_e4(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q_sizes, k_sizes = em.sizes(n.inputs[1], a["q_tokens"]), em.sizes(n.inputs[2], a["k_tokens"])
    origin = {}
    if a.get("block"):  # one block's pairs (passes.fuse_blocked): q − k is all it reads
        q_sizes = k_sizes = (a["block"],) * len(a["q_tokens"])
    elif a.get("halo_block"):  # a haloed block against its window (passes.fuse_halo)
        size, halo = a["halo_block"]
        q_sizes, k_sizes = (size,) * len(q_sizes), (size + 2 * halo,) * len(k_sizes)
        origin = {"k_origin": -halo}
    table = _per_head_columns(em, n, _scaled(em, args[0], a), a["heads"])
    if a.get("flip"):  # offsets(R, of = query): row i is q − k's; over symmetric radii the
        table = em.method(table, "flip", 0)  # k − q order is that order reversed
    if a.get("pairs") is not None:
        return em.call(runtime.pair_bias, table, q_sizes, k_sizes, *a["pairs"])
    if a.get("radii") is not None or a.get("sized"):  # sized: radii n − 1 at run time
        return em.call(runtime.offset_bias, table, q_sizes, k_sizes, a["steps"], a["radii"],
                       **origin)
    return em.call(runtime.relative_bias, table, q_sizes, k_sizes)


def _emit_e2_bilinear(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    return em.call(runtime.bilinear_weights, q, em.sizes(n.inputs[1], a["q_tokens"]),
                   em.sizes(n.inputs[2], a["k_tokens"]), a["steps"], a["radii"],
                   a.get("dilation", 1), a.get("q_steps"))


_register("E2_bilinear", "deformable sampling: the bilinear kernel at each head's kernel "
          "position plus the displacement the query predicts",
          _emit_e2_bilinear, sizes=lambda ins, t, a: _with_keys(ins[1], ins[2], a))


def _emit_e2_offsets(em, n: Node, args):
    from . import runtime

    a = n.attrs
    p = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    return em.call(runtime.offset_maps, p, em.sizes(n.inputs[1], a["q_tokens"]),
                   em.sizes(n.inputs[2], a["k_tokens"]), a["steps"], a["radii"],
                   key_side=a["key_side"])


_register("E2_offsets", "predicted maps: one logit per joint offset, read at each pair's",
          _emit_e2_offsets, sizes=lambda ins, t, a: _with_keys(ins[1], ins[2], a))


def _emit_e2_absolute(em, n: Node, args):
    from . import runtime

    a = n.attrs
    p = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    return em.call(runtime.absolute_maps, p, em.sizes(n.inputs[2], a["k_tokens"]),
                   a["longest"])


_register("E2_absolute", "the query's logit per key position, read at each key's index",
          _emit_e2_absolute, sizes=lambda ins, t, a: _with_keys(ins[1], ins[2], a))


def _emit_e2_table(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    return em.call(runtime.offset_vectors, q, _scaled(em, args[1], a),
                   em.sizes(n.inputs[2], a["q_tokens"]), em.sizes(n.inputs[3], a["k_tokens"]),
                   a["steps"], a["radii"])


def _e2_table_flops(ins, out, a, b):
    d = width(ins[0], a["q_feature"], b) // a["heads"]
    queries = out.numel(b) // axis_size(out.axes[-1], b)  # B·M·Q
    return 2 * queries * ins[1].axes[0].size * d  # each query against every table row


_register("E2_table", "query content × a learned vector per joint offset: q · T[k − q]",
          _emit_e2_table, _e2_table_flops, sizes=lambda ins, t, a: _with_keys(ins[2], ins[3], a))


_register("table", "a linear map's weight read as a table of rows, [rows, out]: the map "
          "applied to one-hot rows", lambda em, n, args: em.method(
              em.attr(f"{n.module}.weight"), "t"), sizes=lambda ins, t, a: {})


def _emit_offsets(em, n: Node, args):
    from . import runtime

    return em.call(runtime.one_hot_rows, args[0], n.attrs["size"])


_register("offsets", "one one-hot row per joint offset within R on every axis", _emit_offsets,
          sizes=lambda ins, t, a: {})


def _emit_displacement(em, n: Node, args):
    from . import runtime

    radii = n.attrs["radii"]
    if radii is None:  # displacement(): the queries' sizes − 1, known at run time
        radii = em.sizes(n.inputs[0], n.attrs["q_tokens"])
    return em.call(runtime.displacement_rows, args[0], radii, n.attrs["radii"] is None)


def _displacement_sizes(ins, t, a) -> dict:
    if a["radii"] is not None:
        return {}
    return {"offsets": math.prod(2 * ins[0].get(q, 1) - 1 for q in a["q_tokens"])}


_register("displacement", "one row per joint offset within R: the offset q − k, a number "
          "per axis", _emit_displacement, sizes=_displacement_sizes)


_register("E4", "relative position only: one score per head for each offset q − k",
          _emit_e4, sizes=lambda ins, t, a: _with_keys(ins[1], ins[2], a))


def _emit_add_terms(em, n: Node, args):
    left, right = args
    with_query, with_key = n.attrs["query"], n.attrs.get("key", (True, True))
    if with_query[0] and not with_query[1]:
        right = em.method(right, "unsqueeze", -2)  # E3 [B, M, K]: the same for every query
    elif with_query[1] and not with_query[0]:
        left = em.method(left, "unsqueeze", -2)
    if with_key[0] and not with_key[1]:
        right = em.method(right, "unsqueeze", -1)  # E3(query) [B, M, Q]: for every key
    elif with_key[1] and not with_key[0]:
        left = em.method(left, "unsqueeze", -1)
    return em.call(operator.add, left, right)


def _add_terms_sizes(ins, t, a):
    left, right = ins
    out = {**right, **left} if a["query"][0] or not a["query"][1] else {**left, **right}
    key = t.axes[-1].name
    if key not in out:  # E3(query) + E3(key): the keys' own (pooled) sizes name the axis
        keys = right if a.get("key", (True, True))[1] else left
        out[key] = math.prod(keys.get(axis, 1) for axis in key.rstrip("'").split("·"))
    return out


_register("add_terms", "a sum of weight terms (E1 + E3 + ...)", _emit_add_terms,
          sizes=_add_terms_sizes)


def _emit_e1_memory(em, n: Node, args):
    a = n.attrs
    t = em.type(n.inputs[0])
    if a["heads"] == 1 and t.names == (t.names[0], *a["q_feature"], *a["q_tokens"]) \
            and len(a["q_feature"]) == 1:
        # channels first ([B, C, H, W]): the slots' weights times the map, as a 1×1
        # convolution would, with no transposed copy of the input
        x = em.method(args[0], "flatten", 2) if len(a["q_tokens"]) != 1 else args[0]
        weight = em.method(em.attr(f"{n.module}.weight"), "unsqueeze", -1)  # [S, C, 1]
        logits = em.call(_F().conv1d, x, weight)  # [B, S, N]; matmul would copy x
        # [B, 1, N, S] laid out so (S values, not the map, are copied): the normaliser over
        # S then reads contiguous rows
        return em.method(em.method(em.method(logits, "transpose", 1, 2), "contiguous"),
                         "unsqueeze", 1)
    q = to_heads(em, args[0], t, a["q_tokens"], a["q_feature"], a["heads"])
    return em.module(n.module, q)


_register("E1_memory", "query content × learned key memory: a linear map to S slots",
          _emit_e1_memory, lambda ins, out, a, b: 2 * out.numel(b) * a["in"])


def _emit_e3(em, n: Node, args):
    """The key layer gives one score per key and head: [B, M, tokens...] → [B, M, N]."""
    a = n.attrs
    t, tokens, (feature,) = em.type(n.inputs[0]), a["k_tokens"], a["k_feature"]
    k = args[0]
    if t.names != (t.names[0], feature, *tokens):  # make it channels first
        k = em.method(k, "permute", 0, t.index(feature), *(t.index(x) for x in tokens))
        if any(em.ir.node(u).op == "add_terms" for u in em.ir.readers(n.name)):
            # laid out so: a sum with [B, M, Q, K] logits would keep the permuted layout and
            # the softmax after it copy the big result (AFT-full: 2× slower)
            k = em.method(k, "contiguous")
    k = em.method(k, "flatten", 2) if len(tokens) != 1 else k
    if a.get("contexts"):  # [B, M·S, K] → [B, M, S, K]: head-major, as the heads split
        k = em.method(k, "unflatten", 1, (a["heads"], a["contexts"]))
    return k


_register("E3", "key content only: u·(W_k x_k), the same for every query", _emit_e3)


def _emit_every_query(em, n: Node, args):
    """[B, M, K] → [B, M, Q = K, K'], a view: the keys are the queries' own positions."""
    keys = em.method(args[0], "size", -1)
    return em.method(em.method(args[0], "unsqueeze", -2), "expand", -1, -1, keys, -1)


_register("every_query", "a key term repeated for every query (a causal or windowed range "
          "of E3 alone)", _emit_every_query, sizes=lambda ins, t, a: _with_keys(ins[0], ins[0], a))


def _emit_e3_memory(em, n: Node, args):
    """A learned score per memory slot, the same for every head: [1, 1, S]."""
    return em.method(em.attr(f"{n.module}.bias"), "view", 1, 1, n.attrs["slots"])


def _emit_rename(em, n: Node, args):
    if not n.attrs.get("check"):
        return args[0]
    from . import runtime

    return em.call(runtime.check_input, args[0], n.attrs["declared"], n.attrs["check"])


_register("rename", "the same tensor under the axis names of the attention it enters (its "
          "sizes checked where the attention fixes them)", _emit_rename,
          sizes=lambda ins, t, a: {**ins[0], **{new: ins[0][old] for old, new in a["renamed"]
                                                if old in ins[0]}})


def _emit_stand_in(em, n: Node, args):
    from . import runtime

    return em.call(runtime.given_or, args[0], args[1])


_register("stand_in", "an optional input, or the input that stands in for it when it is left "
          "out (`input m: [...] optional = x`)", _emit_stand_in,
          sizes=lambda ins, t, a: {**ins[0], **{new: ins[1][old] for old, new in a["renamed"]
                                                if old in ins[1]}})


def _emit_every_nth(em, n: Node, args):
    step = slice(None, None, n.attrs["stride"])
    index = tuple(step if d in n.attrs["dims"] else slice(None)
                  for d in range(len(em.type(n.inputs[0]).axes)))
    return em.call(operator.getitem, args[0], index)


_register("every_nth", "the queries' grid: every s-th position of the indexed axes",
          _emit_every_nth,
          sizes=lambda ins, t, a: {**ins[0], **{t.axes[d].name: -(-ins[0].get(
              t.axes[d].name, 1) // a["stride"]) for d in a["dims"]}})


_register("E3_memory", "key content of learned slots: a learned score per slot",
          _emit_e3_memory)


def _build_learned(a):
    from .layers import Learned

    return Learned(tuple(a["shape"]), a["init"], a["std"], a["trainable"])


OPS["learned"] = Op(
    name="learned", doc="a learned tensor with named axes of fixed sizes (no input)",
    build=_build_learned, count=lambda a: math.prod(a["shape"]) if a["trainable"] else 0,
    kind="core",
    emit=lambda em, n, args: em.method(em.attr(f"{n.module}.weight"), "unsqueeze", 0))


def _build_slot_bias(a):
    from .layers import Bias

    return Bias(a["size"])


OPS["slot_bias"] = Op(name="slot_bias", doc="a learned score per memory slot",
                      build=_build_slot_bias, count=lambda a: a["size"], kind="core")


# ---------------------------------------------------------------------------- weights


def _emit_scale(em, n, args):
    return em.call(operator.mul, args[0], n.attrs["factor"])


_register("scale", "a constant factor on the logits, e.g. 1/√d", _emit_scale)


def _emit_scale_heads(em, n, args):
    logits, factor = args
    dims = len(em.type(n.inputs[0]).axes)
    if n.attrs.get("per_query"):  # [B, M, H, W] -> [B, M, Q, 1]
        per_head = em.method(em.method(factor, "flatten", 2), "unsqueeze", -1)
    else:  # [B or 1, M] -> [B or 1, M, 1, 1]
        per_head = em.method(factor, "reshape", em.method(factor, "size", 0), -1,
                             *([1] * (dims - 2)))
    return em.call(operator.mul if n.attrs["op"] == "*" else operator.truediv, logits,
                   per_head)


_register("scale_heads", "a factor per head on the logits (ALiBi's slopes)",
          _emit_scale_heads)


def _masks(args, a) -> tuple:
    """(padding mask, global tokens, centres) from a range's inputs after its logits: each
    there only if the spec gave it (`mask`, `window(..., global = g, centre = p)`)."""
    extra = list(args)
    centre = extra.pop() if a.get("centred") else None
    marked = extra.pop() if a.get("marked") else None
    return (extra[0] if extra else None), marked, centre


def _emit_range(em, n, args):
    from . import runtime

    a = n.attrs
    pad, marked, centre = _masks(args[1:], a)
    grid = em.sizes(a["sizes_of"], a["grid"]) if a.get("grid") else None
    window = None
    if a.get("window") is not None:
        window = (a["window"], em.sizes(a["sizes_of"], a["q_tokens"]),
                  em.sizes(a["keys_of"], a["k_tokens"]), a["steps"], a.get("dilation", 1),
                  *_query_steps(a).values())
    optional = {} if a.get("fill") is None else {"fill": a["fill"]}
    if a.get("partition") is not None:
        optional["partition"] = (a["partition"], em.sizes(a["sizes_of"], a["q_tokens"]))
    if a.get("blocks") is not None:
        optional["blocks"] = (*a["blocks"], em.sizes(a["sizes_of"], a["q_tokens"]))
        if a.get("halo") is not None:
            optional["halo"] = a["halo"]
    if marked is not None:
        optional["marked"] = marked
    if centre is not None:
        optional["centre"] = centre
    return em.call(runtime.restrict, args[0], pad, causal=a["causal"], grid=grid,
                   window=window, **optional)


_register("range", "Ω_q: logits of keys outside the range become -inf", _emit_range)


def _emit_softmax(em, n, args):
    from . import runtime

    source = em.ir.node(n.inputs[0])
    if source.op == "range" and (source.attrs.get("window") is not None or
                                 _masks(source.inputs[1:], source.attrs)[0] is not None):
        # padding, or a window narrower than the keys' stride, may hide every key
        return em.call(runtime.softmax_seen, args[0])
    return _softmax_last(em, args[0])


def _softmax_last(em, x):
    """softmax over the last axis; of a permuted view (E3's key scores [B, N, M] read as
    [B, M, N]), over the source's own axis, permuted after: the kernel reads the memory
    as it lies, where a strided last axis made torch copy it first (AFT-simple's
    pooling: 3.3 → 1.6 ms at 16 × 256 × 256)."""
    if getattr(x, "op", None) == "call_method" and x.target == "permute":
        source, *order = x.args
        return em.method(em.call(_torch().softmax, source, dim=order[-1]), "permute", *order)
    return em.call(_torch().softmax, x, dim=-1)


def _emit_count(em, n, args):
    keys = em.method(args[0], "size", -1)
    return em.call(operator.truediv, args[0], keys)


def _emit_double(em, n, args):
    a = n.attrs
    w = em.call(_torch().softmax, args[0], dim=a["first"])
    total = em.method(w, "sum", dim=a["then"], keepdim=True)
    return em.call(operator.truediv, w, em.call(operator.add, total, a["eps"]))


def _emit_l1(em, n, args):
    total = em.method(args[0], "sum", dim=-1, keepdim=True)
    return em.call(operator.truediv, args[0], em.call(operator.add, total, n.attrs["eps"]))


_register("softmax_keys", "softmax over the keys of Ω_q", _emit_softmax, kind="normaliser")
_register("unnormalised", "the terms used as weights as they are (convolution as attention)",
          lambda em, n, args: args[0], kind="normaliser")
_register("count", "divide by the number of keys |Ω_q| (Non-local's dot product)",
          _emit_count, kind="normaliser")
_register("l1_keys", "divide by the sum over the keys, plus eps (linear attention)",
          _emit_l1, kind="normaliser")
_register("double_norm", "softmax over one axis, then L1 over the other (External attention)",
          _emit_double, kind="normaliser")
_register("softmax_queries", "softmax over the queries: double_norm's first half, shared with "
          "a softmax of the transposed logits (passes.share_transposed_softmax)",
          lambda em, n, args: em.call(_torch().softmax, args[0], dim=-2), kind="normaliser")


def _emit_pair_factor(em, n, args):
    """weights [B, M, Q, K] times a factor laid out by the names in `layout` (batch, query
    axes, key axes; some maybe missing): moved into that order, the missing ones added as
    size 1, the query and key axes flattened, a heads axis of 1 added."""
    a, names = n.attrs, em.type(n.inputs[1]).names
    order = [x for x in a["layout"] if x in names]
    t = args[1]
    if order != list(names):
        t = em.method(t, "permute", *(names.index(x) for x in order))
    for i, x in enumerate(a["layout"]):
        if x not in names:
            t = em.method(t, "unsqueeze", i)
    q = a["q_count"]
    t = em.method(em.method(t, "flatten", q + 1, -1), "flatten", 1, q)  # [B', Q', K']
    return em.call(operator.mul, args[0], em.method(t, "unsqueeze", 1))


_register("pair_factor", "weights times one number per (query, key) pair, after the "
          "normaliser (Luong's Gaussian)", _emit_pair_factor,
          lambda ins, out, a, b: out.numel(b), kind="normaliser")


def _softmax_over(types, cfg):
    _softmax_range(types[0], tuple(cfg["over"]))
    return types[0]


def _softmax_range(t: TensorType, axes: tuple[str, ...]) -> tuple[int, int]:
    """The first and last dimension of `axes`, which must be adjacent, after the batch."""
    for a in axes:
        if a not in t.per_sample:
            raise OpError(f"softmax over `{a}`: {t} has no such axis (after the batch)",
                          arg="over", code="axis-mismatch")
    first = t.index(axes[0])
    if t.names[first:first + len(axes)] != axes:
        raise OpError(f"softmax over several axes needs them adjacent and in order: {t}",
                      arg="over", code="axis-mismatch")
    return first, first + len(axes) - 1


def _emit_softmax_over(em, n, args):
    axes = tuple(n.attrs["over"])
    first, last = _softmax_range(em.type(n.inputs[0]), axes)
    if first == last:
        return em.call(_torch().softmax, args[0], dim=first)
    flat = em.method(args[0], "flatten", first, last)  # one distribution over H·W
    return em.method(em.call(_torch().softmax, flat, dim=first), "unflatten", first,
                     em.sizes(n.inputs[0], axes))


# softmax of a plain tensor over named axes (SK's selection across branches; PSA's over the
# positions); of a weight term it is the normaliser above, over the keys
OPS["softmax"] = Op(
    name="softmax", doc="a softmax over the named axes of a tensor (of a term: over the keys)",
    params=(Param("over", "axes"),), infer=_softmax_over, emit=_emit_softmax_over)


# ---------------------------------------------------------------------------- aggregation


def _emit_aggregate(em, n: Node, args):
    a = n.attrs
    if _channels_first(n.type, a["q_tokens"], a["v_feature"]) and not a["memory"] and \
            a["weight_axes"] == ("B", "M", "Q", "K"):
        return _aggregate_channels_first(em, n, args)
    if a.get("weights_transposed"):  # [B, M, K, Q] (passes.share_transposed_softmax): a view
        args = (em.method(args[0], "transpose", -1, -2), *args[1:])
    if a["memory"]:
        y = em.module(n.module, args[0])
    elif "S" in a["weight_axes"]:  # E3 with N contexts: [B, M, S, K] @ [B, M, K, d]
        v = to_heads(em, args[1], em.type(n.inputs[1]), a["k_tokens"], a["v_feature"],
                     a["heads"])
        y = em.call(_torch().matmul, args[0], v)  # [B, M, S, d]
        y = em.method(y, "squeeze", 1) if a["heads"] == 1 else em.method(
            em.method(y, "transpose", 1, 2), "flatten", 2)
        return y  # [B, S, F]
    elif "Q" not in a["weight_axes"]:  # E3: one pooled context for every query
        return _pooled_context(em, n, args)
    else:
        v = to_heads(em, args[1], em.type(n.inputs[1]), a["k_tokens"], a["v_feature"],
                     kv_heads(a))
        y = grouped_matmul(em, args[0], v, a["heads"], kv_heads(a))
    return from_heads(em, y, n.type, a["q_tokens"], a["v_feature"], a["heads"], a["sizes_of"])


def _pooled_context(em, n: Node, args):
    """Σ_k w_k · v_k for E3's weights [B, M, K], one context [B, F] for every query: a
    product and a sum, not a one-column matmul, which runs as a slow bmm on CPUs forward
    and backward (benchmarks/: GCNet 1.5× slower that way), the product laid out as the
    values lie: [B, M, d, N] for a channels-first map, [B, M, N, d] for a sequence."""
    a = n.attrs
    first = _channels_first(em.type(n.inputs[1]), a["k_tokens"], a["v_feature"])
    v = to_heads(em, args[1], em.type(n.inputs[1]), a["k_tokens"], a["v_feature"], a["heads"],
                 keys_first=first)
    weighted = em.call(operator.mul, v, em.method(args[0], "unsqueeze", -2 if first else -1))
    return em.method(em.method(weighted, "sum", -1 if first else -2), "flatten", 1)


def _channels_first(t: TensorType, tokens, features) -> bool:
    return t.names == (t.names[0], *features, *tokens) and len(features) == 1


def _aggregate_channels_first(em, n: Node, args):
    """v [B, M, d, Nk] @ Aᵀ gives [B, M, d, Nq], channels-first (runtime.values_by_weights
    picks the product's layout)."""
    a = n.attrs
    v = to_heads(em, args[1], em.type(n.inputs[1]), a["k_tokens"], a["v_feature"], kv_heads(a),
                 keys_first=True)
    if a.get("weights_transposed") or kv_heads(a) not in (1, a["heads"]):
        weights = args[0] if a.get("weights_transposed") else \
            em.method(args[0], "transpose", -1, -2)
        y = grouped_matmul(em, v, weights, kv_heads(a), a["heads"])
    else:
        from . import runtime

        y = em.call(runtime.values_by_weights, v, args[0])
    y = em.method(y, "squeeze", 1) if a["heads"] == 1 else em.method(y, "flatten", 1, 2)
    tokens = a["q_tokens"]
    return y if len(tokens) == 1 else em.method(y, "unflatten", 2,
                                                em.sizes(a["sizes_of"], tokens))


def _aggregate_flops(ins, out, a, b):
    dv = a["v_width"] if a["memory"] else width(ins[1], a["v_feature"], b)
    return 2 * ins[0].numel(b) * dv // kv_heads(a)  # weights [B, M, Q, K] × per-head values


_register("aggregate", "Σ_k A(q, k) · W'x_k: weights times values, summed over Ω_q",
          _emit_aggregate, _aggregate_flops)


def _heads_of(em, n: Node, args):
    """A fused attention's q, k and v (its first three inputs) in the heads layout
    [B, M, N, d]; keys and values with their G heads (`kv = G`; M when not shared)."""
    a = n.attrs
    q = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    k = to_heads(em, args[1], em.type(n.inputs[1]), a["k_tokens"], a["k_feature"], kv_heads(a))
    v = to_heads(em, args[2], em.type(n.inputs[2]), a["k_tokens"], a["v_feature"], kv_heads(a))
    return q, k, v


def _emit_sdpa(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q, k, v = _heads_of(em, n, args)
    # G key and value heads: torch's kernel reads each for its M / G query heads
    gqa = {"enable_gqa": True} if kv_heads(a) != a["heads"] else {}
    if a.get("bias"):  # a term added to the logits: SDPA's float mask
        pad = args[4] if len(args) > 4 else None
        y = em.call(runtime.biased_sdpa, q, k, v, args[3], pad, causal=a["causal"],
                    scale=a["scale"], **gqa)
    elif len(args) > 3:
        y = em.call(runtime.masked_sdpa, q, k, v, args[3], causal=a["causal"], scale=a["scale"],
                    **gqa)
    else:
        y = em.call(_F().scaled_dot_product_attention, q, k, v, is_causal=a["causal"],
                    scale=a["scale"], **gqa)
    return from_heads(em, y, n.type, a["q_tokens"], a["v_feature"], a["heads"], a["sizes_of"])


def _sdpa_flops(ins, out, a, b):
    q, v = ins[0], ins[2]
    d, dv = width(q, a["q_feature"], b), width(v, a["v_feature"], b)
    queries = q.numel(b) // d  # B·Nq
    keys = v.numel(b) // dv // b.get(v.names[0], 1)  # Nk
    return queries * keys * (2 * d + 2 * dv // kv_heads(a) * a["heads"])


def _emit_banded(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q, k, v = _heads_of(em, n, args)
    pad, marked, _ = _masks(args[3:], a)
    drop = em.attr(a["dropout"]) if a.get("dropout") else None  # its p while training
    y = em.call(runtime.banded_sdpa, q, k, v, a["radius"], a["dilation"], a["causal"], pad,
                a["scale"], marked, drop)
    return from_heads(em, y, n.type, a["q_tokens"], a["v_feature"], a["heads"], a["sizes_of"])


def _banded_flops(ins, out, a, b):
    from . import runtime

    q, v = ins[0], ins[2]
    d, dv = width(q, a["q_feature"], b), width(v, a["v_feature"], b)
    n = axis_size(q.axis(a["q_tokens"][0]), b)

    def pairs(dilation):  # each of the `dilation` residues is a band of its own
        blocks, block, span = runtime.band_shape(-(-n // dilation), a["radius"])[:3]
        return dilation * blocks * block * span

    batch = q.numel(b) // d // n  # B
    per_head = a["dilation"] if isinstance(a["dilation"], tuple) else (a["dilation"],)
    return batch * sum(map(pairs, per_head)) * (2 * d + 2 * dv) // len(per_head)


def _emit_blocked(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q, k, v = _heads_of(em, n, args)
    bias = args[3] if a["bias"] else None
    drop = em.attr(a["dropout"]) if a.get("dropout") else None  # its p while training
    y = em.call(runtime.blocked_sdpa, q, k, v, em.sizes(a["sizes_of"], a["q_tokens"]),
                *a["blocks"], bias, a["scale"], drop)
    return from_heads(em, y, n.type, a["q_tokens"], a["v_feature"], a["heads"], a["sizes_of"])


def _block_queries(ins, a, b) -> tuple[int, int, int, int]:
    """A blocked kernel's query count over whole blocks (the map padded to them), the
    number of indexed axes, and the query and value widths."""
    q, v = ins[0], ins[2]
    d, dv = width(q, a["q_feature"], b), width(v, a["v_feature"], b)
    size = a["blocks"][0]
    sizes = [axis_size(q.axis(t), b) for t in a["q_tokens"]]
    batch = q.numel(b) // d // math.prod(sizes)
    return batch * math.prod(-(-n // size) * size for n in sizes), len(sizes), d, dv


def _blocked_flops(ins, out, a, b):
    queries, n, d, dv = _block_queries(ins, a, b)
    return queries * a["blocks"][0] ** n * (2 * d + 2 * dv)


_register("blocked", "softmax(q·kᵀ·s + T)·v within blocks: Swin's (shifted) windows, cut "
          "out by one gather, the bias one block's table", _emit_blocked, _blocked_flops)


def _emit_halo(em, n: Node, args):
    from . import runtime

    a = n.attrs
    q, k, v = _heads_of(em, n, args)
    terms, rest = {}, list(args[3:])
    if a["relative"]:  # E2's queries (None: E1's) in the heads layout, its rows for a block
        p = None if a["p_feature"] is None else to_heads(
            em, rest.pop(0), em.type(n.inputs[3]), a["q_tokens"], a["p_feature"], a["heads"])
        # E2's factor (passes.fold_position_scales, and the sum's scale)
        terms.update(p=p, rows=_scaled(em, rest.pop(0), a))
    if a["bias"]:  # E4 on one block's pairs: [1, M, L, S]
        terms["bias"] = rest.pop(0)
    drop = em.attr(a["dropout"]) if a.get("dropout") else None  # its p while training
    y = em.call(runtime.halo_sdpa, q, k, v, em.sizes(a["sizes_of"], a["q_tokens"]),
                a["blocks"][0], a["halo"], a["scale"], a["zeros"], dropout=drop, **terms)
    return from_heads(em, y, n.type, a["q_tokens"], a["v_feature"], a["heads"], a["sizes_of"])


def _halo_flops(ins, out, a, b):
    queries, n, d, dv = _block_queries(ins, a, b)
    span = a["blocks"][0] + 2 * a["halo"]
    flops = queries * span ** n * (2 * d + 2 * dv)
    if a["relative"]:  # each query against each axis's window row
        flops += queries * n * span * 2 * d
    return flops


_register("halo", "softmax(q·kᵀ·s [+ E2])·v within haloed blocks: HaloNet's blocked local "
          "attention, each block against the window of its keys", _emit_halo, _halo_flops)


def _emit_criss_cross(em, n: Node, args):
    from . import runtime

    return em.call(runtime.criss_cross, *args, n.attrs["scale"])


def _criss_cross_flops(ins, out, a, b):
    q, v = ins[0], ins[2]
    positions = q.numel(b) // q.axes[1].size  # B·H·W
    lines = sum(axis_size(x, b) for x in q.axes[2:])  # H + W (+ D): each position's lines
    return 2 * positions * lines * (q.axes[1].size + v.axes[1].size)


_register("criss_cross", "criss-cross attention on the lines through each position alone "
          "(CCNet)",
          _emit_criss_cross, _criss_cross_flops)


_register("sdpa", "fused softmax(q·kᵀ·s)·v: torch's scaled_dot_product_attention",
          _emit_sdpa, _sdpa_flops)


_register("banded", "softmax(q·kᵀ·s)·v over a window on a sequence, block by block: the "
          "keys each block's windows reach, not all N", _emit_banded, _banded_flops)


def _emit_local(em, n: Node, args):
    """Σ_p T[q, p] · v[q + p] over the joint offsets p within the radii: the term as one
    weight per offset, each query against its window of values (passes.fuse_local)."""
    from . import runtime

    a = n.attrs
    *term, value = args
    inputs = n.inputs
    if a["term"] == "E4":  # a table [P, M or 1]: the same weights for every query
        table = _per_head_columns(em, n, _scaled(em, term[0], a), a["heads"])
        weights = em.method(em.method(em.method(table, "t"), "unsqueeze", 0),
                            "unsqueeze", 2)  # [1, M, 1, P]
    else:
        q = to_heads(em, term[0], em.type(inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
        # E2_offsets: the query's own map, a logit per offset; E2_table: the query against
        # each offset's learned vector, which offset_vectors_window reads
        weights = _scaled(em, q, a) if a["term"] == "E2_offsets" else None
        table = _scaled(em, term[1], a) if a["term"] == "E2_table" else None
    g = kv_heads(a)
    v = to_heads(em, value, em.type(inputs[-1]), a["q_tokens"], a["v_feature"], g,
                 keys_first=True)  # [B, G, d, N]
    grid = em.sizes(a["sizes_of"], a["q_tokens"])
    if weights is None:
        y = em.call(runtime.offset_vectors_window, q, table, v, grid, a["radii"])
    else:
        y = em.call(runtime.window_aggregate, weights, v, grid, a["radii"])  # [B, M, d, N]
    return from_heads(em, em.method(y, "transpose", -1, -2), n.type, a["q_tokens"],
                      a["v_feature"], a["heads"], a["sizes_of"])


def _local_flops(ins, out, a, b):
    points = math.prod(2 * r + 1 for r in a["radii"])
    v = ins[-1]
    dv = width(v, a["v_feature"], b) // kv_heads(a)
    queries = out.numel(b) // (dv * a["heads"])  # B·Q
    keys = math.prod(b.get(t, 1) for t in a["q_tokens"])
    # runtime.window_aggregate: a window as large as the map goes dense, [Q, K]
    flops = 2 * queries * a["heads"] * min(points, keys) * dv
    if a["term"] == "E2_table":  # each query against every offset's vector, or against
        # each key's (runtime.offset_vectors_window)
        from .runtime import pairs_first

        table = ins[1].axes[-1].size
        first = pairs_first(queries // keys, a["heads"], keys, table, a["radii"])
        flops += 2 * queries * a["heads"] * (keys if first else points) * (
            width(ins[0], a["q_feature"], b) // a["heads"])
    return flops


_register("local_aggregate", "Σ_p T(q, p) · v_{q+p} over the offsets within the radii: "
          "a position term's weights against each query's window of values",
          _emit_local, _local_flops, sizes=lambda ins, t, a: {**ins[-1], **ins[0]})


def _emit_factorised(em, n: Node, args):
    """softmax_k(K_k + w_{k−q}) · v with w zero beyond the radii, as
    (Σ_k e^K v + window(e^w − 1, e^K v)) / (Σ_k e^K + window(e^w − 1, e^K))
    (passes.fuse_factorised; K shifted by its maximum first, as a softmax is)."""
    from . import runtime

    a = n.attrs
    keys, table, value = args
    width_ = em.type(n.inputs[1]).axes[-1].size
    if width_ not in (1, a["heads"]):  # one column per group of heads
        table = em.method(table, "repeat_interleave", a["heads"] // width_, 1)
    v = to_heads(em, value, em.type(n.inputs[2]), a["q_tokens"], a["v_feature"], kv_heads(a),
                 keys_first=True)  # [B, M, d, N]
    y = em.call(runtime.factorised_softmax, keys, _scaled(em, table, a), v,
                em.sizes(a["sizes_of"], a["q_tokens"]), a["radii"])  # [B, M, d, N]
    return from_heads(em, em.method(y, "transpose", -1, -2), n.type, a["q_tokens"],
                      a["v_feature"], a["heads"], a["sizes_of"])


def _factorised_flops(ins, out, a, b):
    points = math.prod(2 * r + 1 for r in a["radii"])
    keys = math.prod(b.get(t, 1) for t in a["q_tokens"])
    values = out.numel(b)  # B·Q·M·d
    d = width(ins[2], a["v_feature"], b) // kv_heads(a)
    # windows of e^K ⊙ v and of e^K (multiply-adds), and the global sum of e^K ⊙ v
    return 2 * (values + values // d) * min(points, keys) + 2 * values


def _emit_causal_pool(em, n: Node, args):
    """softmax over the keys up to each query of E3's key logits, times v
    (passes.fuse_causal_pool): running sums, chunk by chunk."""
    from . import runtime

    a = n.attrs
    keys, value = args
    v = to_heads(em, value, em.type(n.inputs[1]), a["q_tokens"], a["v_feature"], a["heads"])
    y = em.call(runtime.causal_pool, keys, v, CAUSAL_CHUNK)  # [B, M, N, d]
    return from_heads(em, y, n.type, a["q_tokens"], a["v_feature"], a["heads"],
                      a["sizes_of"])


def _causal_pool_flops(ins, out, a, b):
    n = b.get(a["q_tokens"][0], 1)
    c, padded = _chunks(n)
    per = out.numel(b) // max(n, 1)  # B·M·d a position
    rows = per // (width(ins[1], a["v_feature"], b) // a["heads"])  # B·M
    # within each chunk a [c, c] weight times [c, d], and e^K · v summed per chunk; the
    # earlier chunks' sums and denominators, [nc, nc] times [nc, d] and [nc, 1]
    return 2 * per * padded * (c + 1) + 2 * (per + rows) * (padded // c) ** 2


CAUSAL_CHUNK = 64  # positions a chunk: memory B·M·N·c for the weights within chunks


def _chunks(n: int) -> tuple[int, int]:
    """The causal running sums' chunk width for n positions, and n padded to whole
    chunks."""
    c = max(1, min(CAUSAL_CHUNK, n))
    return c, -(-n // c) * c


_register("causal_pool", "softmax(E3) · v over range causal as running sums of e^K ⊙ v "
          "and e^K, chunk by chunk (AFT-simple's autoregressive form)", _emit_causal_pool,
          _causal_pool_flops, sizes=lambda ins, t, a: {**ins[1], **ins[0]})


_register("factorised_aggregate", "softmax(E3 + a local E4) · v as global sums plus local "
          "windows of e^K ⊙ v (AFT-conv's factorisation)", _emit_factorised,
          _factorised_flops, sizes=lambda ins, t, a: {**ins[2], **ins[0]})


def _emit_linear(em, n: Node, args):
    """Σ_k (q·k) v_k / (Σ_k q·k + eps) as q (Kᵀ V) / (q · Σ_k k + eps): the keys are summed
    into a d × d' state per head before any query is seen, O(N·d·d') instead of O(N²·d)."""
    a = n.attrs
    torch = _torch()
    q = to_heads(em, args[0], em.type(n.inputs[0]), a["q_tokens"], a["q_feature"], a["heads"])
    g = kv_heads(a)
    k = to_heads(em, args[1], em.type(n.inputs[1]), a["k_tokens"], a["k_feature"], g,
                 keys_first=True)  # [B, G, d, K]
    v = to_heads(em, args[2], em.type(n.inputs[2]), a["k_tokens"], a["v_feature"], g)
    if len(args) > 3:  # a padding mask: masked keys weigh 0, as rows of zeros in K
        from . import runtime

        k = em.call(runtime.drop_keys, k, args[3])
    if a["scale"] != 1.0:
        q = em.call(operator.mul, q, a["scale"])
    if a.get("causal"):  # the sums up to each query, chunk by chunk
        from . import runtime

        y = em.call(runtime.causal_linear_attention, q, k, v, a["eps"], CAUSAL_CHUNK)
        return from_heads(em, y, n.type, a["q_tokens"], a["v_feature"], a["heads"],
                          a["sizes_of"])
    y = grouped_matmul(em, q, em.call(torch.matmul, k, v), a["heads"], g)  # [B, M, Q, d']
    if a["eps"] is not None:  # the l1 normaliser; None: the weights as they are
        total = grouped_matmul(em, q, em.method(k, "sum", dim=-1, keepdim=True), a["heads"], g)
        y = em.call(operator.truediv, y, em.call(operator.add, total, a["eps"]))
    return from_heads(em, y, n.type, a["q_tokens"], a["v_feature"], a["heads"], a["sizes_of"])


def _linear_flops(ins, out, a, b):
    q, k, v = ins[0], ins[1], ins[2]
    d, dv = width(q, a["q_feature"], b), width(v, a["v_feature"], b)
    queries, keys = q.numel(b) // d, k.numel(b) // width(k, a["k_feature"], b)
    if a.get("causal"):
        return _causal_linear_flops(queries, d // a["heads"], dv // a["heads"], a,
                                    b.get(a["q_tokens"][0], 1))
    per_head = d // a["heads"] * (dv // kv_heads(a))  # d × d' of one head's state
    state = 2 * keys * kv_heads(a) * per_head  # Kᵀ V, every batch element
    return state + 2 * queries * a["heads"] * per_head + (
        2 * queries * d if a["eps"] is not None else 0)


def _causal_linear_flops(queries: int, d: int, e: int, a, n: int) -> int:
    """Per head and chunk of c positions: q·k within the chunk [c, c], its weights times
    v, the chunk's state Kᵀ V [d, e], q times the earlier chunks' state, and q times their
    summed keys for the denominator."""
    c, padded = _chunks(n)
    rows = queries // max(n, 1) * a["heads"]  # B·M
    return 2 * rows * padded * (c * d + c * e + 2 * d * e + (d if a["eps"] is not None else 0))


_register("linear_attention", "q (Kᵀ V) / (q · Σ k + eps): E1 weights without a softmax, "
          "the keys summed first (causal: up to each query, chunk by chunk)", _emit_linear,
          _linear_flops)


# ---------------------------------------------------------------------------- carried axes


def _emit_fold(em, n: Node, args):
    from . import runtime

    return em.call(runtime.fold_samples, args[0], n.attrs["dims"])


def _fold_sizes(ins, t, a):
    batch = t.names[0]
    return {**ins[0], batch: ins[0].get(batch, 1) * math.prod(ins[0].get(c, 1)
                                                          for c in a["carried"])}


_register("fold_batch", "the carried axes moved into the batch: [B, C, H, W] per H is "
          "[B·H, C, W]", _emit_fold, sizes=_fold_sizes)


def _emit_repeat(em, n: Node, args):
    from . import runtime

    return em.call(runtime.repeat_samples, args[0],
                   em.sizes(n.inputs[1], n.attrs["carried"]))


_register("repeat_batch", "an input without the carried axes, repeated for each of their "
          "indices", _emit_repeat,
          sizes=lambda ins, t, a: {**ins[0], t.names[0]: _fold_sizes(
              [ins[1]], t, a)[t.names[0]]})


def _emit_unfold(em, n: Node, args):
    carried = n.attrs["carried"]
    k = len(carried)
    y = em.method(args[0], "unflatten", 0, (-1, *em.sizes(n.inputs[1], carried)))
    if n.attrs["dims"] == tuple(range(1, 1 + k)):
        return y
    return em.method(y, "movedim", tuple(range(1, 1 + k)), n.attrs["dims"])


_register("unfold_batch", "the carried axes back out of the batch", _emit_unfold,
          sizes=lambda ins, t, a: {**ins[0], **{c: ins[1].get(c, 1) for c in a["carried"]},
                                   t.names[0]: ins[1].get(t.names[0], 1)})
