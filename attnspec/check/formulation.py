"""The formulation's parts: input, over, range, heads, mask, weight, value, output."""

from __future__ import annotations

import math

from .. import attend  # noqa: F401  (registers the formulation's operators)
from ..attend import width
from ..diagnostics import did_you_mean
from ..ir import COMPOSITION, Axis, TensorType
from ..ir import Attention as AttentionInfo
from ..source import Span
from ..spec import Attention, Call, Input, Let, Name
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
    Word,
)
from .base import RANGES, describe
from .calls import called_definition
from .terms import _over_name


class Formulation:
    """Checks an attention's parts and assembles y = Σ_k A(q, k) · W'x_k."""

    # ------------------------------------------------------------------ attention

    def attention(self, d: Attention, env: dict, incoming: Tensor | None):
        self.bound.append({})
        try:
            return self.build_attention(d, env, incoming)
        finally:
            self.last_bound = self.bound.pop()

    def build_attention(self, d: Attention, env: dict, incoming: Tensor | None):
        self.env = dict(env)
        self.core = None  # set by the parts; terms are not allowed before them
        parts = {}
        x = None
        given = incoming if isinstance(incoming, tuple) else (incoming,)  # Def(...)(x, m)
        inputs = [s for s in d.body if isinstance(s, Input)]
        if len(given) > max(len(inputs), 1):
            return None, self.error("wrong-arity", f"`{d.name}` has {len(inputs)} inputs, "
                                    f"given {len(given)} tensors", self.call_span or d.span)
        self.inputs_here = []
        carried, unfolded = self.carried(d), None
        declared = self.declared_inputs = {}  # as given, before `per` folds them
        for s in d.body:
            if isinstance(s, Input):
                i = len(self.inputs_here)
                t = self.input(s, given[i] if i < len(given) else None, first=x is None)
                declared[s.name] = t
                if carried and isinstance(t, Tensor):  # `per H`: H joins the batch
                    unfolded = unfolded or t
                    t = self.fold(t, unfolded, carried, s.span)
                if s.default is not None:  # `optional = x`: x when it is left out
                    t = self.stand_in(s, t, carried)
                self.env[s.name] = t
                self.inputs_here.append(t)
                x = t if x is None else x
            elif isinstance(s, Let):
                self.let(s)
            else:
                parts[s.keyword] = s
        if not isinstance(x, Tensor):
            return x, POISON
        if "over" not in parts and "weight" not in parts:  # a composition of others
            self.ir.attentions.append(AttentionInfo(self.scope, d.name, COMPOSITION, None, "—"))
            return x, self.composition(parts["output"])
        y = self.formulation(d, parts, x)
        if unfolded is not None and isinstance(y, Tensor):
            y = self.unfold(y, unfolded, carried, parts["over"].span)
            self.unfold_more_outputs(y, unfolded, carried, parts["output"].span)
        return x, y

    def let(self, s: Let):
        names = (s.name, *s.more)
        if POISON in [self.fresh_name(name, s.span) for name in names]:
            for name in names:  # the rest stay names, so no error follows from them
                self.env.setdefault(name, POISON)
            return
        self.role, self.let_name = "let", s.name
        value = self.value(s.value, shared_as=s.name)
        values = [value] if not s.more else self.unpacked(s, value)
        for name, v in zip(names, values):
            self.env[name] = v

    def fresh_name(self, name: str, span: Span):
        """A `let`'s name: not taken already, nor a word of a choice parameter."""
        if name in self.env or name == "y":
            return self.error("duplicate-name", f"`{name}` is already defined", span,
                              "a `let` may not shadow a parameter, input or earlier `let`")
        words = [p for p, choices in self.choices.items() if name in choices]
        if words:  # `mode == value` would compare with the let, never true
            return self.error("duplicate-name", f"`{name}` is a word of the choice "
                              f"parameter `{words[0]}`", span, "name the `let` otherwise")
        return name

    def unpacked(self, s: Let, value) -> list:
        """`let y, mu = Def(...)(x)`: each output of the attention Def, in order (POISON
        for every name after an error)."""
        names = 1 + len(s.more)
        called = called_definition(s.value) if isinstance(s.value, Call) else None
        if value is not POISON and not isinstance(self.program.definitions.get(called),
                                                  Attention):
            value = self.error("wrong-type", f"`let` with {names} names takes the outputs "
                               f"of an attention applied to tensors, not {describe(value)}",
                               s.value.span, "e.g. `let y, mu = EMANet(C)(x)`")
        if value is POISON:
            return [POISON] * names
        outs = [value, *(self.caller_names(o, self.last_bound, s.value.span)
                         for o in self.last_outputs[1:])]
        if len(outs) != names:
            return [self.error("wrong-arity", f"`{called}` gives {len(outs)} output"
                               f"{'s' if len(outs) > 1 else ''}, not {names}", s.span,
                               f"name {len(outs)}: its `output` line lists them")] * names
        return outs

    # ------------------------------------------------------------------ carried axes

    def carried(self, d: Attention) -> tuple[str, ...]:
        """The axes `over positions(W, per = H)` carries: the attention runs on its own
        for each index of H, as if H were part of the batch."""
        for s in d.body:
            if getattr(s, "keyword", None) != "over" or not s.values:
                continue
            e = s.values[0]
            per = [kw for kw in getattr(e, "kwargs", ()) if kw.name == "per"]
            if per:
                axes = self.axes(per[0].value)
                return () if axes is POISON else tuple(axes)
        return ()

    def unfold_more_outputs(self, y: Tensor, x: Tensor, carried, span):
        """`output y, q` under `per H`: q was computed on [B·H, ...] as well, and goes back
        to the input's layout as y does."""
        more = [self.unfold(o, x, carried, span) if isinstance(o, Tensor) else o
                for o in self.last_outputs[1:]]
        self.last_outputs = [y, *more]

    def fold(self, t: Tensor, x: Tensor, carried, span, role: str = "input") -> Tensor:
        """An input seen with the carried axes moved into its batch: [B, C, H, W] per H is
        [B·H, C, W]; an input without them (a padding mask) is repeated for each index."""
        names = t.type.names
        if t is x and not all(a in names[1:] for a in carried):
            missing = next(a for a in carried if a not in names[1:])
            return self.error("axis-mismatch", f"`per` carries axes of the input: {t.type} "
                              f"has no axis `{missing}`", span)
        if all(a in names[1:] for a in carried):
            folded = TensorType(tuple(a for a in t.type.axes if a.name not in carried),
                                t.type.dtype)
            node = self.add("fold_batch", (t.node,), folded, span, role=role,
                            dims=tuple(names.index(a) for a in carried), carried=carried)
            return Tensor(node, folded)
        if any(a in names for a in carried):
            return self.error("axis-mismatch", f"an input has all the carried axes "
                              f"{' '.join(carried)} or none of them, not {t.type}", span)
        node = self.add("repeat_batch", (t.node, x.node), t.type, span, role="input",
                        carried=carried)
        return Tensor(node, t.type)

    def unfold(self, y: Tensor, x: Tensor, carried, span, role: str = "output") -> Tensor:
        """The result with the carried axes back where the input had them (or right after
        the batch when it has another number of axes)."""
        axes = list(y.type.axes)
        same_rank = len(axes) + len(carried) == len(x.type.axes)
        for a in sorted(carried, key=x.type.index):
            where = x.type.index(a) if same_rank else 1 + carried.index(a)
            axes.insert(where, x.type.axis(a))
        out = TensorType(tuple(axes), y.type.dtype)
        node = self.add("unfold_batch", (y.node, x.node), out, span, role=role,
                        carried=carried, dims=tuple(out.index(a) for a in carried))
        return Tensor(node, out)

    def composition(self, part):
        """An attention with no formulation of its own (no over, range, weight, value): its
        output is an expression of its inputs and lets, e.g. attentions applied inside it
        and concatenated (OCNet's pyramid)."""
        self.role = "output"
        return self.outputs(part, None)

    def outputs(self, part, y: Tensor | None):
        """`output` may give several tensors (EMANet's unit returns y and its bases): each
        a tensor, or a layer applied to y. The first is the attention's output, what a
        call of it gives; the module the definition compiles to returns them all
        (`last_outputs`, read by a caller's `let` and by `top`)."""
        outs = []
        for e in part.values:
            out = self.value(e)
            if isinstance(out, Layer) and y is not None:
                out = self.apply(out, y, part.span, "output")
            if out is not POISON and not isinstance(out, Tensor):
                what = "a tensor or a layer" if y is not None else "a tensor"
                out = self.error("wrong-type", f"`output` must give {what}, not "
                                 f"{describe(out)}", e.span)
            outs.append(out)
        self.last_outputs = outs  # for a caller's `let y, mu = Def(...)(x)`
        return POISON if POISON in outs else outs[0]

    def input(self, s: Input, incoming: Tensor | None, first: bool):
        if not first and incoming is None and self.ir.inputs and self.scope:
            if not s.optional:  # a block hands an attention its first input alone
                return self.error("wrong-arity", f"input `{s.name}` (line {s.span.line}) is "
                                  f"required, but in a block an attention receives only its "
                                  f"first input", self.call_span or s.span,
                                  "make it optional, or apply the attention to all its "
                                  "inputs in a `let`: Def(...)(x, other)")
            return None  # optional inputs of an attention inside a block stay unset
        axes = self.declared_axes(s)
        if axes is POISON:
            return POISON
        if incoming is not None:
            return self.received(s, axes, incoming)
        return self.module_input(s, axes)

    def declared_axes(self, s: Input):
        """The axes of an input's declaration, sized where a parameter gives the size."""
        axes = []
        for name in s.axes:
            size = self.env.get(name)
            if isinstance(size, bool) or not isinstance(size, int):
                size = None
            elif size < 1:
                return self.error("zero-size", f"axis {name} of `{s.name}` is {size}: an axis "
                                  "needs at least one position", s.span,
                                  f"give {name} a positive value")
            axes.append(Axis(name, size))
        return axes

    def received(self, s: Input, axes: list[Axis], incoming: Tensor):
        """An input given a tensor by the caller (a block, or a `let` applying the
        attention): checked against the declaration, and renamed to its axis names."""
        t = TensorType(tuple(axes), s.dtype)
        where = self.call_span or s.span
        if len(incoming.type.axes) != len(axes):
            return self.error("axis-mismatch", f"`{s.name}` is declared {t} but receives "
                              f"{incoming.type}", where)
        for mine, theirs in zip(axes, incoming.type.axes):
            if None not in (mine.size, theirs.size) and mine.size != theirs.size:
                return self.error("axis-mismatch", f"axis {mine.name} of `{s.name}` is "
                                  f"{mine.size} here, but what comes in is "
                                  f"{incoming.type}", where)
        if incoming.type.dtype != s.dtype:
            return self.error("wrong-type", f"`{s.name}` is declared {s.dtype}, but what "
                              f"comes in is {incoming.type.dtype}", where)
        # the batch stays free: a learned tensor's batch of 1 broadcasts against it
        t = TensorType((axes[0],) + tuple(Axis(m.name, m.size or th.size, th.step)
                                          for m, th in zip(axes[1:], incoming.type.axes[1:])),
                       s.dtype)
        # sizes this attention fixes that what comes in leaves free: checked at run time
        check = tuple((m.name, m.size if th.size is None else None)
                      for m, th in zip(axes, incoming.type.axes))
        check = check if any(size is not None for _, size in check) else None
        for theirs, mine in zip(incoming.type.names, t.names):
            self.bound[-1].setdefault(mine, theirs)  # the first tensor given names it
        if t.names == incoming.type.names and check is None:
            return Tensor(incoming.node, t)
        # the tensor takes this attention's axis names: a node of its own, so that the
        # lowering reads the names the attention uses
        renamed = tuple(zip(incoming.type.names, t.names))
        declared = f"{s.name} of {self.scope.rstrip('.')}" if self.scope else s.name
        return Tensor(self.add("rename", (incoming.node,), t, s.span, base=s.name,
                               role="input", renamed=renamed, check=check,
                               declared=declared), t)

    def module_input(self, s: Input, axes: list[Axis]):
        """An input of the compiled module: an argument of its forward, in order."""
        optional = next((self.ir.node(i) for i in self.ir.inputs
                         if self.ir.node(i).attrs.get("optional")), None)
        if optional is not None and not s.optional:  # forward(x, pad = None, mu): no
            return self.error("wrong-arity", f"input `{s.name}` is required but comes after "
                              f"the optional input `{optional.name}`: a module's "
                              f"inputs are given in order, the optional ones last", s.span,
                              f"declare `{s.name}` before `{optional.name}`, or make "
                              f"it optional")
        t = TensorType(tuple(axes), s.dtype)
        node = self.add("input", (), t, s.span, base=s.name, role="input",
                        optional=s.optional, axes=tuple((a.name, a.size) for a in axes))
        self.ir.inputs.append(node)
        return Tensor(node, t)

    def stand_in(self, s: Input, given: Tensor | None, carried: tuple[str, ...]):
        """`input m: [...] optional = x`: m when given, else x under m's axis names (its
        axes in x's places; the two must have the same fixed sizes in each place). Both as
        the attention sees them, carried axes in the batch: x is not moved twice."""
        declared, other = self.declared_inputs.get(s.default), self.env.get(s.default)
        if not isinstance(declared, Tensor) or not isinstance(other, Tensor) or \
                given is POISON:
            return POISON
        sizes = [self.env.get(a) for a in s.axes]
        sizes = [n if isinstance(n, int) and not isinstance(n, bool) else None for n in sizes]
        for name, size, theirs in zip(s.axes, sizes, declared.type.axes):
            if size != theirs.size:
                problem = (f"its axis {theirs.name} is {theirs.size or 'free'} where "
                           f"`{s.name}` has {name} {size or 'free'}")
            elif (theirs.name in carried) != (name in carried):
                problem = f"`per` carries {theirs.name if name not in carried else name}"
            else:
                continue
            self.error("axis-mismatch", f"`{s.default}` cannot stand in for `{s.name}`: "
                       f"{problem}", s.default_span, "the two inputs need the same fixed "
                       "sizes in each place, and the axes `per` carries in the same places")
            return given  # declared as it is: no errors that follow from this one
        names = [a for a in s.axes if a not in carried]
        t = TensorType(tuple(Axis(n, a.size, a.step) for n, a in zip(names, other.type.axes)),
                       s.dtype)
        renamed = tuple(zip(other.type.names, t.names))
        if given is None:  # inside a block or a call that leaves it out
            return Tensor(self.add("rename", (other.node,), t, s.span, base=s.name,
                                   role="input", renamed=renamed, check=None,
                                   declared=s.name), t)
        return Tensor(self.add("stand_in", (given.node, other.node), t, s.span, base=s.name,
                               role="input", renamed=renamed, given=s.name,
                               default=s.default), t)

    def formulation(self, d: Attention, parts: dict, x: Tensor):
        over = self.over(parts["over"], x)
        if over is not POISON and self.q_stride > 1:  # every s-th position asks; keys: all
            x = self.every_nth(x, over[0][1], self.q_stride, parts["over"].span)
        rng = self.range_over(parts["range"], over)
        heads = self.heads(parts.get("heads"))
        kv = self.kv_heads(parts.get("heads"), heads)
        # after an error in `heads` the parts are checked with every head its own; after
        # one in `kv`, with key and value widths left unchecked (None)
        self.kv = 1 if heads is POISON else None if kv is POISON else kv
        pad = self.mask(parts.get("mask"), x, over, rng)
        if isinstance(rng, WindowRange):
            rng = self.window_details(rng, parts["range"], x, over, heads)
        identity = tuple(k for k in ("value", "output")
                         if _is_identity(parts[k].values[0]))
        shared = kv if isinstance(kv, int) and kv != heads else None
        self.ir.attentions.append(AttentionInfo(self.scope, d.name, str(rng), heads,
                                                _over_text(over, self.q_stride), identity,
                                                shared))
        if over is POISON:
            return POISON
        if self.kv not in (heads, None) and (over[1][0] == "memory" or rng == "self"):
            kv = self.error("unsupported", "`kv` shares keys and values computed from the "
                            "input: not memory slots, and a gate has none", parts["heads"].span)
        # a bad range, head count or mask still lets weight and value be checked
        ordered = sorted((parts["weight"], parts["value"]), key=lambda p: p.span.line)
        results = {}
        for part in ordered:
            self.role = part.keyword
            results[part.keyword] = self.part_value(
                part, x, over, rng, 1 if heads is POISON else heads,
                None if pad is POISON else pad)
        w, v = results["weight"], results["value"]
        if POISON in (w, v, rng, heads, pad, kv):
            return POISON
        self.role = "context"
        y = self.combine(w, v, x, over, rng, heads, parts)
        if y is POISON:
            return POISON
        self.role = "output"
        self.env["y"] = y
        out = self.outputs(parts["output"], y)
        del self.env["y"]
        return out

    def range_over(self, part, over):
        """The range, if the axes in `over` can take it: windows, partitions and blocks
        need queries and keys on the same axes, or a window one axis each (between two
        sequences it reads the key's index against the query's: Luong's local-m), and
        criss-cross the same two or more axes."""
        rng = self.range(part)
        if over is POISON:
            return rng
        sequences = isinstance(rng, WindowRange) and rng.marked is None and \
            all(isinstance(o[1], tuple) and len(o[1]) == 1 for o in over)
        if isinstance(rng, (WindowRange, PartitionRange, BlocksRange)) and \
                over[1] != over[0] and not sequences:
            return self.error("unsupported", f"range `{rng}` needs queries and keys on the "
                              "same axes, e.g. `over positions(H W)` (or one axis each, "
                              "without global tokens)", part.values[0].span)
        if rng == "criss_cross" and (over[1] != over[0] or len(over[0][1]) < 2):
            return self.error("unsupported", "range `criss_cross` needs queries and keys on "
                              "the same two or more axes, e.g. `over positions(H W)`",
                              part.values[0].span)
        return rng

    def window_details(self, rng: WindowRange, part, x: Tensor, over, heads):
        """A window's global tokens, its centres and its dilated heads checked: the window,
        or POISON."""
        if rng.marked is not None and self.marks_keys(
                rng.marked, "the window's `global`", part.span, x, over) is POISON:
            return POISON
        if rng.centre is not None and self.centred(rng, x, over,
                                                   part.values[0].span) is POISON:
            return POISON
        if isinstance(heads, int) and (rng.dilated_heads or 0) > heads:
            return self.error("heads", f"range `{rng}` dilates {rng.dilated_heads} heads, "
                              f"but there are {heads}", part.values[0].span,
                              f"give at most {heads} (`heads {heads}`)")
        return rng

    def over(self, part, x: Tensor):
        """What q and k index: axes of the first input, or for k of another input (cross-
        attention: the key and value layers then apply to that input, `self.kx`).
        `positions(H W, stride = s)`: the queries are every s-th position (`self.q_stride`)."""
        specs = []
        self.kx = x
        self.q_stride = 1
        for e in part.values:
            if not (isinstance(e, Call) and isinstance(e.func, Name)
                    and e.func.id in ("positions", "channels", "memory")):
                return self.error("unknown-over", "`over` takes positions(...), channels(...) "
                                  "or memory(S)", e.span,
                                  "e.g. `over positions(H W)` or `over channels(C)`")
            kind = e.func.id
            if kind == "memory":
                m = self.value(e)
                if not isinstance(m, Memory):
                    return POISON  # reported already, or a slot count not known yet
                specs.append(("memory", m))
                continue
            if len(e.args) != 1 or any(kw.name not in ("per", "stride") for kw in e.kwargs) \
                    or specs and e.kwargs:
                return self.error("wrong-arity", f"{kind}(...) takes the axes it indexes, "
                                  f"the axes it carries and the queries' stride: "
                                  f"{kind}(W, per = H), {kind}(H W, stride = 2)", e.span)
            axes = self.axes(e.args[0])
            if axes is POISON:
                return POISON
            stride = next((kw.value for kw in e.kwargs if kw.name == "stride"), None)
            if stride is not None:
                s = self.value(stride, "scalar")
                if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                    return self.error("wrong-type", f"the queries' stride is a positive "
                                      f"integer, not {describe(s)}", stride.span)
                self.q_stride = s
            source = x
            if specs and not all(a in x.type.names[1:] for a in axes):
                source = next((t for t in self.inputs_here[1:] if isinstance(t, Tensor)
                               and all(a in t.type.names[1:] for a in axes)), x)
            for a in axes:
                if a not in source.type.names[1:]:
                    return self.error("axis-mismatch", f"{kind}({' '.join(axes)}): the input "
                                      f"{source.type} has no axis `{a}`", e.args[0].span,
                                      did_you_mean(a, source.type.names[1:]))
            if specs:
                self.kx = source
            specs.append((kind, tuple(axes)))
        if len(specs) > 2 or specs[0][0] == "memory":
            return self.error("unknown-over", "`over` names what q indexes, then optionally "
                              "what k indexes", part.span)
        return (specs[0], specs[-1])

    def range(self, part):
        value = self.scalar(part.values[0], "range")
        if value is POISON or value is UNKNOWN:  # UNKNOWN: a size waiting for a parameter
            return POISON
        if not isinstance(value, (Word, str)):
            return self.error("unknown-range", f"`range` takes a range, not {describe(value)}",
                              part.values[0].span, f"ranges are {', '.join(RANGES)}")
        if isinstance(value, (WindowRange, PartitionRange, BlocksRange)):
            return value
        name = value.name if isinstance(value, Word) else value
        if name not in RANGES:
            span = value.span if isinstance(value, Word) else part.values[0].span
            return self.error("unknown-range", f"unknown range `{name}`", span,
                              did_you_mean(str(name), RANGES) or
                              f"ranges are {', '.join(RANGES)}")
        return name

    def heads(self, part):
        if part is None:
            return 1
        m = self.scalar(part.values[0], "scalar")
        if m is UNKNOWN or m is POISON:
            return 1 if m is UNKNOWN else POISON
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            return self.error("wrong-type", f"heads must be a positive integer, not "
                              f"{describe(m)}",
                              part.values[0].span)
        return m

    def kv_heads(self, part, heads):
        """`heads M, kv = G`: keys and values in G heads, each shared by M / G query heads
        (G = 1: multi-query attention; the default, G = M: every head its own)."""
        kw = next((kw for kw in part.kwargs if kw.name == "kv"), None) if part else None
        if kw is None or heads is POISON:
            return heads
        g = self.scalar(kw.value, "scalar")
        if g is UNKNOWN or g is POISON:
            return heads if g is UNKNOWN else POISON
        if isinstance(g, bool) or not isinstance(g, int) or g < 1 or heads % g:
            return self.error("heads", f"kv must be a positive integer that divides the "
                              f"{heads} heads, not {describe(g)}", kw.value.span,
                              "kv = 1: one key and value, shared by every head")
        return g

    def mask(self, part, x: Tensor, over, rng):
        if part is None:
            return None
        e = part.values[0]
        m = self.value(e)
        if m is POISON or m is None:
            return m
        if not isinstance(m, Tensor) or m.type.dtype != "bool":
            return self.error("wrong-type", "`mask` takes a bool input", e.span,
                              "declare it as `input pad: [B, N] bool optional`")
        if rng == "self":
            return self.error("wrong-type", "`range self` has no keys to mask", part.span)
        return self.marks_keys(m, "the mask", e.span, x, over)

    def every_nth(self, x: Tensor, axes, stride: int, span: Span) -> Tensor:
        """x at every `stride`-th position of `axes`: the queries' grid (the positions'
        step times the stride, ⌈n / stride⌉ of them)."""
        t = TensorType(tuple(Axis(a.name, None if a.size is None else -(-a.size // stride),
                                  a.step * stride) if a.name in axes else a
                             for a in x.type.axes), x.type.dtype)
        node = self.add("every_nth", (x.node,), t, span, role="query", stride=stride,
                        dims=tuple(x.type.index(a) for a in axes))
        return Tensor(node, t)

    def centred(self, rng: WindowRange, x: Tensor, over, span: Span):
        """`window(R, centre = p)`: one axis each (two sequences, or one), an undilated
        window, no global tokens; p gives each query one position, laid out [B, the
        query's axis]."""
        if over is POISON:
            return POISON
        if any(len(o[1]) != 1 or o[0] == "memory" for o in over) or rng.dilation != 1 or \
                rng.causal or rng.marked is not None:
            return self.error("unsupported", f"range `{rng}` centres an undilated window on "
                              "one axis of keys: one axis each, e.g. `over positions(T), "
                              "positions(S)`, no dilation, causal or global tokens", span)
        expected = (x.type.names[0], *over[0][1])
        if rng.centre.type.names != expected:
            return self.error("axis-mismatch", f"the window's `centre` is {rng.centre.type}; "
                              f"it gives each query a position: [{', '.join(expected)}]", span)
        return rng

    def marks_keys(self, m: Tensor, what: str, span: Span, x: Tensor, over):
        """A bool input that marks keys (a padding mask, a window's global tokens) is laid
        out like them: [B, the axes k indexes]."""
        if over is not POISON and over[1][0] != "memory":
            expected = (x.type.names[0], *over[1][1])
            if m.type.names != expected:
                return self.error("axis-mismatch", f"{what} is {m.type}; it must mark keys: "
                                  f"[{', '.join(expected)}]", span)
        return m

    # ------------------------------------------------------------------ parts

    def part_value(self, part, x: Tensor, over, rng, heads, pad):
        self.core = (x, over, rng, heads, pad)
        value = self.value(part.values[0])
        if isinstance(value, Layer):  # the value's layers read the keys' input
            source = self.kx if part.keyword == "value" and rng != "self" else x
            value = self.apply(value, source, part.span, part.keyword)
        if isinstance(value, Memory):
            return value if part.keyword == "value" else self.error(
                "wrong-type", "memory(S) stands for keys or values", part.span)
        if part.keyword == "weight" and rng is POISON:
            return value  # which weights fit is unknown while the range has an error
        if part.keyword == "weight" and rng != "self":
            if isinstance(value, Logits):
                return self.error("missing-normaliser", "the weight needs a normaliser",
                                  part.values[0].span, "wrap it: softmax(...), sigmoid(...), "
                                  "count(...) or double_norm(...)")
            if value is not POISON and not isinstance(value, Weights):
                hint = "for a gate (one weight per element), use `range self`" \
                    if isinstance(value, Tensor) else None
                return self.error("wrong-type", f"with `range {rng}` the weight must be a "
                                  "normalised term such as softmax(E1(...))",
                                  part.values[0].span, hint)
        elif value is not POISON and not isinstance(value, Tensor):
            return self.error("wrong-type", f"`{part.keyword}` must give a tensor or layer, "
                              f"not {describe(value)}", part.values[0].span)
        return value

    def combine(self, w, v, x: Tensor, over, rng, heads, parts):
        """Σ_k A(q, k) · W'x_k: the weights times the values (a gate's product), summed over
        the keys, the values computed from the input or learned slots."""
        if rng == "self":
            return self.gate(w, v, over, parts)
        if isinstance(v, Memory):
            return self.aggregate_memory(w, v, x, over, heads, parts)
        return self.aggregate(w, v, x, over, heads, parts)

    def gate(self, w, v, over, parts):
        """range self: each query's own value times its weight."""
        tokens = over[0][1]
        missing = [a for a in tokens if a not in w.type.names]
        if missing:
            return self.error("axis-mismatch", f"over {over[0][0]}({' '.join(tokens)}) "
                              f"needs a weight per {' '.join(missing)}, but the weight is "
                              f"{w.type}", parts["weight"].values[0].span)
        return self.arith("*", w, v, parts["weight"].span, base="attend")

    def aggregate_memory(self, w, v: Memory, x: Tensor, over, heads, parts):
        """`value memory(S)`: the weights times learned value slots (a bias-free linear map
        from the S slots, one per head's feature)."""
        span, q_tokens = parts["weight"].span, over[0][1]
        if over[1][0] != "memory" or over[1][1].slots != v.slots:
            return self.error("wrong-type", "`value memory(S)` needs the keys to be the "
                              "same memory: `over positions(...), memory(S)`",
                              parts["value"].values[0].span)
        feature = self.feature(x, q_tokens, "input", parts["value"].span, single=True)
        if feature is POISON:
            return POISON
        dim = v.dim if isinstance(v.dim, int) else x.type.axis(feature[0]).size
        per_head = self.divide(dim, heads, parts["value"].span)
        if per_head is POISON:
            return POISON
        out_t = x.type.replace_axis(feature[0], Axis(feature[0], dim))
        path = self.declare_module("value", "linear", {
            "in": v.slots, "out": per_head, "bias": False, "init": "default"}, v.span,
            name="memory")
        node = self.add("aggregate", (w.node,), out_t, span, module=path, memory=True,
                        heads=heads, q_tokens=q_tokens, v_feature=feature,
                        k_tokens=(), weight_axes=("B", "M", "Q", "K"), v_width=dim,
                        sizes_of=x.node)
        return Tensor(node, out_t)

    def aggregate(self, w, v: Tensor, x: Tensor, over, heads, parts):
        """The weights times values computed from the input, summed over the keys: one
        output per query, per pooled context (E3), or per slot (A²'s distribution)."""
        span, q_tokens = parts["weight"].span, over[0][1]
        slots = over[1][0] == "memory"
        k_tokens = (_over_name(over[1]),) if slots else over[1][1]
        if slots and k_tokens[0] not in v.type.names:
            return self.error("axis-mismatch", f"with keys `memory({k_tokens[0]})` the value "
                              f"must be memory({k_tokens[0]}) or a tensor with the axis "
                              f"{k_tokens[0]}, not {v.type}", parts["value"].values[0].span)
        shared = self.kv != heads  # `heads M, kv = G`: G value heads, shared
        feature = self.feature(v, k_tokens, "value", parts["value"].span,
                               single=slots or shared)
        if feature is POISON or self.split_heads(v.type, feature, self.kv,
                                                 parts["value"].span) is POISON:
            return POISON
        if shared:  # each of the M heads reads its group's value: M / G times the width
            f = v.type.axis(feature[0])
            v = Tensor(v.node, v.type.replace_axis(f.name, Axis(
                f.name, None if f.size is None else f.size // self.kv * heads)))
        contexts = w.type.axes[2:-1] if not w.has_query else ()
        if slots:  # values computed from the input, one per slot (A²'s distribution)
            xf = self.feature(x, q_tokens, "input", parts["value"].span, single=True)
            if xf is POISON:
                return POISON
            out_t = x.type.replace_axis(xf[0], v.type.axis(feature[0]))
        elif w.has_query:
            out_t = _with_tokens(v.type, k_tokens, x.type, q_tokens)
        else:
            out_t = TensorType((v.type.axes[0], *contexts, *(v.type.axis(f) for f in feature)))
        weight_axes = ("B", "M", "Q", "K") if w.has_query else \
            ("B", "M", "S", "K") if contexts else ("B", "M", "K")
        node = self.add("aggregate", (w.node, v.node), out_t, span, memory=False, heads=heads,
                        q_tokens=q_tokens, k_tokens=k_tokens, v_feature=feature,
                        weight_axes=weight_axes, v_width=width(v.type, feature),
                        sizes_of=x.node, kv=self.kv)
        return Tensor(node, out_t)

    def feature(self, t: Tensor, tokens, what: str, span: Span, single: bool = False):
        """The feature axes of a query, key or value: every axis but the batch and the
        indexed ones (channel attention on [B, C, H, W] has features H W)."""
        rest = tuple(a for a in t.type.names[1:] if a not in tokens)
        missing = [a for a in tokens if a not in t.type.names]
        if missing or not rest or single and len(rest) != 1:
            wanted = "one feature axis" if single else "a feature axis"
            return self.error("axis-mismatch", f"the {what} is {t.type}: it must keep the "
                              f"indexed axes {' '.join(tokens)} and have {wanted}", span)
        return rest

    def split_heads(self, t: TensorType, features, heads: int, span: Span):
        """The width of a head's slice of the features. With a feature axis sized at run
        time (C and H over positions(W)), the fixed sizes must split, so every size does."""
        total = width(t, features)
        if total is not None or heads == 1 or self.check_only:  # (sizes left open there)
            return self.divide(total, heads, span)
        fixed = math.prod(t.axis(f).size for f in features if t.axis(f).size is not None)
        if fixed % heads:
            return self.error("heads", f"the features {' '.join(features)} of {t} split into "
                              f"{heads} heads only if their fixed sizes do, {fixed} here",
                              span, "choose a head count that divides the fixed width")
        return None

    def divide(self, size, heads, span):
        if size is None or heads == 1:
            return size
        if size % heads:
            return self.error("heads", f"{size} features do not split into {heads} heads",
                              span, "choose a head count that divides the width")
        return size // heads


def _is_identity(e) -> bool:
    return isinstance(e, Name) and e.id in ("identity", "y")


def _with_tokens(v: TensorType, k_tokens, x: TensorType, q_tokens) -> TensorType:
    """The value's layout with its key axes replaced by the query's axes."""
    if tuple(k_tokens) == tuple(q_tokens):  # the queries' grid, not the keys' (pooled keys)
        return TensorType(tuple(x.axis(a.name) if a.name in q_tokens else a for a in v.axes),
                          v.dtype)
    feature = [a for a in v.axes[1:] if a.name not in k_tokens][0]
    return TensorType(tuple(feature if a.name not in q_tokens and a is not x.axes[0] else a
                            for a in x.axes))


def _over_text(over, stride: int = 1) -> str:
    if over is POISON:
        return "?"
    q, k = over
    text = f"{q[0]}({' '.join(q[1])}{f', stride = {stride}' if stride > 1 else ''})"
    if k != q:
        text += f" → memory({k[1].slots})" if k[0] == "memory" else f" → {k[0]}({' '.join(k[1])})"
    return text
