"""The weight's terms of relative position: E2 and E4, the encodings of the offset between a
query and a key (sinusoid, offsets, bilinear, pairs), and the ranges defined by positions
(window, partition, blocks)."""

from __future__ import annotations

import math
from dataclasses import replace

from ..attend import key_axis, width
from ..ir import Axis, Node, TensorType
from ..spec import Call, Name
from ..values import (
    POISON,
    UNKNOWN,
    BlocksRange,
    Encoding,
    Logits,
    PartitionRange,
    Tensor,
    WindowRange,
)
from .base import describe
from .terms import _bias_free_linear, _logits_type


class Positions:
    """E2, E4 and their encodings; `range window(R)`, `partition(s)` and `blocks(b)`."""

    def call_E2(self, e: Call):
        """Query content × relative position: (U z_q) · (V^R R_{q−k}), per head; or, with
        `key =`, the key's content × the query's offset from it (PSANet's distribution)."""
        x, over, _, heads, _ = self.core
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
        if self.split_heads(q.type, qf, heads, args[side].span) is POISON:
            return POISON
        enc = self.peek_encoding(args["position"])
        if isinstance(enc, Encoding) and enc.of_query:
            return self.error("unsupported", "offsets(R, of = query) orders an E4 table (a "
                              "score per offset and head); E2 reads k − q", enc.span,
                              "use offsets(R)")
        if isinstance(enc, Encoding) and enc.kind == "bilinear" and side == "query":
            return self.bilinear(e, q, qf, d, keys, args["position"])
        if isinstance(enc, Encoding) and enc.kind == "offsets" and not enc.layers:
            return self.offset_maps(e, q, qf, d, keys, enc, side)
        if isinstance(enc, Encoding) and enc.kind == "absolute":
            return self.absolute_maps(e, q, qf, d, keys, enc, side)
        if side == "key":
            if self.kv not in (heads, None):
                return self.error("unsupported", "E2(key = ...) predicts a map per head: it "
                                  "is not shared by `kv` heads", e.span)
            return self.error("unsupported", "E2(key = ...) reads predicted maps: "
                              "position = offsets(R)", args["position"].span)
        return self.embedded_E2(e, args, q, qf, d, keys)

    def embedded_E2(self, e: Call, args: dict, q: Tensor, qf, d, keys: Tensor):
        """E2 against an embedding of the offsets (a sinusoid or a learned vector per
        offset, through layers): the embedding plays the key, one logit per key."""
        x, over, _, heads, _ = self.core
        q_tokens = over[0][1]
        r = self.encode(args["position"], x, keys, q_tokens, over[1][1])
        if r is POISON:
            return POISON
        width_r = r.type.axes[-1].size
        if d is None and width_r is not None and not self.check_only:
            free = [a for a in qf if q.type.axis(a).size is None]
            return self.error("unknown-size", f"the position gives {width_r} features per "
                              f"offset, but the query's width is known only at run time "
                              f"(its axis {free[0] if free else qf[0]}): a head's width "
                              f"must be fixed to meet a table", args["query"].span)
        # the position plays the key: with `kv = G` one table per group of heads; a head's
        # width, one table for every head (AA-Net's and HaloNet's relative embeddings)
        dr = None if None in (d, self.kv) else d // heads * self.kv
        shared = d // heads if d is not None and self.kv == heads else dr  # `kv = G`: G
        # tables, as the keys
        if None not in (dr, width_r) and width_r not in (dr, shared):
            return self.error("axis-mismatch", f"the position gives {width_r} "
                              f"features per offset, the query's heads read {dr}"
                              + (f" (or {shared}: one table for every head)"
                                 if shared != dr else ""),
                              args["position"].span, f"end it with linear({dr}, bias = false)")
        t = _logits_type(x, heads, q_tokens, Axis(key_axis(q_tokens, over[1][1])))
        common = dict(base="e2", heads=heads, kv=self.kv, q_tokens=q_tokens, q_feature=qf,
                      k_tokens=over[1][1])
        if r.type.axes[0].name == "offsets":  # a learned vector per joint offset
            radii = self.radii(self.value(args["position"]), len(q_tokens))
            if None in radii:
                return self.error("unsupported", "E2 reads a table of fixed radii; the "
                                  "queries' sizes here are known only at run time",
                                  args["position"].span, "give the radii: displacement(R)")
            node = self.add("E2_table", (q.node, r.node, x.node, keys.node), t, e.span,
                            radii=radii, **common,
                            steps=tuple(keys.type.axis(a).step for a in over[1][1]))
        else:
            node = self.add("E2", (q.node, r.node, keys.node), t, e.span, sizes_of=x.node,
                            **common)
        return Logits(node, t, True, keys=keys.node)

    def peek_encoding(self, arg):
        """The encoding an argument names, without building anything (no layers apply)."""
        if isinstance(arg, Call) and isinstance(arg.func, Name) and \
                arg.func.id in ("bilinear", "offsets", "absolute"):
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
        t = _logits_type(x, heads, q_tokens, Axis(key_axis(q_tokens, over[1][1])))
        node = self.add("E2_offsets", (p.node, x.node, keys.node), t, e.span, base="e2",
                        heads=heads, q_tokens=q_tokens, q_feature=pf, k_tokens=over[1][1],
                        radii=radii, key_side=side == "key", steps=steps)
        return Logits(node, t, True, keys=keys.node)

    def absolute_maps(self, e: Call, p: Tensor, pf, d, keys: Tensor, enc: Encoding, side: str):
        """E2 on absolute(T): the query gives, per head, one logit for each of the first T
        key positions, read at the key's index; 0 beyond T (Luong's location score)."""
        x, over, rng, heads, pad = self.core
        q_tokens, k_tokens = over[0][1], over[1][1]
        longest = enc.radius[0]
        if side == "key" or enc.layers:
            return self.error("unsupported", "absolute(T) is read by E2 from the query, "
                              "without layers: the query gives one logit per key position",
                              e.span, f"E2(query = linear({longest * heads}, bias = false), "
                              f"position = absolute({longest}))")
        if len(k_tokens) != 1:
            return self.error("unsupported", f"absolute(T) indexes the keys of one axis, not "
                              f"{len(k_tokens)}", enc.span)
        if keys.type.axis(k_tokens[0]).step != 1:
            return self.error("unsupported", "absolute(T) reads each key's index: not on "
                              "pooled keys", enc.span)
        if d is not None and d != longest * heads:
            return self.error("axis-mismatch", f"with absolute({longest}) the query gives one "
                              f"logit per key position and head: a width of "
                              f"{longest * heads}, not {d}", e.span,
                              f"end the query with linear({longest * heads}, bias = false)")
        t = _logits_type(x, heads, q_tokens, Axis(key_axis(q_tokens, k_tokens)))
        node = self.add("E2_absolute", (p.node, x.node, keys.node), t, e.span, base="e2",
                        heads=heads, q_tokens=q_tokens, q_feature=pf, k_tokens=k_tokens,
                        longest=longest)
        return Logits(node, t, True, keys=keys.node)

    def bilinear(self, e: Call, q: Tensor, qf, d, keys: Tensor, arg):
        """Deformable sampling: head m reads the input at q + p_m + δ_m(z_q), p_m its
        kernel position, with the bilinear kernel Π_a max(0, 1 − |k_a − position_a|)."""
        x, over, rng, heads, pad = self.core
        enc = self.value(arg)
        if enc is POISON:
            return POISON
        n, q_tokens = len(over[0][1]), over[0][1]
        radii = self.radii(enc, n, by_index=False)  # it reads each query's position
        if radii is POISON:
            return POISON
        points = math.prod(2 * r + 1 for r in radii)
        if heads != points * enc.groups:
            groups = f" times {enc.groups} groups" if enc.groups > 1 else ""
            return self.error("heads", f"bilinear samples one point per kernel position"
                              f"{groups}: heads must be {points * enc.groups}, not {heads}",
                              arg.span)
        if d is not None and d != n * heads:
            return self.error("axis-mismatch", f"the query must give a displacement of {n} per "
                              f"head: a width of {n * heads}, not {d}", e.span)
        t = _logits_type(x, heads, q_tokens, Axis(key_axis(q_tokens, over[1][1])))
        node = self.add("E2_bilinear", (q.node, x.node, keys.node), t, e.span, base="e2",
                        heads=heads, q_tokens=q_tokens, q_feature=qf, k_tokens=over[1][1],
                        radii=radii, dilation=enc.dilation,
                        steps=tuple(keys.type.axis(a).step for a in over[1][1]),
                        q_steps=tuple(x.type.axis(a).step for a in q_tokens))
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
        g = r.type.axes[-1].size
        if g is not None and (g < 1 or heads % g):
            return self.error("axis-mismatch", f"E4's position gives one score per offset and "
                              f"head, for every head, or per group of heads: a width that "
                              f"divides {heads}, not {g}", args["position"].span,
                              f"end it with linear({heads}, bias = false)")
        q_tokens = over[0][1]
        t = _logits_type(x, heads, q_tokens, Axis(key_axis(q_tokens, over[1][1])))
        radii, pairs = None, None
        enc = self.value(args["position"])
        if enc.kind in ("offsets", "displacement"):  # a table per joint offset, looked up
            radii = self.radii(enc, len(q_tokens))  # None: the queries' sizes at run time
            radii = None if None in radii else radii
        elif enc.kind == "pairs":  # a table per absolute pair
            pairs = (enc.radius[0], enc.within)
        node = self.add("E4", (r.node, x.node, keys.node), t, e.span, base="e4", heads=heads,
                        q_tokens=q_tokens, k_tokens=over[1][1], radii=radii, pairs=pairs,
                        sized=enc.kind == "displacement" and radii is None,
                        steps=tuple(keys.type.axis(a).step for a in over[1][1]),
                        flip=enc.of_query)
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
        if enc.kind in ("offsets", "pairs", "displacement"):
            return self.offsets_table(enc, arg, x, q_tokens, k_tokens, keys)
        if enc.kind == "absolute":
            return self.error("unsupported", "absolute(T) is read by E2: the query gives "
                              "one logit per key position", enc.span,
                              "E2(query = linear(T, bias = false), position = absolute(T))")
        if enc.kind == "bilinear":
            return self.error("unsupported", "bilinear(R) samples at a displacement the query "
                              "predicts: E2(query = ..., position = bilinear(R))", enc.span)
        if enc.kind == "distance":  # |q − k| per axis: one number each
            enc = replace(enc, dim=n)
        elif enc.kind == "axis_offsets":  # a one-hot per axis, side by side
            radii = self.radii(enc, n, by_index=False)
            if radii is POISON:
                return POISON
            enc = replace(enc, dim=sum(2 * r + 1 for r in radii), radius=tuple(radii))
        elif enc.dim % (2 * n):
            return self.error("shape", f"sinusoid's dim {enc.dim} must split into a sine and a "
                              f"cosine half for each of the {n} axes: a multiple of {2 * n}",
                              enc.span)
        layers = [p for layer in enc.layers for p in (layer.parts or (layer,))]
        if n > 1 and any(not _bias_free_linear(p) for p in layers):
            return self.error("unsupported", "with several axes the position layers must be "
                              "bias-free linear maps: the offset of each axis is encoded on "
                              "its own and the results added", enc.span,
                              "use linear(D, bias = false)")
        t = TensorType((Axis("pairs"), Axis("R", enc.dim)), batched=False)
        steps = tuple(keys.type.axis(a).step for a in k_tokens)
        q_steps = tuple(x.type.axis(a).step for a in q_tokens)  # queries every s-th: s
        if enc.kind in ("distance", "axis_offsets"):
            node = self.add(enc.kind, (x.node, keys.node), t, enc.span, q_tokens=q_tokens,
                            k_tokens=k_tokens, steps=steps, q_steps=q_steps,
                            **({"radii": enc.radius} if enc.kind == "axis_offsets" else {}))
        else:
            node = self.add("sinusoid", (x.node, keys.node), t, enc.span, q_tokens=q_tokens,
                            k_tokens=k_tokens, steps=steps, q_steps=q_steps, dim=enc.dim,
                            wave=enc.wave, magnitude=enc.magnitude)
        return self.layers_after(Tensor(node, t), enc.layers, arg)

    def offsets_table(self, enc: Encoding, arg, x: Tensor, q_tokens, k_tokens, keys: Tensor):
        """`offsets(R)`: one row per joint offset within R on every axis (a one-hot), then
        the layers: a table that E4 looks up for each (query, key) pair."""
        if enc.kind == "pairs":
            if len(q_tokens) != 1 or self.strided_queries():
                return self.error("unsupported", "pairs(T) indexes one axis, every position",
                                  enc.span)
            d, name = enc.radius[0] ** 2, "pair"
        else:
            radii = self.radii(enc, len(q_tokens))
            if radii is POISON:
                return POISON
            d = None if None in radii else math.prod(2 * r + 1 for r in radii)
            name = "offsets"
        if enc.kind == "displacement":  # each offset's q − k, one number per axis
            t = TensorType((Axis(name, d), Axis("R", len(q_tokens))), batched=False)
            node = self.add("displacement", (x.node,), t, enc.span,
                            radii=None if d is None else radii, q_tokens=q_tokens)
            return self.layers_after(Tensor(node, t), enc.layers, arg)
        t = TensorType((Axis(name, d), Axis("R", d)), batched=False)
        node = self.add("offsets", (x.node,), t, enc.span, size=d)
        r = Tensor(node, t)
        layers = [p for layer in enc.layers for p in (layer.parts or (layer,))]
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
        return self.layers_after(r, layers, arg)

    def layers_after(self, table: Tensor, layers, arg):
        """The layers after `>>` applied to an encoding's table, in order; E2 and E4 look
        its rows up, so the result must keep them, one vector each."""
        r = table
        for layer in layers:
            r = self.apply(layer, r, arg.span, "position")
            if r is POISON:
                return POISON
        rows = table.type.axes[0]
        if len(r.type.axes) != 2 or r.type.axes[0] != rows:
            return self.error("axis-mismatch", f"the layers after `>>` must keep the "
                              f"table's rows, one vector each: {table.type} became "
                              f"{r.type}", arg.span, "layers on the features (the last "
                              f"axis), or that keep the type, such as standardise({rows.name})")
        return r

    def call_offsets(self, e: Call):
        """`offsets(R)` (every axis) or `offsets(R1, R2)` (one radius per axis);
        `displacement()`: every offset the queries' grid holds."""
        if e.func.id == "displacement" and not e.args and not e.kwargs:
            return Encoding(0, 0.0, 0, e.span, radius=(), kind="displacement")
        of = [kw for kw in e.kwargs if kw.name == "of"] if e.func.id == "offsets" else []
        if not e.args or len(e.kwargs) > len(of):
            return self.error("wrong-arity", f"{e.func.id} takes its radius: {e.func.id}(R), "
                              f"or one per axis" + (", and `of`" if e.func.id == "offsets"
                                                    else ""), e.span)
        side = self.value(of[0].value, "word") if of else None
        if side is POISON:
            return POISON
        if side is not None and getattr(side, "name", None) not in ("key", "query"):
            return self.error("wrong-type", "`of` is `key` (the key's offset from the query, "
                              "k − q: the default) or `query` (q − k)", of[0].value.span)
        radii = self.integers(e.args, 0, "an offset radius is a non-negative integer")
        if radii in (POISON, UNKNOWN):
            return POISON if self.check_only else radii
        return Encoding(0, 0.0, 0, e.span, radius=tuple(radii), kind=e.func.id,
                        of_query=side is not None and side.name == "query")

    def call_bilinear(self, e: Call):
        """`bilinear(R)`, one radius per axis or one for all; `dilation = d` spreads the
        kernel's positions d apart, `groups = G` gives each kernel position G heads of
        their own displacements (deformable convolution's offset groups)."""
        settings = [kw for kw in e.kwargs if kw.name in ("dilation", "groups")]
        if not e.args or len(settings) != len(e.kwargs):
            return self.error("wrong-arity", "bilinear takes its radius: bilinear(R), or one "
                              "per axis, and `dilation` and `groups`", e.span)
        radii = self.integers(e.args, 0, "a kernel radius is a non-negative integer")
        given = self.integers([kw.value for kw in settings], 1,
                              "a dilation or a number of groups is a positive integer")
        if POISON in (radii, given) or UNKNOWN in (radii, given):
            return POISON if self.check_only or POISON in (radii, given) else UNKNOWN
        options = {kw.name: v for kw, v in zip(settings, given)}
        return Encoding(0, 0.0, 0, e.span, radius=tuple(radii), kind="bilinear", **options)

    call_displacement = call_offsets

    def call_axis_offsets(self, e: Call):
        """`axis_offsets(R)` (every axis) or `axis_offsets(R1, R2)`: each axis's offset k − q
        as a one-hot of its own, the axes' one-hots side by side; after a bias-free linear
        map, a learned vector per offset on each axis, the axes' vectors added."""
        if not e.args or e.kwargs:
            return self.error("wrong-arity", "axis_offsets takes its radius: axis_offsets(R), "
                              "or one per axis", e.span)
        radii = self.integers(e.args, 0, "an offset radius is a non-negative integer")
        if radii in (POISON, UNKNOWN):
            return POISON if self.check_only else radii
        return Encoding(0, 0.0, 0, e.span, radius=tuple(radii), kind="axis_offsets")

    def call_pairs(self, e: Call):
        """`pairs(T, within = w)`: a one-hot of the absolute (query, key) positions, for the
        first T of each (AFT-full's learned w_{t,t'}); pairs farther apart than `within`, or
        beyond T, give 0 (AFT-local)."""
        if len(e.args) != 1 or any(kw.name != "within" for kw in e.kwargs):
            return self.error("wrong-arity", "pairs takes the largest length and `within`: "
                              "pairs(T, within = w)", e.span)
        values = self.integers((e.args[0], *(kw.value for kw in e.kwargs)), 0,
                               "pairs takes non-negative integers")
        if values in (POISON, UNKNOWN):
            return POISON if self.check_only else values
        if values[0] == 0:  # no pair at all: a table of nothing
            return self.error("zero-size", "pairs needs a positive length, not 0", e.args[0].span,
                              "T is the longest sequence the table covers: pairs(T)")
        within = values[1] if len(values) > 1 else None
        return Encoding(0, 0.0, 0, e.span, radius=(values[0],), kind="pairs", within=within)

    def call_absolute(self, e: Call):
        """`absolute(T)`: a one-hot of the key's index among the first T positions of its
        axis; E2's query gives one logit for each (Luong's location score, W_a h_t)."""
        if len(e.args) != 1 or e.kwargs:
            return self.error("wrong-arity", "absolute takes the number of key positions it "
                              "covers: absolute(T)", e.span)
        values = self.integers(e.args, 0, "absolute takes a number of key positions")
        if values in (POISON, UNKNOWN):
            return POISON if self.check_only else values
        if values[0] == 0:  # no position at all: a score for nothing
            return self.error("zero-size", "absolute needs a positive number of positions, "
                              "not 0", e.args[0].span,
                              "T is the longest sequence of keys it scores: absolute(T)")
        return Encoding(0, 0.0, 0, e.span, radius=(values[0],), kind="absolute")

    def radii(self, enc: Encoding, n: int, by_index: bool = True):
        """One radius per indexed axis: `offsets(R)` repeats R. Offset tables are indexed by
        the query's and key's indices: the queries must be every position."""
        if by_index and self.strided_queries():
            return self.error("unsupported", f"{enc.kind}(...) looks a table up by the query's "
                              f"index: not on queries every s-th position", enc.span,
                              "use sinusoid(...) or distance(), which read the positions")
        if not enc.radius:  # displacement(): n − 1 on an axis of n queries, maybe at run time
            return tuple(None if a.size is None else a.size - 1
                         for a in (self.core[0].type.axis(q) for q in self.core[1][0][1]))
        if len(enc.radius) not in (1, n):
            return self.error("wrong-arity", f"{enc.kind} takes one radius or one per axis "
                              f"({n}), not {len(enc.radius)}", enc.span)
        return enc.radius * n if len(enc.radius) == 1 else enc.radius

    def strided_queries(self) -> bool:
        """Do the queries sit every s-th position (s > 1) of an indexed axis?"""
        x, over = self.core[0], self.core[1]
        return any(x.type.axis(a).step != 1 for a in over[0][1])

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

    def call_distance(self, e: Call):
        """`distance()`: |q − k| in input positions, one number per indexed axis (ALiBi's
        linear bias is a per-head slope times it)."""
        if e.args or e.kwargs:
            return self.error("wrong-arity", "distance takes no arguments: distance()", e.span)
        return Encoding(0, 0.0, 0, e.span, kind="distance")

    def call_partition(self, e: Call):
        if len(e.args) != 1 or e.kwargs:
            return self.error("wrong-arity", "partition takes the number of parts per axis: "
                              "partition(s)", e.span)
        s = self.integers(e.args, 1, "partition needs a positive number of parts")
        return s if s in (POISON, UNKNOWN) else PartitionRange(s[0])

    def call_blocks(self, e: Call):
        """`blocks(b, shift = s)`: Swin's (shifted) windows; `blocks(b, halo = h, edge = e)`:
        HaloNet's haloed blocks, the keys beyond the map left out (`mask`) or attended as
        zero vectors (`zeros`)."""
        names = [kw.name for kw in e.kwargs]
        if len(e.args) != 1 or any(k not in ("shift", "halo", "edge") for k in names) or \
                len(set(names)) < len(names) or "shift" in names and "halo" in names or \
                "edge" in names and "halo" not in names:
            return self.error("wrong-arity", "blocks takes a block size and a shift, or a "
                              "halo and an edge: blocks(b, shift = s), blocks(b, halo = h, "
                              "edge = mask | zeros)", e.span)
        given = {kw.name: kw for kw in e.kwargs}
        b = self.integers(e.args, 1, "a block's size is a positive integer")
        s = self.integers([kw.value for kw in e.kwargs if kw.name != "edge"], 0,
                          f"a {'halo' if 'halo' in given else 'shift'} is a non-negative "
                          "integer")
        edge = self.value(given["edge"].value, "word") if "edge" in given else "mask"
        if POISON in (b, s, edge) or UNKNOWN in (b, s, edge):
            return POISON if POISON in (b, s, edge) else UNKNOWN
        edge = getattr(edge, "name", edge)  # a word, or a choice parameter's value
        if edge not in ("mask", "zeros"):
            return self.error("wrong-type", "`edge` is `mask` (keys beyond the map are left "
                              "out: the default) or `zeros` (they are zero vectors, attended)",
                              given["edge"].value.span)
        if "halo" in given:
            return BlocksRange(b[0], halo=s[0], zeros=edge == "zeros")
        if s and s[0] >= b[0]:
            return self.error("wrong-type", f"a shift is less than the block size ({b[0]}), "
                              f"not {s[0]}", e.kwargs[0].value.span,
                              "a shift of s + b cuts where s does: give one below b (Swin "
                              "shifts by b / 2)")
        return BlocksRange(b[0], s[0] if s else 0)

    def call_window(self, e: Call):
        if len(e.args) != 1 or any(kw.name not in ("dilation", "dilated_heads", "causal",
                                                   "global", "centre") for kw in e.kwargs):
            return self.error("wrong-arity", "window takes one radius, a dilation (and the "
                              "heads it applies to), whether it is causal, its global tokens "
                              "and a centre: window(R, dilation = d, dilated_heads = k, "
                              "causal = true, global = g, centre = p)", e.span)
        r = self.integers(e.args, 0, "a window's radius is a non-negative integer")
        d = self.integers([kw.value for kw in e.kwargs if kw.name == "dilation"], 1,
                          "a window's dilation is a positive integer")
        k = self.integers([kw.value for kw in e.kwargs if kw.name == "dilated_heads"], 0,
                          "the number of dilated heads is a non-negative integer")
        flag = next((kw.value for kw in e.kwargs if kw.name == "causal"), None)
        causal = [] if flag is None else [self.value(flag, "scalar")]
        given = next((kw.value for kw in e.kwargs if kw.name == "global"), None)
        marked = self.global_tokens(given)
        at = next((kw.value for kw in e.kwargs if kw.name == "centre"), None)
        centre = self.window_centre(at)
        if POISON in (r, d, k, *causal, marked, centre) or UNKNOWN in (r, d, k, *causal):
            return POISON if POISON in (r, d, k, *causal, marked, centre) else UNKNOWN
        if causal and not isinstance(causal[0], bool):
            return self.error("wrong-type", f"a window's `causal` is true or false, not "
                              f"{describe(causal[0])}", flag.span)
        name = given.id if isinstance(given, Name) else "…"
        return WindowRange(r[0], d[0] if d else 1, bool(causal and causal[0]), marked, name,
                           centre, at.id if isinstance(at, Name) else "…",
                           k[0] if k else None)

    def window_centre(self, e):
        """`window(R, centre = p)`: p, a tensor of numbers (its layout, one per query, is
        checked in Formulation.formulation)."""
        if e is None:
            return None
        p = self.value(e)
        if p is POISON:
            return POISON
        if not isinstance(p, Tensor) or p.type.dtype == "bool":
            return self.error("wrong-type", f"a window's `centre` takes a tensor of positions, "
                              f"one per query, not {describe(p)}", e.span,
                              "e.g. `let p = length(memory, pad, over = S) * sigmoid(...)`")
        return p

    def global_tokens(self, e):
        """`window(..., global = g)`: g, a bool input marking tokens (its layout is checked
        against the keys' axes as the mask's, in Formulation.formulation)."""
        if e is None:
            return None
        g = self.value(e)
        if g is POISON:
            return POISON
        if not isinstance(g, Tensor) or g.type.dtype != "bool":
            return self.error("wrong-type", f"a window's `global` takes a bool input, not "
                              f"{describe(g)}", e.span,
                              "declare it as `input glob: [B, N] bool optional`")
        return g

    def integers(self, exprs, minimum: int, what: str):
        """Arguments that must be integers of at least `minimum`: their values; POISON
        after an error (`what`, then the value given), UNKNOWN while one waits for a
        parameter's value."""
        values = [self.value(a, "scalar") for a in exprs]
        if POISON in values or UNKNOWN in values:
            return POISON if POISON in values else UNKNOWN
        for a, v in zip(exprs, values):
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                return self.error("wrong-type", f"{what}, not {describe(v)}", a.span)
        return values
