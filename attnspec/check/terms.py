"""The weight's terms and normalisers: E1–E4, memory(S), relative-position encodings,
sums of terms, softmax, sigmoid, count, double_norm."""

from __future__ import annotations

import math
from dataclasses import replace

from .. import attend  # noqa: F401  (registers the formulation's operators)
from ..attend import key_axis, width
from ..diagnostics import did_you_mean
from ..ir import Axis, Node, TensorType
from ..spec import BinOp, Call, IfElse, Name, UnaryOp
from ..values import (
    POISON,
    UNKNOWN,
    Encoding,
    Layer,
    Logits,
    Memory,
    PartitionRange,
    Tensor,
    Weights,
    WindowRange,
)
from .base import describe


class Terms:
    """Builds A(q, k): terms from the query and key content, then a normaliser."""

    def call_E1(self, e: Call):
        x, over, rng, heads, pad = self.core
        args = self.keywords(e, ("query", "key"))
        if args is POISON:
            return POISON
        q = self.projection(args["query"], x, "query")
        if over[1][0] == "memory" or _is_memory_call(args["key"]):
            k = self.value(args["key"])  # learned slots, or a tensor with the slot axis
        else:
            k = self.projection(args["key"], self.kx, "key")
        self.role = "weight"
        if POISON in (q, k):
            return POISON
        q_tokens = over[0][1]
        qf = self.feature(q, q_tokens, "query", args["query"].span)
        if qf is POISON:
            return POISON
        d = width(q.type, qf)
        if self.divide(d, heads, args["query"].span) is POISON:
            return POISON
        if isinstance(k, Memory):
            if over[1][0] != "memory" or over[1][1].slots != k.slots:
                return self.error("wrong-type", "a key memory(S) needs `over positions(...), "
                                  "memory(S)` with the same S", args["key"].span)
            per_head = d // heads if d is not None else None
            path = self.declare_module("key", "linear", {
                "in": per_head, "out": k.slots, "bias": False, "init": "default"}, k.span,
                name="memory")
            t = _logits_type(x, heads, q_tokens, Axis(_over_name(over[1]), k.slots))
            node = self.add("E1_memory", (q.node,), t, e.span, base="e1",
                            module=path, heads=heads, q_tokens=q_tokens, q_feature=qf,
                            **{"in": per_head})
            return Logits(node, t, True)
        if not isinstance(k, Tensor):
            return self.error("wrong-type", "the key must be a layer or memory(S)",
                              args["key"].span)
        k_tokens = over[1][1]
        if over[1][0] == "memory":  # slots computed from the input (EMANet's bases)
            k_tokens = (_over_name(over[1]),)
            if k_tokens[0] not in k.type.names:
                return self.error("axis-mismatch", f"with keys memory({k_tokens[0]}) the key "
                                  f"is memory({k_tokens[0]}) or a tensor with the axis "
                                  f"{k_tokens[0]}, not {k.type}", args["key"].span)
        kf = self.feature(k, k_tokens, "key", args["key"].span)
        if kf is POISON:
            return POISON
        if None not in (d, width(k.type, kf)) and d != width(k.type, kf):
            return self.error("axis-mismatch", f"query and key widths differ: {q.type} vs "
                              f"{k.type}", e.span)
        t = _logits_type(x, heads, q_tokens, Axis(_key_axis_name(q_tokens, k_tokens)))
        node = self.add("E1", (q.node, k.node), t, e.span, base="e1", heads=heads,
                        q_tokens=q_tokens, q_feature=qf, k_tokens=k_tokens, k_feature=kf)
        return Logits(node, t, True, keys=k.node)

    def call_E3(self, e: Call):
        x, over, rng, heads, pad = self.core
        if any(kw.name == "query" for kw in e.kwargs):
            return self.query_only(e)
        args = self.keywords(e, ("key",), ("as",))
        if args is POISON:
            return POISON
        if _is_memory_call(args["key"]):
            return self.slot_bias(e, args["key"])
        k_tokens = over[1][1]
        k, kf = self.content(args["key"], self.kx, "key", k_tokens)
        if k is POISON:
            return POISON
        contexts = self.contexts(args, k, kf, heads)
        if contexts is POISON:
            return POISON
        axes = (x.type.axes[0], Axis("M", heads), *contexts,
                Axis(_key_axis_name((), k_tokens)))
        t = TensorType(axes)
        node = self.add("E3", (k.node,), t, e.span, base="e3", heads=heads, k_tokens=k_tokens,
                        k_feature=kf, contexts=len(contexts) and contexts[0].size)
        return Logits(node, t, False, keys=k.node)

    def query_only(self, e: Call):
        """E3(query = P): the query's content alone, one score per query and head, the same
        for every key: beside a key term, Non-local's concatenation ReLU(a_q + b_k)."""
        x, over, rng, heads, pad = self.core
        args = self.keywords(e, ("query",))
        if args is POISON:
            return POISON
        q_tokens = over[0][1]
        q, qf = self.content(args["query"], x, "query", q_tokens)
        if q is POISON:
            return POISON
        if len(qf) != 1 or q.type.axis(qf[0]).size not in (heads, None):
            return self.error("axis-mismatch", f"E3's query gives one score per query and "
                              f"head: a width of {heads}, not {q.type}", args["query"].span,
                              f"use conv1x1({heads}) or linear({heads})")
        t = TensorType((x.type.axes[0], Axis("M", heads), Axis("·".join(q_tokens))))
        node = self.add("E3", (q.node,), t, e.span, base="e3", heads=heads, k_tokens=q_tokens,
                        k_feature=qf, contexts=0)
        return Logits(node, t, True, has_key=False)

    def contexts(self, args, k: Tensor, kf, heads: int):
        """E3's key gives one score per key and head, or with `as = N` N of them: N pooled
        contexts, a new axis N of the result (A²'s gathered descriptors)."""
        width = k.type.axis(kf[0]).size if len(kf) == 1 else None
        if "as" not in args:
            if len(kf) != 1 or width not in (heads, None):
                return self.error("axis-mismatch", f"E3's key gives one score per key and "
                                  f"head: a width of {heads}, not {k.type}", args["key"].span,
                                  f"use conv1x1({heads}) or linear({heads}), or name "
                                  "several contexts with `as = N`")
            return ()
        name = self.axes(args["as"])
        if name is POISON:
            return POISON
        if len(kf) != 1 or width is None or width % heads:
            return self.error("axis-mismatch", f"E3's key gives N scores per key and head: a "
                              f"width that {heads} heads divide, not {k.type}",
                              args["key"].span)
        return (Axis(name[0], width // heads),)

    def slot_bias(self, e: Call, arg):
        """E3 on memory slots: the content of a learned key is learned, so its score is a
        learned number per slot, shared by the heads as the slots are."""
        x, over, rng, heads, pad = self.core
        memory = self.value(arg)
        if memory is POISON:
            return POISON
        if over[1][0] != "memory" or over[1][1].slots != memory.slots:
            return self.error("wrong-type", "E3(key = memory(S)) needs `over positions(...), "
                              "memory(S)` with the same S", arg.span)
        path = self.declare_module("key", "slot_bias", {"size": memory.slots},
                                   memory.span, name="memory_bias")
        t = TensorType((x.type.axes[0], Axis("M", heads), Axis(_over_name(over[1]),
                                                                memory.slots)))
        node = self.add("E3_memory", (x.node,), t, e.span, base="e3", module=path,
                        heads=heads, slots=memory.slots)
        return Logits(node, t, False)

    # ------------------------------------------------------------------ relative position

    def call_E2(self, e: Call):
        """Query content × relative position: (U z_q) · (V^R R_{q−k}), per head; or, with
        `key =`, the key's content × the query's offset from it (PSANet's distribution)."""
        x, over, rng, heads, pad = self.core
        side = "key" if any(kw.name == "key" for kw in e.kwargs) else "query"
        args = self.keywords(e, (side, "position"), ("keys",))
        if args is POISON:
            return POISON
        q_tokens = over[0][1]
        q, qf = self.content(args[side], x, side, q_tokens)
        keys = self.keys_of(args, x, over)
        if POISON in (q, keys):
            return POISON
        d = width(q.type, qf)
        if self.divide(d, heads, args[side].span) is POISON:
            return POISON
        enc = self.peek_encoding(args["position"])
        if isinstance(enc, Encoding) and enc.kind == "bilinear" and side == "query":
            return self.bilinear(e, q, qf, d, keys, args["position"])
        if isinstance(enc, Encoding) and enc.kind == "offsets" and not enc.layers:
            return self.offset_maps(e, q, qf, d, keys, enc, side)
        if side == "key":
            return self.error("unsupported", "E2(key = ...) reads predicted maps: "
                              "position = offsets(R)", args["position"].span)
        r = self.encode(args["position"], x, keys, q_tokens, over[1][1])
        if r is POISON:
            return POISON
        if r.type.axes[0].name == "offsets":
            return self.error("unsupported", "E2 reads a sinusoid encoding; offsets(R) is for "
                              "E4", args["position"].span)
        if None not in (d, r.type.axes[-1].size) and r.type.axes[-1].size != d:
            return self.error("axis-mismatch", f"the position gives {r.type.axes[-1].size} "
                              f"features per offset, the query {d}", args["position"].span,
                              f"end it with linear({d}, bias = false)")
        t = _logits_type(x, heads, q_tokens, Axis(_key_axis_name(q_tokens, over[1][1])))
        node = self.add("E2", (q.node, r.node, keys.node), t, e.span, base="e2", heads=heads,
                        q_tokens=q_tokens, q_feature=qf, k_tokens=over[1][1],
                        sizes_of=x.node)
        return Logits(node, t, True, keys=keys.node)

    def peek_encoding(self, arg):
        """The encoding an argument names, without building anything (no layers apply)."""
        if isinstance(arg, Call) and isinstance(arg.func, Name) and \
                arg.func.id in ("bilinear", "offsets"):
            return self.value(arg)
        if isinstance(arg, Name) and isinstance(self.env.get(arg.id), Encoding):
            return self.env[arg.id]
        return None

    def offset_maps(self, e: Call, p: Tensor, pf, d, keys: Tensor, enc: Encoding, side: str):
        """E2 on offsets(R): the content gives, per head, one logit for each joint offset
        (PSANet's over-complete maps), read at the pair's offset; 0 beyond the radii."""
        x, over, rng, heads, pad = self.core
        q_tokens = over[0][1]
        radii = self.radii(enc, len(q_tokens))
        if radii is POISON:
            return POISON
        rows = math.prod(2 * r + 1 for r in radii)
        if d is not None and d != rows * heads:
            return self.error("axis-mismatch", f"with offsets{tuple(radii)} the {side} gives "
                              f"one logit per offset and head: a width of {rows * heads}, not "
                              f"{d}", e.span)
        steps = tuple(keys.type.axis(a).step for a in over[1][1])
        if side == "key" and set(steps) != {1}:
            return self.error("unsupported", "E2(key = ...) on offsets needs keys that are not "
                              "pooled", e.span)
        t = _logits_type(x, heads, q_tokens, Axis(_key_axis_name(q_tokens, over[1][1])))
        node = self.add("E2_offsets", (p.node, x.node, keys.node), t, e.span, base="e2",
                        heads=heads, q_tokens=q_tokens, q_feature=pf, k_tokens=over[1][1],
                        radii=radii, key_side=side == "key", steps=steps)
        return Logits(node, t, True, keys=keys.node)

    def bilinear(self, e: Call, q: Tensor, qf, d, keys: Tensor, arg):
        """Deformable sampling: head m reads the input at q + p_m + δ_m(z_q), p_m its
        kernel position, with the bilinear kernel Π_a max(0, 1 − |k_a − position_a|)."""
        x, over, rng, heads, pad = self.core
        enc = self.value(arg)
        if enc is POISON:
            return POISON
        n, q_tokens = len(over[0][1]), over[0][1]
        radii = self.radii(enc, n)
        if radii is POISON:
            return POISON
        points = math.prod(2 * r + 1 for r in radii)
        if heads != points:
            return self.error("heads", f"bilinear samples one point per kernel position: heads "
                              f"must be {points}, not {heads}", arg.span)
        if d is not None and d != n * heads:
            return self.error("axis-mismatch", f"the query must give a displacement of {n} per "
                              f"head: a width of {n * heads}, not {d}", e.span)
        t = _logits_type(x, heads, q_tokens, Axis(_key_axis_name(q_tokens, over[1][1])))
        node = self.add("E2_bilinear", (q.node, x.node, keys.node), t, e.span, base="e2",
                        heads=heads, q_tokens=q_tokens, q_feature=qf, k_tokens=over[1][1],
                        radii=radii,
                        steps=tuple(keys.type.axis(a).step for a in over[1][1]))
        return Logits(node, t, True, keys=keys.node)

    def call_E4(self, e: Call):
        """Relative position only: one score per head for each offset, v_mᵀ V^R R_{q−k}."""
        x, over, rng, heads, pad = self.core
        args = self.keywords(e, ("position",), ("keys",))
        if args is POISON:
            return POISON
        self.role = "weight"
        keys = self.keys_of(args, x, over)
        if keys is POISON:
            return POISON
        r = self.encode(args["position"], x, keys, over[0][1], over[1][1])
        if r is POISON:
            return POISON
        if r.type.axes[-1].size not in (heads, 1, None):
            return self.error("axis-mismatch", f"E4's position gives one score per offset and "
                              f"head (or one for every head): a width of {heads} or 1, not "
                              f"{r.type.axes[-1].size}", args["position"].span,
                              f"end it with linear({heads}, bias = false)")
        q_tokens = over[0][1]
        t = _logits_type(x, heads, q_tokens, Axis(_key_axis_name(q_tokens, over[1][1])))
        radii, pairs = None, None
        enc = self.value(args["position"])
        if enc.kind == "offsets":  # a table per joint offset, looked up
            radii = self.radii(enc, len(q_tokens))
        elif enc.kind == "pairs":  # a table per absolute pair
            pairs = (enc.radius[0], enc.within)
        node = self.add("E4", (r.node, x.node, keys.node), t, e.span, base="e4", heads=heads,
                        q_tokens=q_tokens, k_tokens=over[1][1], radii=radii, pairs=pairs,
                        steps=tuple(keys.type.axis(a).step for a in over[1][1]))
        return Logits(node, t, True, keys=keys.node)

    def keys_of(self, args, x: Tensor, over):
        """The tensor whose positions are the keys': `keys = ...`, else the input."""
        if over[1][0] == "memory":
            return self.error("unsupported", "memory slots have no positions",
                              args["position"].span)
        if "keys" not in args:
            return self.kx
        k = self.value(args["keys"])
        if k is POISON:
            return POISON
        if not isinstance(k, Tensor) or any(a not in k.type.names for a in over[1][1]):
            return self.error("axis-mismatch", f"`keys` must be a tensor with the key axes "
                              f"{' '.join(over[1][1])}, not {describe(k)}", args["keys"].span)
        return k

    def encode(self, arg, x: Tensor, keys: Tensor, q_tokens, k_tokens):
        """R_{q−k} for every (query, key) pair, axis by axis, then the layers after `>>`."""
        enc = self.value(arg)
        if enc is POISON:
            return POISON
        if not isinstance(enc, Encoding):
            return self.error("wrong-type", f"`position` takes an encoding of the offset, "
                              f"not {describe(enc)}", arg.span,
                              "write `position = sinusoid(D) >> linear(D, bias = false)`")
        n = len(q_tokens)
        if enc.kind in ("offsets", "pairs"):
            return self.offsets_table(enc, arg, x, q_tokens, k_tokens, keys)
        if enc.kind == "bilinear":
            return self.error("unsupported", "bilinear(R) samples at a displacement the query "
                              "predicts: E2(query = ..., position = bilinear(R))", enc.span)
        if enc.dim % (2 * n):
            return self.error("shape", f"sinusoid's dim {enc.dim} must split into a sine and a "
                              f"cosine half for each of the {n} axes: a multiple of {2 * n}",
                              enc.span)
        layers = [p for layer in enc.layers for p in (layer.parts or (layer,))]
        if n > 1 and any(not _bias_free_linear(p) for p in layers):
            return self.error("unsupported", "with several axes the position layers must be "
                              "bias-free linear maps: the offset of each axis is encoded on "
                              "its own and the results added", enc.span,
                              "use linear(D, bias = false)")
        t = TensorType((Axis("pairs"), Axis("R", enc.dim)))
        steps = tuple(keys.type.axis(a).step for a in k_tokens)
        node = self.add("sinusoid", (x.node, keys.node), t, enc.span, q_tokens=q_tokens,
                        k_tokens=k_tokens, steps=steps, dim=enc.dim, wave=enc.wave,
                        magnitude=enc.magnitude)
        r = Tensor(node, t)
        for layer in enc.layers:
            r = self.apply(layer, r, arg.span, "position")
            if r is POISON:
                return POISON
        return r

    def offsets_table(self, enc: Encoding, arg, x: Tensor, q_tokens, k_tokens, keys: Tensor):
        """`offsets(R)`: one row per joint offset within R on every axis (a one-hot), then
        the layers: a table that E4 looks up for each (query, key) pair."""
        if enc.kind == "pairs":
            if len(q_tokens) != 1:
                return self.error("unsupported", "pairs(T) indexes one axis", enc.span)
            d, name = enc.radius[0] ** 2, "pair"
        else:
            radii = self.radii(enc, len(q_tokens))
            if radii is POISON:
                return POISON
            d, name = math.prod(2 * r + 1 for r in radii), "offsets"
        t = TensorType((Axis(name, d), Axis("R", d)))
        node = self.add("offsets", (x.node,), t, enc.span, size=d)
        r = Tensor(node, t)
        layers = list(enc.layers)
        if layers and _bias_free_linear(layers[0]) and layers[0].op == "linear" and \
                layers[0].config.get("groups", 1) == 1:
            # a linear map of one-hot rows is its weight, read as a table: the one-hot rows
            # (T² of them for pairs(T)) are never built
            r = self.apply(layers.pop(0), r, arg.span, "position")
            if r is POISON:
                return POISON
            lin = self.ir.node(r.node)
            self.ir.replace([node, lin.name], Node(lin.name, "table", (), lin.type, lin.role,
                                                   lin.span, {}, lin.module))
        for layer in layers:
            r = self.apply(layer, r, arg.span, "position")
            if r is POISON:
                return POISON
        return r

    def call_offsets(self, e: Call):
        """`offsets(R)` (every axis) or `offsets(R1, R2)` (one radius per axis)."""
        if not e.args or e.kwargs:
            return self.error("wrong-arity", f"{e.func.id} takes its radius: {e.func.id}(R), "
                              f"or one per axis", e.span)
        radii = [self.value(a, "scalar") for a in e.args]
        if POISON in radii:
            return POISON
        if UNKNOWN in radii:
            return POISON if self.check_only else UNKNOWN
        for a, r in zip(e.args, radii):
            if isinstance(r, bool) or not isinstance(r, int) or r < 0:
                return self.error("wrong-type", f"an offset radius is a non-negative integer, "
                                  f"not {describe(r)}", a.span)
        return Encoding(0, 0.0, 0, e.span, radius=tuple(radii), kind=e.func.id)

    call_bilinear = call_offsets

    def call_pairs(self, e: Call):
        """`pairs(T, within = w)`: a one-hot of the absolute (query, key) positions, for the
        first T of each (AFT-full's learned w_{t,t'}); pairs farther apart than `within`, or
        beyond T, give 0 (AFT-local)."""
        if len(e.args) != 1 or any(kw.name != "within" for kw in e.kwargs):
            return self.error("wrong-arity", "pairs takes the largest length and `within`: "
                              "pairs(T, within = w)", e.span)
        values = [self.value(a, "scalar") for a in (e.args[0], *(kw.value for kw in e.kwargs))]
        if POISON in values:
            return POISON
        if UNKNOWN in values:
            return POISON if self.check_only else UNKNOWN
        for a, v in zip((e.args[0], *(kw.value for kw in e.kwargs)), values):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                return self.error("wrong-type", f"pairs takes non-negative integers, not "
                                  f"{describe(v)}", a.span)
        within = values[1] if len(values) > 1 else None
        return Encoding(0, 0.0, 0, e.span, radius=(values[0],), kind="pairs", within=within)

    def radii(self, enc: Encoding, n: int):
        """One radius per indexed axis: `offsets(R)` repeats R."""
        if len(enc.radius) not in (1, n):
            return self.error("wrong-arity", f"{enc.kind} takes one radius or one per axis "
                              f"({n}), not {len(enc.radius)}", enc.span)
        return enc.radius * n if len(enc.radius) == 1 else enc.radius

    def call_identity(self, e: Call):
        """identity(term): weights used as they are, no normaliser (convolution as
        attention); of a tensor, the tensor."""
        if e.args and not _maybe_logits(e.args[0]):
            return self.op_call("identity", e)
        return self.normaliser(e, "unnormalised")

    def call_sinusoid(self, e: Call):
        args = self.keywords(e, ("dim",), ("wave", "magnitude"))
        if args is POISON:
            return POISON
        dim = self.value(args["dim"], "scalar")
        wave = self.value(args["wave"], "scalar") if "wave" in args else 1000.0
        magnitude = self.value(args["magnitude"], "scalar") if "magnitude" in args else 1
        if POISON in (dim, wave, magnitude):
            return POISON
        if UNKNOWN in (dim, wave, magnitude):
            return POISON if self.check_only else UNKNOWN
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            return self.error("zero-size", f"sinusoid needs a positive dim, not {dim!r}",
                              args["dim"].span)
        for key, v in (("wave", wave), ("magnitude", magnitude)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                return self.error("wrong-type", f"`{key}` must be a positive number, not "
                                  f"{describe(v)}", args[key].span)
        return Encoding(dim, float(wave), magnitude, e.span)

    def call_partition(self, e: Call):
        if len(e.args) != 1 or e.kwargs:
            return self.error("wrong-arity", "partition takes the number of parts per axis: "
                              "partition(s)", e.span)
        s = self.value(e.args[0], "scalar")
        if s in (POISON, UNKNOWN):
            return s
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            return self.error("wrong-type", f"partition needs a positive number of parts, "
                              f"not {describe(s)}", e.args[0].span)
        return PartitionRange(s)

    def call_window(self, e: Call):
        if len(e.args) != 1 or e.kwargs:
            return self.error("wrong-arity", "window takes one radius: window(R)", e.span)
        r = self.value(e.args[0], "scalar")
        if r in (POISON, UNKNOWN):
            return r
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            return self.error("wrong-type", f"a window's radius is a non-negative integer, "
                              f"not {describe(r)}", e.args[0].span)
        return WindowRange(r)

    def sum_terms(self, e: BinOp, left: Logits, right: Logits):
        """E1(...) + E3(...): logits add; a term without queries is the same for every one."""
        if left.type.axes[1] != right.type.axes[1]:
            return self.error("heads", "terms with different head counts cannot be added",
                              e.span)
        sides = [(t.has_query, t.has_key) for t in (left, right)]
        if sides == [(True, False), (False, True)] or sides == [(False, True), (True, False)]:
            q_only = left if sides[0] == (True, False) else right
            over = self.core[1]
            full_t = TensorType((*q_only.type.axes, Axis(_key_axis_name(over[0][1], over[1][1]))))
        else:
            full_t = max((left, right), key=lambda t: (t.has_query and t.has_key,
                                                       t.has_key, t.has_query)).type
        node = self.add("add_terms", (left.node, right.node), full_t, e.span, base="terms",
                        op=e.op, query=(left.has_query, right.has_query),
                        key=(left.has_key, right.has_key))
        return Logits(node, full_t, left.has_query or right.has_query,
                      keys=left.keys or right.keys, has_key=left.has_key or right.has_key)

    def pointwise_logits(self, name: str, e: Call):
        """relu(E3(query = ...) + E3(key = ...)): a pointwise function of the logits."""
        if len(e.args) != 1 or e.kwargs:
            return self.error("wrong-arity", f"`{name}` of a weight term takes the term alone",
                              e.span)
        logits = self.value(e.args[0])
        if logits is POISON or not isinstance(logits, Logits):
            return logits if logits is POISON else self.op_call(name, e)
        return replace(logits, node=self.add(name, (logits.node,), logits.type, e.span))

    def keywords(self, e: Call, names: tuple[str, ...], optional: tuple[str, ...] = ()):
        """Arguments by keyword or position; every name in `names` is required."""
        allowed = names + optional
        given = {kw.name: kw.value for kw in e.kwargs}
        for kw in e.kwargs:
            if kw.name not in allowed:
                return self.error("unknown-argument", f"`{e.func.id}` has no argument "
                                  f"`{kw.name}`", kw.span, did_you_mean(kw.name, allowed))
        if len(e.args) > len(allowed):
            return self.error("wrong-arity", f"`{e.func.id}` takes {len(allowed)} arguments, "
                              f"got {len(e.args) + len(e.kwargs)}", e.span)
        for n, a in zip(allowed, e.args):
            given.setdefault(n, a)
        for n in names:
            if n not in given:
                return self.error("wrong-arity", f"`{e.func.id}` needs `{n} = ...`", e.span)
        return given

    def content(self, arg, source: Tensor, role: str, tokens):
        """A term's content: the layer or tensor `arg` (applied to `source`) and its feature
        axes, (POISON, POISON) after an error."""
        t = self.projection(arg, source, role)
        self.role = "weight"
        if t is POISON:
            return POISON, POISON
        f = self.feature(t, tokens, role, arg.span)
        return (POISON, POISON) if f is POISON else (t, f)

    def projection(self, arg, x: Tensor, role: str):
        self.role = role
        v = self.value(arg)
        if isinstance(v, Layer):
            v = self.apply(v, x, arg.span, role)
        if v is not POISON and not isinstance(v, Tensor):
            return self.error("wrong-type", f"the {role} must be a layer or tensor, not "
                              f"{describe(v)}", arg.span)
        return v

    def call_memory(self, e: Call):
        args = self.keywords(e, ("slots",), ("dim",))
        if args is POISON:
            return POISON
        slots = self.value(args["slots"], "scalar")
        dim = self.value(args["dim"], "scalar") if "dim" in args else None
        if slots is POISON or dim is POISON:
            return POISON
        if slots is UNKNOWN:
            return POISON if self.check_only else slots
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            return self.error("zero-size", f"memory needs a positive number of slots, not "
                              f"{slots!r}", args["slots"].span)
        name = args["slots"].id if isinstance(args["slots"], Name) else "S"
        return Memory(slots, dim, e.span, name)

    def normaliser(self, e: Call, op: str, **attrs):
        if not e.args:
            return Layer(e.func.id, {}, e.span)
        logits = self.value(e.args[0])
        if logits is POISON:
            return POISON
        if isinstance(logits, Tensor) and e.func.id == "sigmoid":
            return self.op_call("sigmoid", e)
        if not isinstance(logits, Logits):
            return self.error("wrong-type", f"`{e.func.id}` normalises a weight term such as "
                              f"E1(...), not {describe(logits)}", e.args[0].span)
        if not logits.has_key:
            return self.error("wrong-type", "a term of the query alone is the same for every "
                              "key: add a term of the key", e.args[0].span)
        x, over, rng, heads, pad = self.core
        source = logits.node
        if rng == "causal" and not logits.has_query:
            return self.error("unsupported", "range `causal` needs weights that depend on the "
                              "query; E3 alone does not", e.span, "use `range all`, or add E1")
        window = isinstance(rng, (WindowRange, PartitionRange))
        if window and not logits.has_query:
            return self.error("unsupported", f"range `{rng}` needs weights that depend on the "
                              "query; E3 alone does not", e.span, "use `range all`, or add E1")
        if rng in ("causal", "criss_cross") or window or pad is not None:
            if op not in ("softmax_keys", "sigmoid", "unnormalised"):
                what = f"range `{rng}`" if rng != "all" else "a mask"
                return self.error("unsupported", f"`{e.func.id}` cannot leave out keys: with "
                                  f"{what} use softmax or sigmoid", e.span)
            grid = over[0][1] if rng == "criss_cross" else None
            inputs = (source,) + ((pad.node,) if pad is not None else ())
            extra = {}
            if isinstance(rng, PartitionRange):
                extra = dict(partition=rng.parts, q_tokens=over[0][1])
            elif window:
                keys = self.ir.node(logits.keys).type
                extra = dict(window=rng.radius, keys_of=logits.keys, q_tokens=over[0][1],
                             k_tokens=over[1][1],
                             steps=tuple(keys.axis(a).step for a in over[1][1]))
            source = self.add("range", inputs, logits.type, e.span, role="range",
                              causal=rng == "causal", grid=grid, sizes_of=x.node,
                              fill=0.0 if op == "unnormalised" else None, **extra)
        node = self.add(op, (source,), logits.type, e.span, base=e.func.id, role="normaliser",
                        **attrs)
        return Weights(node, logits.type, logits.has_query)

    def call_softmax(self, e: Call):
        if e.args and not _maybe_logits(e.args[0]):  # a plain tensor, over a named axis
            return self.op_call("softmax", e)
        return self.normaliser(e, "softmax_keys")

    def call_sigmoid(self, e: Call):
        if e.args and not _maybe_logits(e.args[0]):
            return self.op_call("sigmoid", e)
        return self.normaliser(e, "sigmoid")

    def call_count(self, e: Call):
        return self.normaliser(e, "count")

    def call_double_norm(self, e: Call):
        if len(e.args) != 1:
            return self.error("wrong-arity", "double_norm takes one term", e.span)
        args = self.keywords(Call(span=e.span, func=e.func, kwargs=e.kwargs),
                             ("first", "then"), ("eps",))
        if args is POISON:
            return POISON
        x, over, rng, heads, pad = self.core
        q_name, k_name = "·".join(over[0][1]), _over_name(over[1])
        dims = {}
        for key in ("first", "then"):
            axis = self.axes(args[key])
            if axis is POISON:
                return POISON
            name = " ".join(axis).replace(" ", "·")
            if name == q_name:
                dims[key] = -2
            elif name == k_name:
                dims[key] = -1
            else:
                return self.error("axis-mismatch", f"`{key}` must name the query axis "
                                  f"{q_name} or the key axis {k_name}, not {name}",
                                  args[key].span)
        if dims["first"] == dims["then"]:
            return self.error("axis-mismatch", "double_norm normalises two different axes",
                              e.span)
        eps = self.value(args["eps"], "scalar") if "eps" in args else 1e-9
        return self.normaliser(Call(span=e.span, func=e.func, args=e.args), "double_norm",
                               first=dims["first"], then=dims["then"], eps=eps)

    def call_positions(self, e: Call):
        return self.error("wrong-type", "positions(...) belongs in `over`", e.span)

    call_channels = call_positions


def _maybe_logits(e) -> bool:
    if isinstance(e, Call) and isinstance(e.func, Name):
        return e.func.id in ("E1", "E2", "E3", "E4")
    if isinstance(e, BinOp):
        return _maybe_logits(e.left) or _maybe_logits(e.right)
    if isinstance(e, IfElse):
        return _maybe_logits(e.then) or _maybe_logits(e.orelse)
    if isinstance(e, UnaryOp):
        return _maybe_logits(e.operand)
    return False


def _bias_free_linear(layer: Layer) -> bool:
    return layer.op == "identity" or layer.op == "linear" and layer.config.get("bias") is False


def _is_memory_call(e) -> bool:
    return isinstance(e, Call) and isinstance(e.func, Name) and e.func.id == "memory"


def _over_name(spec) -> str:
    kind, what = spec
    return what.name if kind == "memory" else "·".join(what)


_key_axis_name = key_axis


def _logits_type(x: Tensor, heads: int, q_tokens, key_axis: Axis) -> TensorType:
    return TensorType((x.type.axes[0], Axis("M", heads), Axis("·".join(q_tokens)), key_axis))
