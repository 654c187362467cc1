"""The weight's terms and normalisers: E1, E3 (of the key, of the query, with several
contexts, of memory slots), memory(S), sums and pointwise functions of terms, softmax,
sigmoid, count, double_norm, l1, identity (E2, E4 and positions: positions.py)."""

from __future__ import annotations

from dataclasses import replace

from .. import attend  # noqa: F401  (registers the formulation's operators)
from ..attend import key_axis, width
from ..diagnostics import did_you_mean
from ..ir import Axis, TensorType
from ..ops import OPS, _nth
from ..source import Span
from ..spec import BinOp, Call, IfElse, Name, UnaryOp
from ..values import (
    POISON,
    UNKNOWN,
    BlocksRange,
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
        args = self.keywords(e, ("query", "key"), ("combine",))
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
        if self.split_heads(q.type, qf, heads, args["query"].span) is POISON:
            return POISON
        if isinstance(k, Memory):
            return self.memory_logits(q, qf, d, k, args["key"].span, e.span)
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
        dk = width(k.type, kf)
        if None not in (d, dk, self.kv) and d * self.kv != dk * heads:
            shared = "" if self.kv == heads else \
                f" (with kv = {self.kv}, the key's width is {d // heads * self.kv})"
            return self.error("axis-mismatch", f"query and key widths differ: {q.type} vs "
                              f"{k.type}{shared}", e.span)
        t = _logits_type(x, heads, q_tokens, Axis(key_axis(q_tokens, k_tokens)))
        attrs = dict(heads=heads, q_tokens=q_tokens, q_feature=qf, k_tokens=k_tokens,
                     k_feature=kf, kv=self.kv)
        if "combine" in args:
            return self.additive(args["combine"], q, k, t, attrs, e.span)
        node = self.add("E1", (q.node, k.node), t, e.span, base="e1", **attrs)
        return Logits(node, t, True, keys=k.node)

    def memory_logits(self, q: Tensor, qf, d, k: Memory, key_span: Span, span: Span):
        """`E1(query = P, key = memory(S))`: the query's content against S learned key
        slots, a bias-free linear map from a head's features to S, shared by the heads."""
        x, over, _, heads, _ = self.core
        if over[1][0] != "memory" or over[1][1].slots != k.slots:
            return self.error("wrong-type", "a key memory(S) needs `over positions(...), "
                              "memory(S)` with the same S", key_span)
        per_head = d // heads if d is not None else None
        path = self.declare_module("key", "linear", {
            "in": per_head, "out": k.slots, "bias": False, "init": "default"}, k.span,
            name="memory")
        q_tokens = over[0][1]
        t = _logits_type(x, heads, q_tokens, Axis(_over_name(over[1]), k.slots))
        node = self.add("E1_memory", (q.node,), t, span, base="e1", module=path,
                        heads=heads, q_tokens=q_tokens, q_feature=qf, **{"in": per_head})
        return Logits(node, t, True)

    def additive(self, combine, q: Tensor, k: Tensor, t: TensorType, attrs, span):
        """`E1(query = P, key = P', combine = L)`: the score L((P x)_q + (P' x)_k) of every
        pair, per head, L a layer giving one number from a head's features (Bahdanau's and
        Luong's concat score: `combine = tanh >> linear(1, bias = false)`)."""
        layer = self.value(combine)
        if layer is POISON:
            return POISON
        if not isinstance(layer, Layer):
            return self.error("wrong-type", f"`combine` is a layer applied to the sum of a "
                              f"query and a key, not {describe(layer)}", combine.span,
                              "e.g. combine = tanh >> linear(1, bias = false)")
        if attrs["kv"] not in (attrs["heads"], None):
            return self.error("unsupported", "an additive score needs a key per head: not "
                              "with `kv`", span)
        d = width(q.type, attrs["q_feature"])
        pairs = TensorType((*t.axes, Axis("d", None if d is None else d // attrs["heads"])))
        node = self.add("E1_sum", (q.node, k.node), pairs, span, base="e1", **attrs)
        self.role = "weight"
        scores = self.apply(layer, Tensor(node, pairs), span, "weight")
        if scores is POISON:
            return POISON
        if scores.type.names[:-1] != t.names or scores.type.axes[-1].size != 1:
            return self.error("wrong-type", f"`combine` must give one score per pair and "
                              f"head, [{', '.join(pairs.names[:-1])}, 1], not {scores.type}",
                              combine.span, "end it with linear(1)")
        node = self.add("E1_scores", (scores.node,), t, span, base="e1")
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
        if over[1][0] == "memory":  # the keys are slots: no position of x to read
            slots = _over_name(over[1])
            return self.error("unsupported", f"with keys memory({slots}), E3's key is "
                              f"memory({slots}): a learned score per slot", args["key"].span)
        if self.kv not in (heads, None):
            return self.error("unsupported", "E3's key gives a score per head: it is not "
                              "shared by `kv` heads", e.span)
        k_tokens = over[1][1]
        k, kf = self.content(args["key"], self.kx, "key", k_tokens)
        if k is POISON:
            return POISON
        contexts = self.contexts(args, k, kf, heads)
        if contexts is POISON:
            return POISON
        axes = (x.type.axes[0], Axis("M", heads), *contexts,
                Axis(key_axis((), k_tokens)))
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

    def call_identity(self, e: Call):
        """identity(term): weights used as they are, no normaliser (convolution as
        attention); of a tensor, the tensor."""
        if e.args and not _maybe_logits(e.args[0]):
            return self.op_call("identity", e)
        return self.normaliser(e, "unnormalised")

    def sum_terms(self, e: BinOp, left: Logits, right: Logits):
        """E1(...) + E3(...): logits add; a term without queries is the same for every one."""
        if left.type.axes[1] != right.type.axes[1]:
            return self.error("heads", "terms with different head counts cannot be added",
                              e.span)
        sides = [(t.has_query, t.has_key) for t in (left, right)]
        if sides == [(True, False), (False, True)] or sides == [(False, True), (True, False)]:
            q_only = left if sides[0] == (True, False) else right
            over = self.core[1]
            full_t = TensorType((*q_only.type.axes, Axis(key_axis(over[0][1], over[1][1]))))
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
        if role == "query" and isinstance(v, Tensor):
            return self.on_query_grid(v, x, arg.span)
        return v

    def on_query_grid(self, q: Tensor, x: Tensor, span):
        """A query tensor given as it is must sit on the queries' grid (every s-th
        position with `positions(..., stride = s)`): a step of its own is an error."""
        off = [a for a in self.core[1][0][1] if a in q.type.names and a in x.type.names
               and q.type.axis(a).step != x.type.axis(a).step]
        if off:
            a = off[0]
            return self.error("axis-mismatch", f"the query holds every "
                              f"{_nth(q.type.axis(a).step)} position of {a}, the queries are "
                              f"every {_nth(x.type.axis(a).step)} position", span,
                              "give the layer (`query = linear(D)`), which reads x at the "
                              "queries' positions, or pool the tensor to their grid")
        return q

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
        if not e.args:  # a layer: with settings, the operator's (`softmax(over = C)`)
            return self.op_call(e.func.id, e) if e.kwargs else Layer(e.func.id, {}, e.span)
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
        _, _, rng, _, pad = self.core
        window = isinstance(rng, (WindowRange, PartitionRange, BlocksRange))
        if (rng == "causal" or window) and not logits.has_query:
            logits = self.every_query(logits, e.span)
            if logits is POISON:
                return POISON
        source = logits.node
        if rng in ("causal", "criss_cross") or window or pad is not None:
            source = self.restricted(e, op, logits)
            if source is POISON:
                return POISON
        node = self.add(op, (source,), logits.type, e.span, base=e.func.id, role="normaliser",
                        **attrs)
        return Weights(node, logits.type, logits.has_query)

    def restricted(self, e: Call, op: str, logits: Logits):
        """The logits restricted to each query's keys (the range Ω_q and the mask), a
        `range` node the normaliser reads."""
        x, over, rng, heads, pad = self.core
        if op not in ("softmax_keys", "sigmoid", "unnormalised", "l1_keys"):
            what = f"range `{rng}`" if rng != "all" else "a mask"
            return self.error("unsupported", f"`{e.func.id}` cannot leave out keys: with "
                              f"{what} use softmax or sigmoid", e.span)
        grid = over[0][1] if rng == "criss_cross" else None
        marked = rng.marked if isinstance(rng, WindowRange) else None
        centre = rng.centre if isinstance(rng, WindowRange) else None
        inputs = (logits.node, *(t.node for t in (pad, marked, centre) if t is not None))
        extra = {}
        if isinstance(rng, PartitionRange):
            extra = dict(partition=rng.parts, q_tokens=over[0][1])
        elif isinstance(rng, BlocksRange):
            if self.blocks_pooled(logits, over, e.span) is POISON:
                return POISON
            extra = dict(blocks=(rng.size, rng.shift), q_tokens=over[0][1],
                         **({} if rng.halo is None else {"halo": rng.halo,
                                                         "zeros": rng.zeros}))
        elif isinstance(rng, WindowRange):
            keys = self.ir.node(logits.keys).type
            extra = dict(window=rng.radius, dilation=rng.head_dilations(heads),
                         keys_of=logits.keys,
                         q_tokens=over[0][1],
                         k_tokens=over[1][1],
                         steps=tuple(keys.axis(a).step for a in over[1][1]),
                         q_steps=tuple(x.type.axis(a).step for a in over[0][1]),
                         marked=marked is not None, centred=centre is not None)
        causal = rng == "causal" or isinstance(rng, WindowRange) and rng.causal
        return self.add("range", inputs, logits.type, e.span, role="range",
                        causal=causal, grid=grid, sizes_of=x.node,
                        fill=0.0 if op in ("unnormalised", "l1_keys") else None, **extra)

    def blocks_pooled(self, logits: Logits, over, span):
        """Blocks cut the queries' and keys' positions alike: both every position."""
        x, keys = self.core[0].type, self.ir.node(logits.keys).type
        if any(t.axis(a).step != 1 for t in (x, keys) for a in over[0][1]):
            return self.error("unsupported", f"range `{self.core[2]}` cuts queries and keys "
                              "into the same blocks: not on pooled or strided positions",
                              span, "give the keys every position")
        return None

    def every_query(self, logits: Logits, span):
        """A key term (E3 alone: [B, M, K]) repeated for every query, [B, M, Q, K'], so that
        a causal or windowed range can leave out each query's own keys (causal AFT)."""
        over = self.core[1]
        q_tokens, k_tokens = over[0][1], over[1][1]
        axes = logits.type.axes
        if tuple(q_tokens) != tuple(k_tokens) or len(axes) != 3 or over[1][0] != "positions":
            return self.error("unsupported", f"range `{self.core[2]}` needs weights that "
                              "depend on the query; E3 alone does not, unless the keys are "
                              "the queries' own positions", span,
                              "use `range all`, or add E1")
        t = TensorType((*axes, Axis(key_axis(q_tokens, k_tokens), axes[2].size)))
        node = self.add("every_query", (logits.node,), t, span, base="terms",
                        q_tokens=tuple(q_tokens), k_tokens=tuple(k_tokens))
        return Logits(node, t, True, keys=logits.keys, has_key=True)

    def call_softmax(self, e: Call):
        if e.args and not _maybe_logits(e.args[0]):  # a plain tensor, over a named axis
            return self.op_call("softmax", e)
        return self.normaliser(e, "softmax_keys")

    def call_sigmoid(self, e: Call):
        if e.args and not _maybe_logits(e.args[0]):
            return self.op_call("sigmoid", e)
        return self.normaliser(e, "sigmoid")

    def call_dropout(self, e: Call):
        """dropout(weights, p): the normalised weights dropped while training, as torch's
        attention modules do (nn.MultiheadAttention's `dropout`); of a tensor, the layer."""
        if not (e.args and _is_weight(e.args[0])):
            return self.op_call("dropout", e)
        return self.layer_on_weights("dropout", e)

    def weights_arith(self, e, left, right):
        """Weights times a tensor of one number per (query, key) pair, after the normaliser
        (Luong's local-p: the Gaussian exp(−(s − p_t)² / 2σ²) scaling the window's
        softmax). The tensor's axes are the batch's, the queries' and the keys' (distinct
        names; any missing, or of size 1, stretches)."""
        w, t = (left, right) if isinstance(left, Weights) else (right, left)
        if e.op == "*" and (t is UNKNOWN or t == 1 and not isinstance(t, bool)):
            return w  # a factor left out, or one waiting for a parameter
        if e.op != "*" or not isinstance(t, Tensor) or t.type.dtype == "bool":
            return self.error("wrong-type", f"attention weights take `*` by a tensor of one "
                              f"number per (query, key) pair, not `{e.op}` with "
                              f"{describe(t)}", e.span)
        x, over = self.core[0], self.core[1]
        q_tokens, k_tokens = tuple(over[0][1]), tuple(over[1][1])
        if over[1][0] == "memory" or set(q_tokens) & set(k_tokens):
            return self.error("unsupported", "a factor per (query, key) pair names the query's "
                              "and the key's axes: they must differ (cross-attention, "
                              "`over positions(T), positions(S)`)", e.span)
        batch = x.type.names[0]
        extra = [a for a in t.type.names if a not in (batch, *q_tokens, *k_tokens)]
        if extra:
            return self.error("axis-mismatch", f"a factor of the weights has one number per "
                              f"(query, key) pair, [{', '.join((batch, *q_tokens, *k_tokens))}]"
                              f"; {t.type} has `{extra[0]}` too", e.span)
        node = self.add("pair_factor", (w.node, t.node), w.type, e.span, role="normaliser",
                        layout=(batch, *q_tokens, *k_tokens), q_count=len(q_tokens))
        return Weights(node, w.type, w.has_query)

    def layer_on_weights(self, name: str, e: Call):
        """A layer applied to logits or weights, [B, M, Q, K] with the heads as channels
        (ResT's 1×1 convolution across the heads, then an instance norm of the weights;
        talking-heads attention): they stay logits or weights, of the same axes."""
        w = self.value(e.args[0])
        layer = self.layer_of(name, list(e.args[1:]), e)
        if POISON in (w, layer) or not isinstance(w, (Logits, Weights)):
            return POISON if POISON in (w, layer) else self.op_call(name, e)
        t = self.apply(layer, Tensor(w.node, w.type), e.span, "weight")
        if t is POISON:
            return POISON
        if [(a.name, a.size) for a in t.type.axes] != [(a.name, a.size) for a in w.type.axes]:
            return self.error("axis-mismatch", f"a layer of attention weights must keep their "
                              f"axes {w.type}, not make {t.type}", e.span,
                              f"e.g. {name}(..., M) for M heads")
        return replace(w, node=t.node, type=t.type)

    def call_count(self, e: Call):
        return self.normaliser(e, "count")

    def call_l1(self, e: Call):
        """l1(t, eps): weights divided by their sum over the keys (plus eps), linear
        attention's normaliser; keys outside the range or mask weigh 0."""
        if len(e.args) != 1:
            return self.error("wrong-arity", "l1 takes one term", e.span)
        args = self.keywords(Call(span=e.span, func=e.func, kwargs=e.kwargs), (), ("eps",))
        if args is POISON:
            return POISON
        eps = self.eps_setting(args, 0.0)
        if eps is POISON:
            return POISON
        return self.normaliser(Call(span=e.span, func=e.func, args=e.args), "l1_keys", eps=eps)

    def eps_setting(self, args, default: float):
        """A normaliser's `eps`: a number at least 0 (a bool or a tensor is a mistake)."""
        if "eps" not in args:
            return default
        eps = self.value(args["eps"], "scalar")
        if eps in (POISON, UNKNOWN):
            return eps
        eps = self.at_least_zero(eps, "eps", args["eps"].span)
        return eps if eps is POISON else float(eps)

    def call_double_norm(self, e: Call):
        if len(e.args) != 1:
            return self.error("wrong-arity", "double_norm takes one term", e.span)
        if getattr(self, "core", None) is None:  # outside `weight`: no term to normalise
            return self.normaliser(Call(span=e.span, func=e.func, args=e.args), "double_norm")
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
        eps = self.eps_setting(args, 1e-9)
        if eps is POISON:
            return POISON
        return self.normaliser(Call(span=e.span, func=e.func, args=e.args), "double_norm",
                               first=dims["first"], then=dims["then"], eps=eps)

    def call_positions(self, e: Call):
        return self.error("wrong-type", "positions(...) belongs in `over`", e.span)

    call_channels = call_positions


def _is_weight(e) -> bool:
    """A normaliser of a term: softmax(E1(...)), identity(E4(...)), ...; or a layer of
    one (groupnorm(softmax(...), ...))."""
    if not (isinstance(e, Call) and isinstance(e.func, Name) and e.args):
        return False
    if _is_layer_op(e.func.id):
        return _is_weight(e.args[0])
    return e.func.id in ("softmax", "sigmoid", "count", "l1", "double_norm", "identity") \
        and _maybe_logits(e.args[0])


def _is_layer_op(name: str) -> bool:
    return name in OPS and OPS[name].kind == "layer" and OPS[name].infer is not None


def _maybe_logits(e) -> bool:
    if isinstance(e, Call) and isinstance(e.func, Name):
        if _is_layer_op(e.func.id) and e.args:  # conv1x1(E1(...), M): a layer of a term
            return _maybe_logits(e.args[0])
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




def _logits_type(x: Tensor, heads: int, q_tokens, key: Axis) -> TensorType:
    return TensorType((x.type.axes[0], Axis("M", heads), Axis("·".join(q_tokens)), key))
