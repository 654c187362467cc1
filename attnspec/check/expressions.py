"""Expressions: values of names and numbers, parameter arithmetic, tensor arithmetic with named
broadcasting, weight-term arithmetic, `>>` (calls and layers: calls.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .. import attend  # noqa: F401  (registers the formulation's operators)
from ..diagnostics import did_you_mean
from ..ops import ARITHMETIC, OPS, SCALAR_FUNCTIONS, OpError, broadcast
from ..source import Span
from ..spec import Axes, BinOp, Bool, Call, IfElse, Name, Number, UnaryOp
from ..values import (
    POISON,
    UNKNOWN,
    AxesValue,
    DefinitionRef,
    Encoding,
    Instance,
    Layer,
    Logits,
    Tensor,
    Weights,
    Word,
)
from .base import PUBLIC_OPS, RANGES, SPECIAL, describe


class Expressions:
    """Evaluates expressions to values (values.py), adding IR nodes for tensors."""

    # ------------------------------------------------------------------ expressions

    def explain(self, expr) -> str:
        """` (C / r with C = 8, r = 16)`: how a computed setting got its value."""
        if isinstance(expr, (Number, Bool)):
            return ""
        names = sorted({n.id for n in _names_in(expr)
                        if isinstance(self.env.get(n.id), (int, float))})
        source = self.program.sources.get(expr.span.file)
        text = source.line(expr.span.line)[expr.span.col - 1:expr.span.end_col - 1] \
            if source and expr.span.line == expr.span.end_line else ""
        values = ", ".join(f"{n} = {self.env[n]}" for n in names)
        return f" ({text} with {values})" if text and values else ""

    def scalar(self, e, want: str = "scalar"):
        return self.value(e, want=want)

    def axes(self, e) -> tuple[str, ...] | Any:
        if isinstance(e, Axes):
            twice = next((n for i, n in enumerate(e.names) if n in e.names[:i]), None)
            if twice:
                return self.error("duplicate-axis", f"axis `{twice}` is named twice", e.span)
            return e.names
        if isinstance(e, Name):
            return (e.id,)
        return self.error("wrong-type", "expected axis names, e.g. `H W`", e.span)

    def value(self, e, want: str = "value", shared_as: str | None = None):
        method = getattr(self, "v_" + type(e).__name__.lower())
        result = method(e, want)
        if shared_as and isinstance(result, Layer):
            result.shared_as = shared_as
        if shared_as and isinstance(result, Encoding):  # its layers are shared, as a let's
            for layer in result.layers:
                layer.shared_as = layer.shared_as or shared_as
        return result

    def v_number(self, e, want):
        return e.value

    def v_bool(self, e, want):
        return e.value

    def v_string(self, e, want):
        return self.error("wrong-type", "a quoted string is only a `use` path", e.span,
                          f"write words without quotes: `{e.value}`")

    def v_axes(self, e, want):
        if want == "scalar":  # `eps = eps eps`: names side by side are axes, not a number
            return self.error("wrong-type", f"expected a number, not the axis names "
                              f"`{' '.join(e.names)}`", e.span)
        return AxesValue(e.names, e.span)

    def v_name(self, e: Name, want):
        if want == "range" and e.id in RANGES:  # in `range`, a range name is the range
            return Word(e.id, e.span)
        if e.id in self.env:
            return self.env[e.id]
        if want in ("word", "range") or e.id in RANGES:
            return Word(e.id, e.span)
        if e.id in PUBLIC_OPS:
            cfg, _ = self.config(OPS[e.id], [], Call(span=e.span, func=e))
            return POISON if cfg is POISON else Layer(e.id, cfg, e.span)
        if e.id in self.program.definitions:
            return DefinitionRef(e.id, e.span)
        if e.id == "y" and self.role != "output":
            return self.error("unknown-name", "`y` is the attended result; only `output` "
                              "sees it", e.span)
        if e.id in (*SPECIAL, *SCALAR_FUNCTIONS):  # a function named without its call
            return self.error("unknown-name", f"`{e.id}` is a function: call it, "
                              f"`{e.id}(...)`", e.span, "docs/language.md gives its "
                              "arguments")
        return self.error("unknown-name", f"unknown name `{e.id}`", e.span,
                          did_you_mean(e.id, self._known_names()) or
                          "parameters, inputs and `let`s are in scope, and the operators "
                          "of docs/language.md")

    def _known_names(self):
        return [*self.env, *PUBLIC_OPS, *SPECIAL, *SCALAR_FUNCTIONS, *self.program.definitions]

    def v_unaryop(self, e: UnaryOp, want):
        x = self.value(e.operand, want)
        if x in (POISON, UNKNOWN):
            return x
        if e.op == "not":
            return not x if isinstance(x, bool) else self.error(
                "wrong-type", f"`not` needs a bool, not {describe(x)}", e.span)
        if isinstance(x, Tensor):
            return self.arith("*", x, -1, e.span)
        if isinstance(x, Logits):  # -E1(...): DANet's softmax(max − e) is softmax(−e)
            return replace(x, node=self.add("scale", (x.node,), x.type, e.span, factor=-1.0))
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return -x
        return self.error("wrong-type", f"cannot negate {describe(x)}", e.span)

    def v_ifelse(self, e: IfElse, want):
        cond = self.value(e.cond, "scalar")
        if cond is POISON:
            return POISON
        if cond is UNKNOWN:  # check both branches when a parameter has no value yet
            then = self.value(e.then, want)
            self.value(e.orelse, want)
            return then
        if not isinstance(cond, bool):
            return self.error("wrong-type", f"a condition must be a bool, not "
                              f"{describe(cond)}", e.cond.span)
        return self.value(e.then if cond else e.orelse, want)

    def v_binop(self, e: BinOp, want):
        if e.op == ">>":
            return self.pipe(e)
        if e.op in ("==", "!="):
            return self.equality(e)
        left, right = self.value(e.left, want), self.value(e.right, want)
        if POISON in (left, right):
            return POISON
        if isinstance(left, Instance) or isinstance(right, Instance):
            return self.parallel(left, right, e)
        if e.op in ("and", "or"):
            if UNKNOWN in (left, right):
                return UNKNOWN
            if not (isinstance(left, bool) and isinstance(right, bool)):
                return self.error("wrong-type", f"`{e.op}` needs bools", e.span)
            return (left and right) if e.op == "and" else (left or right)
        if isinstance(left, Logits) or isinstance(right, Logits):
            return self.logits_arith(e, left, right)
        if isinstance(left, Weights) or isinstance(right, Weights):
            return self.weights_arith(e, left, right)
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            if e.op not in ARITHMETIC:
                return self.error("wrong-type", f"`{e.op}` does not apply to tensors", e.span)
            return self.arith(e.op, left, right, e.span)
        return self.scalar_op(e, left, right)

    def equality(self, e: BinOp):
        """`==` / `!=`. A bare word is allowed only against a choice parameter, and must
        be one of its choices: `variant == dot_product`."""
        sides = (e.left, e.right)
        left, right = (self.value(x, "word") for x in sides)
        if POISON in (left, right):
            return POISON
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            return self.error("wrong-type", f"`{e.op}` compares parameters, not tensors", e.span)
        for word, other, expr in ((left, e.right, e.left), (right, e.left, e.right)):
            if not isinstance(word, Word):
                continue
            choices = self.choices.get(other.id) if isinstance(other, Name) else None
            if choices is None:
                hint = (f"to set `{word.name}`, write `{word.name} = ...`; `==` compares"
                        if e.op == "==" else None)
                return self.error("unknown-name", f"unknown name `{word.name}`", expr.span,
                                  hint or did_you_mean(word.name, self._known_names()))
            if word.name not in choices:
                return self.error("wrong-type", f"`{other.id}` is one of {', '.join(choices)}, "
                                  f"not `{word.name}`", expr.span,
                                  did_you_mean(word.name, choices))
        if UNKNOWN in (left, right):
            return UNKNOWN
        lv, rv = (v.name if isinstance(v, Word) else v for v in (left, right))
        return (lv == rv) if e.op == "==" else (lv != rv)

    def scalar_op(self, e: BinOp, left, right):
        if UNKNOWN in (left, right):
            return UNKNOWN
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      for v in (left, right))
        if not numbers:
            return self.error("wrong-type", f"`{e.op}` needs numbers, not {describe(left)} "
                              f"and {describe(right)}", e.span)
        if e.op in ("/", "%") and right == 0 or e.op == "**" and left == 0 and right < 0:
            return self.error("zero-size", "division by zero", e.right.span)
        if e.op == "**" and left < 0 and not float(right).is_integer():
            return self.error("wrong-type", "a negative number to a fractional power",
                              e.span)
        if e.op == "/" and isinstance(left, int) and isinstance(right, int):
            return left // right  # integer widths: C / r rounds down, as in the papers
        if e.op == "%":
            return left % right
        if e.op in ARITHMETIC:
            return ARITHMETIC[e.op](left, right)
        return {"<": left < right, "<=": left <= right, ">": left > right,
                ">=": left >= right}[e.op]

    def arith(self, op: str, left, right, span: Span, base: str | None = None,
              role: str | None = None):
        tensors = [v for v in (left, right) if isinstance(v, Tensor)]
        for t in tensors:
            if t.type.dtype == "bool":  # a mask (maybe None at run time) is no number
                return self.error("wrong-type", f"`{op}` cannot take a bool mask {t.type}",
                                  span, "a mask goes in `mask`")
        for v in (left, right):
            if not isinstance(v, Tensor) and not (isinstance(v, (int, float))
                                                  and not isinstance(v, bool)):
                return self.error("wrong-type", f"`{op}` cannot combine a tensor with "
                                  f"{describe(v)}", span)
        if len(tensors) == 2:
            try:
                out, lp, rp = broadcast(left.type, right.type)
            except OpError as err:
                return self.error(err.code, err.message, span, err.hint)
            inputs, attrs = (left.node, right.node), {"left": lp, "right": rp}
        else:
            scalar = right if isinstance(left, Tensor) else left
            if _leaves_alone(op, scalar, scalar_first=scalar is left):
                return tensors[0]  # a term left out (`t if c else 0`) adds no node
            out, inputs = tensors[0].type, (tensors[0].node,)
            attrs = {"scalar": scalar, "scalar_first": scalar is left}
        if any(t.type.dtype == "complex" for t in tensors):  # a spectrum times a filter
            if op not in ("+", "-", "*"):
                return self.error("wrong-type", f"`{op}` of a complex tensor: only +, - and * "
                                  "take them", span)
            out = replace(out, dtype="complex")
        node = self.add("arith", inputs, out, span, base=base or _ARITH_NAMES[op], op=op,
                        role=role, **attrs)
        return Tensor(node, out)

    def logits_arith(self, e: BinOp, left, right):
        """Logits may be scaled by a number, E1(...) / sqrt(d), and added: E1(...) + E3(...);
        `0` stands for a term left out: `(E3(...) if bias else 0)`."""
        logits, other = (left, right) if isinstance(left, Logits) else (right, left)
        if other is UNKNOWN:
            return logits
        if isinstance(other, Logits) and e.op in ("+", "-"):
            if e.op == "-":
                right = Logits(self.add("scale", (right.node,), right.type, e.span,
                                        factor=-1.0), right.type, right.has_query, right.keys)
            return self.sum_terms(e, left, right)
        number = isinstance(other, (int, float)) and not isinstance(other, bool)
        if number and _leaves_alone(e.op, other, scalar_first=other is left):
            return logits  # `+ 0`, `/ s` with s = 1 (an option off): nothing to compute
        if isinstance(other, Tensor) and e.op in ("*", "/") and not (
                e.op == "/" and logits is right):
            return self.per_head(e, logits, other)
        if not number or e.op not in ("*", "/") or e.op == "/" and logits is right:
            return self.error("wrong-type", f"a weight term can be multiplied or divided by a "
                              f"number; not `{e.op}` with {describe(other)}", e.span)
        if e.op == "/" and other == 0:
            return self.error("zero-size", "a weight term divided by zero", e.span)
        factor = 1 / other if e.op == "/" else other
        node = self.add("scale", (logits.node,), logits.type, e.span, factor=factor)
        return replace(logits, node=node)

    def per_head(self, e: BinOp, logits: Logits, t: Tensor):
        """A term times (or over) a tensor of one number per head, [batch, M] (ALiBi's
        slopes times E4(position = distance())), or per head and query, [batch, M, H, W]
        with the query axes (DCNv2's modulation of each sampled point)."""
        heads = logits.type.axes[1].size
        axes, q_tokens = t.type.axes[1:], self.core[1][0][1]
        per_query = len(axes) > 1 and tuple(a.name for a in axes[1:]) == tuple(q_tokens)
        if not axes or axes[0].size != heads or len(axes) > 1 and not per_query or \
                per_query and not logits.has_query:
            return self.error("wrong-type", f"a weight term can be scaled by a tensor of one "
                              f"number per head, [batch, {heads}], or per head and query, "
                              f"[batch, {heads}, {', '.join(q_tokens)}], not {t.type}",
                              e.span)
        node = self.add("scale_heads", (logits.node, t.node), logits.type, e.span,
                        op=e.op, per_query=per_query)
        return replace(logits, node=node)

    def pipe(self, e: BinOp):
        left, right = self.value(e.left), self.value(e.right)
        if POISON in (left, right):
            return POISON
        if isinstance(left, Tensor) and isinstance(right, Layer):
            return self.apply(right, left, e.span, self.prefix)
        if isinstance(left, Layer) and isinstance(right, Layer):
            return Layer(None, {}, e.span, parts=_flatten(left) + _flatten(right))
        if isinstance(left, Encoding) and isinstance(right, Layer):
            return replace(left, layers=left.layers + (right,))
        if isinstance(left, Instance) and isinstance(right, Instance):
            def chained(incoming):
                x, middle = left.apply(incoming)
                if middle is POISON:
                    return x, POISON
                return x, right.apply(middle)[1]

            return Instance(chained, e.span)
        return self.error("wrong-type", f"`>>` chains layers or blocks; got {describe(left)} "
                          f"and {describe(right)}", e.span)


def _leaves_alone(op: str, scalar, scalar_first: bool) -> bool:
    """Whether a tensor combined with this number is the tensor itself: t + 0, 0 + t,
    t − 0, t · 1, 1 · t, t / 1."""
    if op in ("+", "-") and scalar == 0:
        return op == "+" or not scalar_first
    return op == "*" and scalar == 1 or op == "/" and scalar == 1 and not scalar_first


_ARITH_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}


def _flatten(layer: Layer) -> tuple[Layer, ...]:
    """A chain's layers in order (a residual is one layer: its parts are its branch)."""
    return layer.parts if layer.op is None else (layer,)


def _names_in(e):
    """Every Name in an expression tree."""
    if isinstance(e, Name):
        yield e
    for child in ("left", "right", "operand", "cond", "then", "orelse", "func"):
        if hasattr(e, child):
            yield from _names_in(getattr(e, child))
    for a in getattr(e, "args", ()):
        yield from _names_in(a)
    for kw in getattr(e, "kwargs", ()):
        yield from _names_in(kw.value)
