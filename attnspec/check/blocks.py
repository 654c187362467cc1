"""Blocks: attentions composed with >>, + and residual(...)."""

from __future__ import annotations

from .. import attend  # noqa: F401  (registers the formulation's operators)
from ..diagnostics import did_you_mean
from ..spec import Attention, BinOp, Block, Call
from ..values import POISON, UNKNOWN, Instance, Layer, Tensor
from .base import describe


class Blocks:
    """Builds blocks. Each attention or block called in a block becomes an Instance,
    whose `apply(incoming)` builds it on the incoming tensor (None: on its own declared
    input) and returns (the input it used, its output)."""

    # ------------------------------------------------------------------ blocks

    def block(self, d: Block, env: dict, incoming: Tensor | None):
        self.env = dict(env)
        value = self.value(d.body)
        if value is POISON:
            return None, POISON
        if not isinstance(value, Instance):
            return None, self.error("wrong-type", f"a block composes attentions, not "
                                    f"{describe(value)}", d.body.span)
        return value.apply(incoming)

    def instantiate(self, d, e: Call):
        """`Gate(C, r = 4)` in a block: an Instance that builds `d` on its input."""
        params = [p.name for p in d.params]
        if len(e.args) > len(params):
            return self.error("wrong-arity", f"`{d.name}` takes {len(params)} parameters, got "
                              f"{len(e.args)}", e.span)
        named = list(zip(params, e.args))
        for kw in e.kwargs:
            if kw.name not in params:
                return self.error("unknown-argument", f"`{d.name}` has no parameter "
                                  f"`{kw.name}`", kw.span, did_you_mean(kw.name, params))
            named.append((kw.name, kw.value))
        given = {name: self.value(a, "word") for name, a in named}
        spans = {name: a.span for name, a in named}
        if POISON in given.values():
            return POISON

        def apply(incoming):
            if d.name in self.stack:
                return incoming, self.error("recursion", f"`{d.name}` is defined in terms of "
                                            "itself", e.span, "a block cannot contain itself")
            saved = (self.env, self.scope, self.role, self.let_name, self.choices,
                     self.call_span)
            self.scope = saved[1] + self.instance_name(d.name) + "."
            self.stack.append(d.name)
            self.call_span = e.span
            env = self.bind_params(d, {k: v for k, v in given.items() if v is not UNKNOWN},
                                   spans)
            result = (self.attention if isinstance(d, Attention) else self.block)(
                d, env, incoming)
            self.stack.pop()
            (self.env, self.scope, self.role, self.let_name, self.choices,
             self.call_span) = saved
            return result

        return Instance(apply, e.span)

    def instance_name(self, name: str) -> str:
        base = "".join("_" + c.lower() if c.isupper() and i and not name[i - 1].isupper()
                       else c.lower() for i, c in enumerate(name))
        n = self.instances.get(self.scope + base, 0) + 1
        self.instances[self.scope + base] = n
        return base if n == 1 else f"{base}_{n}"

    def parallel(self, left, right, e: BinOp):
        if not (isinstance(left, Instance) and isinstance(right, Instance)) or e.op != "+":
            return self.error("wrong-type", f"blocks combine with `>>` or `+`, not `{e.op}` "
                              f"with {describe(left if not isinstance(left, Instance) else right)}",
                              e.span)

        def apply(incoming):
            x, a = left.apply(incoming)
            if x is None or x is POISON:
                return x, POISON
            _, b = right.apply(x)  # both branches see the same input
            if POISON in (a, b):
                return x, POISON
            return x, self.arith("+", a, b, e.span, base="sum", role="block")

        return Instance(apply, e.span)

    def call_repeat(self, e: Call):
        """repeat(block, R, share = true): the block R times in sequence; with `share`,
        every repetition uses the first one's layers (CCNet's recurrence)."""
        args = self.keywords(e, ("block", "times"), ("share",))
        if args is POISON:
            return POISON
        inner = self.value(args["block"])
        times = self.value(args["times"], "scalar")
        share = self.value(args["share"], "scalar") if "share" in args else True
        if POISON in (inner, times, share):
            return POISON
        if not isinstance(inner, Instance):
            return self.error("wrong-type", "repeat(...) repeats a block", args["block"].span)
        if times is UNKNOWN or share is UNKNOWN:
            return inner
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            return self.error("wrong-type", f"repeat needs a positive count, not "
                              f"{describe(times)}", args["times"].span)
        if not isinstance(share, bool):
            return self.error("wrong-type", f"`share` is a bool, not {describe(share)}",
                              args["share"].span)

        def apply(incoming):
            # with several inputs, (state, *rest): each repetition gets the last one's
            # output as its first input and the same others (EMANet's EM steps)
            rest = incoming[1:] if isinstance(incoming, tuple) else ()
            self.recording = [] if share else None
            x, y = inner.apply(incoming)
            made, self.recording = self.recording, None
            for _ in range(times - 1):
                if y is POISON:
                    break
                self.replaying = list(made) if share else None
                _, y = inner.apply((y, *rest) if rest else y)
                self.replaying = None
            return x, y

        return Instance(apply, e.span)

    def call_residual(self, e: Call):
        if len(e.args) != 1 or e.kwargs:
            return self.error("wrong-arity", "residual(...) takes one block or layer", e.span)
        inner = self.value(e.args[0])
        if inner is POISON:
            return POISON
        if isinstance(inner, Layer):  # x + L(x) inside a chain of layers
            return Layer("residual", {}, e.span, parts=(inner,))
        if not isinstance(inner, Instance):
            return self.error("wrong-type", "residual(...) wraps a block or a layer",
                              e.args[0].span)

        def apply(incoming):
            x, y = inner.apply(incoming)
            if POISON in (x, y) or x is None:
                return x, POISON
            return x, self.arith("+", x, y, e.span, base="residual", role="block")

        return Instance(apply, e.span)
