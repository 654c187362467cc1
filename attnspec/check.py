"""Stage: Program → IR. Binds parameters, resolves names, checks types and infers every
tensor's named-axis type before any tensor exists, building the IR as it goes. Every
problem is collected; they are raised together as one SpecError.
"""

from __future__ import annotations

import math
from typing import Any

from . import attend  # noqa: F401  (registers the formulation's operators)
from .diagnostics import Diagnostic, SpecError, UsageError, did_you_mean
from .ir import IR, Attention as AttentionInfo, Axis, ModuleDecl, Node, TensorType
from .ops import ARITHMETIC, OPS, REQUIRED, SCALAR_FUNCTIONS, OpError, broadcast
from .program import Program
from .source import Span
from .spec import (Attention, Axes, article, BinOp, Block, Bool, Call, IfElse, Input, Let, Name,
                   Number, Param, String, UnaryOp)
from .values import (POISON, UNKNOWN, AxesValue, DefinitionRef, Instance, Layer, Logits,
                     Memory, Tensor, Weights, Word)

RANGES = ("all", "self", "causal")
NORMALISERS = ("softmax", "sigmoid", "count", "double_norm")
SPECIAL = ("E1", "E3", "memory", "positions", "channels", "residual") + NORMALISERS
# Operators a spec may call by name (the rest of OPS is internal to the lowering).
PUBLIC_OPS = tuple(name for name, op in OPS.items() if op.infer is not None)
TYPE_OF = {"int": int, "float": (int, float), "bool": bool}


def build_ir(program: Program, params: dict[str, Any], name: str | None = None,
             check_only: bool = False) -> IR:
    """Elaborate one definition of `program` with `params` into an IR."""
    if name is not None and name not in program.definitions:
        raise_usage(f"no definition `{name}` in {program.main.file}",
                    did_you_mean(name, program.definitions))
    definition = program.definitions[name] if name else program.main_definition()
    checker = Checker(program, check_only)
    ir = checker.top(definition, params)
    if checker.diagnostics:
        raise SpecError(checker.diagnostics, program.sources)
    return ir


def check_program(program: Program) -> None:
    """Check every definition of the main file with its defaults, unknowns left open."""
    diagnostics = []
    for d in program.main.definitions:
        checker = Checker(program, check_only=True)
        checker.top(d, {})
        diagnostics += checker.diagnostics
    if diagnostics:
        raise SpecError(diagnostics, program.sources)


class Checker:
    def __init__(self, program: Program, check_only: bool):
        self.program = program
        self.check_only = check_only
        self.diagnostics: list[Diagnostic] = []
        self.ir: IR | None = None
        self.names: dict[str, int] = {}
        self.env: dict[str, Any] = {}
        self.scope = ""
        self.role = "weight"
        self.instances: dict[str, int] = {}
        self.stack: list[str] = []  # definitions being built, to catch recursion
        self.choices: dict[str, tuple[str, ...]] = {}  # choice parameters in scope
        self.call_span: Span | None = None  # the block call building this attention

    # ------------------------------------------------------------------ diagnostics

    def error(self, code: str, message: str, span: Span, hint: str | None = None):
        self.diagnostics.append(Diagnostic(code, message, span, hint))
        return POISON

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

    # ------------------------------------------------------------------ IR building

    def fresh(self, base: str) -> str:
        name = f"{self.scope}{base}"
        n = self.names.get(name, 0)
        self.names[name] = n + 1
        return name if n == 0 else f"{name}_{n + 1}"

    def add(self, op: str, inputs, type_: TensorType, span: Span, /, base: str | None = None,
            role: str | None = None, module: str | None = None, **attrs) -> str:
        name = self.fresh(base or op.lower())
        self.ir.add(Node(name, op, tuple(inputs), type_, role or self.role, span, attrs, module))
        return name

    def module_path(self, prefix: str, op: str) -> str:
        base = f"{self.scope}{prefix}_{op}"
        path, n = base, 1
        while path in self.ir.modules:
            n += 1
            path = f"{base}_{n}"
        return path

    # ------------------------------------------------------------------ entry points

    def top(self, definition: Attention | Block, params: dict[str, Any]) -> IR:
        self.ir = IR(definition.name)
        self.stack = [definition.name]
        env = self.bind_params(definition, params)
        if isinstance(definition, Attention):
            x, y = self.attention(definition, env, None)
        else:
            x, y = self.block(definition, env, None)
        if isinstance(y, Tensor):
            self.ir.output = y.node
        return self.ir

    def bind_params(self, d: Attention | Block, given: dict[str, Any],
                    spans: dict[str, Span] | None = None) -> dict:
        """Each parameter's value: given (an error points at `spans`, else at the
        declaration), else its default, else unknown when only checking."""
        env: dict[str, Any] = {}
        spans = spans or {}
        self.choices = {p.name: p.type.choices for p in d.params if p.type.name == "choice"}
        declared = {p.name: p for p in d.params}
        for key in given:
            if key not in declared:
                hint = did_you_mean(key, declared) or (
                    f"`{d.name}` takes " + ", ".join(declared) if declared else None)
                raise_usage(f"`{d.name}` has no parameter `{key}`", hint)
        for p in d.params:
            self.env = env
            if p.name in given:
                value = given[p.name]
                if isinstance(value, (Number, Bool, Name, Call, BinOp, UnaryOp, IfElse)):
                    value = self.scalar(value, "word" if p.type.name == "choice" else "scalar")
                value = self.param_value(p, value, spans.get(p.name, p.span))
            elif p.default is not None:
                value = self.param_value(p, self.scalar(
                    p.default, "word" if p.type.name == "choice" else "scalar"), p.default.span)
            elif self.check_only:
                value = UNKNOWN
            else:
                value = self.error("missing-param", f"parameter `{p.name}` of `{d.name}` needs "
                                   "a value", p.span, f"pass it, e.g. --param {p.name}=64")
            env[p.name] = value
        return env

    def param_value(self, p: Param, value: Any, span: Span):
        if value in (UNKNOWN, POISON):
            return value
        if isinstance(value, Word):
            value = value.name
        if p.type.name == "choice":
            if value not in p.type.choices:
                return self.error("wrong-type", f"`{p.name}` is one of "
                                  f"{', '.join(p.type.choices)}, not `{value}`", span,
                                  did_you_mean(str(value), p.type.choices))
            return value
        expected = TYPE_OF[p.type.name]
        if isinstance(value, bool) and p.type.name != "bool" or not isinstance(value, expected):
            return self.error("wrong-type", f"`{p.name}` is {article(p.type.name)}, not "
                              f"{_describe(value)}", span)
        return float(value) if p.type.name == "float" else value

    # ------------------------------------------------------------------ attention

    def attention(self, d: Attention, env: dict, incoming: Tensor | None):
        self.env = dict(env)
        parts = {}
        x = None
        for s in d.body:
            if isinstance(s, Input):
                t = self.input(s, incoming if x is None else None, first=x is None)
                self.env[s.name] = t
                x = t if x is None else x
            elif isinstance(s, Let):
                if s.name in self.env or s.name == "y":
                    self.error("duplicate-name", f"`{s.name}` is already defined", s.span,
                               "a `let` may not shadow a parameter, input or earlier `let`")
                    continue
                self.role = "weight"
                self.env[s.name] = self.value(s.value, shared_as=s.name)
            else:
                parts[s.keyword] = s
        if not isinstance(x, Tensor):
            return x, POISON
        return x, self.formulation(d, parts, x)

    def input(self, s: Input, incoming: Tensor | None, first: bool):
        if not first and incoming is None and self.ir.inputs and self.scope:
            return None  # optional inputs of an attention inside a block stay unset
        axes = []
        for name, span in zip(s.axes, s.axis_spans):
            size = self.env.get(name)
            if isinstance(size, bool) or not isinstance(size, int):
                size = None
            axes.append(Axis(name, size))
        t = TensorType(tuple(axes), s.dtype)
        if incoming is not None:
            where = self.call_span or s.span
            if len(incoming.type.axes) != len(axes):
                return self.error("axis-mismatch", f"`{s.name}` is declared {t} but receives "
                                  f"{incoming.type}", where)
            for mine, theirs in zip(axes, incoming.type.axes):
                if None not in (mine.size, theirs.size) and mine.size != theirs.size:
                    return self.error("axis-mismatch", f"axis {mine.name} of `{s.name}` is "
                                      f"{mine.size} here, but what comes in is "
                                      f"{incoming.type}", where)
            t = TensorType(tuple(Axis(m.name, m.size or th.size)
                                 for m, th in zip(axes, incoming.type.axes)))
            return Tensor(incoming.node, t)
        node = self.add("input", (), t, s.span, base=s.name, role="input",
                        optional=s.optional, axes=tuple((a.name, a.size) for a in axes))
        self.ir.inputs.append(node)
        return Tensor(node, t)

    def formulation(self, d: Attention, parts: dict, x: Tensor):
        over = self.over(parts["over"], x)
        rng = self.range(parts["range"])
        heads = self.heads(parts.get("heads"))
        pad = self.mask(parts.get("mask"), x, over, rng)
        identity = tuple(k for k in ("value", "output")
                         if _is_identity(parts[k].values[0]))
        self.ir.attentions.append(AttentionInfo(self.scope, d.name, str(rng), heads,
                                                _over_text(over), identity))
        if over is POISON:
            return POISON
        # a bad range, head count or mask still lets weight and value be checked
        ordered = sorted((parts["weight"], parts["value"]), key=lambda p: p.span.line)
        results = {}
        for part in ordered:
            self.role = part.keyword
            results[part.keyword] = self.part_value(
                part, x, over, rng, 1 if heads is POISON else heads,
                None if pad is POISON else pad)
        w, v = results["weight"], results["value"]
        if POISON in (w, v, rng, heads, pad):
            return POISON
        self.role = "context"
        y = self.combine(w, v, x, over, rng, heads, parts)
        if y is POISON:
            return POISON
        self.role = "output"
        self.env["y"] = y
        out = self.value(parts["output"].values[0])
        del self.env["y"]
        if isinstance(out, Layer):
            out = self.apply(out, y, parts["output"].span, "output")
        if out is not POISON and not isinstance(out, Tensor):
            return self.error("wrong-type", f"`output` must give a tensor or a layer, not "
                              f"{_describe(out)}", parts["output"].values[0].span)
        return out

    def over(self, part, x: Tensor):
        specs = []
        for e in part.values:
            if not (isinstance(e, Call) and isinstance(e.func, Name)
                    and e.func.id in ("positions", "channels", "memory")):
                return self.error("unknown-over", "`over` takes positions(...), channels(...) "
                                  "or memory(S)", e.span,
                                  "e.g. `over positions(H W)` or `over channels(C)`")
            kind = e.func.id
            if kind == "memory":
                m = self.value(e)
                specs.append(("memory", m))
                continue
            if len(e.args) != 1:
                return self.error("wrong-arity", f"{kind}(...) takes the axes it indexes",
                                  e.span)
            axes = self.axes(e.args[0])
            if axes is POISON:
                return POISON
            for a in axes:
                if a not in x.type.names[1:]:
                    return self.error("axis-mismatch", f"{kind}({' '.join(axes)}): the input "
                                      f"{x.type} has no axis `{a}`", e.args[0].span,
                                      did_you_mean(a, x.type.names[1:]))
            specs.append((kind, tuple(axes)))
        if len(specs) > 2 or specs[0][0] == "memory":
            return self.error("unknown-over", "`over` names what q indexes, then optionally "
                              "what k indexes", part.span)
        return (specs[0], specs[-1])

    def range(self, part):
        value = self.scalar(part.values[0], "range")
        if value is POISON:
            return POISON
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
                              f"{_describe(m)}",
                              part.values[0].span)
        return m

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
        return m

    # ------------------------------------------------------------------ parts

    def part_value(self, part, x: Tensor, over, rng, heads, pad):
        self.core = (x, over, rng, heads, pad)
        value = self.value(part.values[0])
        if isinstance(value, Layer):
            value = self.apply(value, x, part.span, part.keyword)
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
                              f"not {_describe(value)}", part.values[0].span)
        return value

    def combine(self, w, v, x: Tensor, over, rng, heads, parts):
        span = parts["weight"].span
        if rng == "self":
            tokens = over[0][1]
            missing = [a for a in tokens if a not in w.type.names]
            if missing:
                return self.error("axis-mismatch", f"over {over[0][0]}({' '.join(tokens)}) "
                                  f"needs a weight per {' '.join(missing)}, but the weight is "
                                  f"{w.type}", parts["weight"].values[0].span)
            return self.arith("*", w, v, span, base="attend")
        q_tokens = over[0][1]
        if isinstance(v, Memory):
            feature = _feature(x.type, q_tokens)
            dim = v.dim if isinstance(v.dim, int) else x.type.axis(feature).size
            per_head = self.divide(dim, heads, parts["value"].span)
            if per_head is POISON:
                return POISON
            out_t = x.type.replace_axis(feature, Axis(feature, dim))
            path = self.module_path("value", "memory")
            self.ir.modules[path] = ModuleDecl("linear", {"in": v.slots, "out": per_head,
                                                          "bias": False, "init": "default"},
                                               v.span)
            node = self.add("aggregate", (w.node,), out_t, span, module=path, memory=True,
                            heads=heads, q_tokens=q_tokens, v_feature=feature,
                            k_tokens=(), weight_axes=w.type.names, v_width=dim,
                            sizes_of=x.node)
            return Tensor(node, out_t)
        k_tokens = over[1][1] if over[1][0] != "memory" else ()
        feature = self.feature(v, k_tokens, "value", parts["value"].span)
        if feature is POISON or self.divide(v.type.axis(feature).size, heads,
                                            parts["value"].span) is POISON:
            return POISON
        if w.has_query:
            out_t = _with_tokens(v.type, k_tokens, x.type, q_tokens)
        else:
            out_t = TensorType((v.type.axes[0], v.type.axis(feature)))
        node = self.add("aggregate", (w.node, v.node), out_t, span, memory=False, heads=heads,
                        q_tokens=q_tokens, k_tokens=k_tokens, v_feature=feature,
                        weight_axes=("B", "M", "Q", "K") if w.has_query else ("B", "M", "K"),
                        v_width=v.type.axis(feature).size, sizes_of=x.node)
        return Tensor(node, out_t)

    def feature(self, t: Tensor, tokens, what: str, span: Span):
        rest = [a for a in t.type.names[1:] if a not in tokens]
        missing = [a for a in tokens if a not in t.type.names]
        if missing or len(rest) != 1:
            return self.error("axis-mismatch", f"the {what} is {t.type}: it must keep the "
                              f"indexed axes {' '.join(tokens)} and have one feature axis",
                              span)
        return rest[0]

    def divide(self, size, heads, span):
        if size is None or heads == 1:
            return size
        if size % heads:
            return self.error("heads", f"{size} features do not split into {heads} heads",
                              span, "choose a head count that divides the width")
        return size // heads

    # ------------------------------------------------------------------ expressions

    def scalar(self, e, want: str = "scalar"):
        return self.value(e, want=want)

    def axes(self, e) -> tuple[str, ...] | Any:
        if isinstance(e, Axes):
            return e.names
        if isinstance(e, Name):
            return (e.id,)
        return self.error("wrong-type", "expected axis names, e.g. `H W`", e.span)

    def value(self, e, want: str = "value", shared_as: str | None = None):
        method = getattr(self, "v_" + type(e).__name__.lower())
        result = method(e, want)
        if shared_as and isinstance(result, Layer):
            result.shared_as = shared_as
        return result

    def v_number(self, e, want):
        return e.value

    def v_bool(self, e, want):
        return e.value

    def v_string(self, e, want):
        return self.error("wrong-type", "a quoted string is only a `use` path", e.span,
                          f"write words without quotes: `{e.value}`")

    def v_axes(self, e, want):
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
                "wrong-type", f"`not` needs a bool, not {_describe(x)}", e.span)
        if isinstance(x, Tensor):
            return self.arith("*", x, -1, e.span)
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return -x
        return self.error("wrong-type", f"cannot negate {_describe(x)}", e.span)

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
                              f"{_describe(cond)}", e.cond.span)
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
            return self.error("wrong-type", f"`{e.op}` needs numbers, not {_describe(left)} "
                              f"and {_describe(right)}", e.span)
        if e.op in ("/", "%") and right == 0:
            return self.error("zero-size", "division by zero", e.right.span)
        if e.op == "/" and isinstance(left, int) and isinstance(right, int):
            return left // right  # integer widths: C / r rounds down, as in the papers
        if e.op == "%":
            return left % right
        if e.op in ARITHMETIC:
            return ARITHMETIC[e.op](left, right)
        return {"<": left < right, "<=": left <= right, ">": left > right,
                ">=": left >= right}[e.op]

    def arith(self, op: str, left, right, span: Span, base: str | None = None):
        tensors = [v for v in (left, right) if isinstance(v, Tensor)]
        for v in (left, right):
            if not isinstance(v, Tensor) and not (isinstance(v, (int, float))
                                                  and not isinstance(v, bool)):
                return self.error("wrong-type", f"`{op}` cannot combine a tensor with "
                                  f"{_describe(v)}", span)
        if len(tensors) == 2:
            try:
                out, lp, rp = broadcast(left.type, right.type)
            except OpError as err:
                return self.error(err.code, err.message, span, err.hint)
            inputs, attrs = (left.node, right.node), {"left": lp, "right": rp}
        else:
            out, inputs = tensors[0].type, (tensors[0].node,)
            attrs = {"scalar": right if isinstance(left, Tensor) else left,
                     "scalar_first": not isinstance(left, Tensor)}
        node = self.add("arith", inputs, out, span, base=base or _ARITH_NAMES[op], op=op,
                        **attrs)
        return Tensor(node, out)

    def logits_arith(self, e: BinOp, left, right):
        """Logits may be scaled by a number: E1(...) / sqrt(d), 2 * E1(...)."""
        logits, other = (left, right) if isinstance(left, Logits) else (right, left)
        if other is UNKNOWN:
            return logits
        number = isinstance(other, (int, float)) and not isinstance(other, bool)
        if not number or e.op not in ("*", "/") or e.op == "/" and logits is right:
            return self.error("wrong-type", f"a weight term can be multiplied or divided by a "
                              f"number; not `{e.op}` with {_describe(other)}", e.span)
        factor = 1 / other if e.op == "/" else other
        if factor == 1:
            return logits  # `/ s` with s = 1 when an option is off: nothing to compute
        node = self.add("scale", (logits.node,), logits.type, e.span, factor=factor)
        return Logits(node, logits.type, logits.has_query)

    def pipe(self, e: BinOp):
        left, right = self.value(e.left), self.value(e.right)
        if POISON in (left, right):
            return POISON
        if isinstance(left, Tensor) and isinstance(right, Layer):
            return self.apply(right, left, e.span, self.role)
        if isinstance(left, Layer) and isinstance(right, Layer):
            return Layer(None, {}, e.span, parts=_flatten(left) + _flatten(right))
        if isinstance(left, Instance) and isinstance(right, Instance):
            return Instance(lambda x: right.apply(left.apply(x)), e.span)
        return self.error("wrong-type", f"`>>` chains layers or blocks; got {_describe(left)} "
                          f"and {_describe(right)}", e.span)

    # ------------------------------------------------------------------ calls

    def v_call(self, e: Call, want):
        if not isinstance(e.func, Name):
            f = self.value(e.func)
            return self.call_value(f, e)
        name = e.func.id
        if name in self.env:
            return self.call_value(self.env[name], e)
        handler = getattr(self, "call_" + name, None)
        if handler is not None and name in SPECIAL:
            return handler(e)
        if name in SCALAR_FUNCTIONS and not (name in PUBLIC_OPS and e.args
                                             and _maybe_tensor(e.args[0], self.env)):
            return self.scalar_call(e)
        if name in PUBLIC_OPS:
            return self.op_call(name, e)
        if name in self.program.definitions:
            return self.instantiate(self.program.definitions[name], e)
        return self.error("unknown-name", f"unknown operator `{name}`", e.func.span,
                          did_you_mean(name, self._known_names()) or
                          "see docs/language.md for the operators")

    def call_value(self, f, e: Call):
        if f is POISON:
            return POISON
        if isinstance(f, Layer):
            if len(e.args) != 1 or e.kwargs:
                return self.error("wrong-arity", "a layer is applied to one tensor", e.span)
            x = self.value(e.args[0])
            if x is POISON:
                return POISON
            if not isinstance(x, Tensor):
                return self.error("wrong-type", f"a layer applies to a tensor, not "
                                  f"{_describe(x)}", e.args[0].span)
            return self.apply(f, x, e.span, f.shared_as or self.role)
        return self.error("wrong-type", f"{_describe(f)} cannot be called", e.func.span)

    def scalar_call(self, e: Call):
        arity, fn = SCALAR_FUNCTIONS[e.func.id]
        if len(e.args) != arity or e.kwargs:
            return self.error("wrong-arity", f"`{e.func.id}` takes {arity} argument"
                              f"{'s' if arity > 1 else ''}, got {len(e.args) + len(e.kwargs)}",
                              e.span)
        args = [self.value(a, "scalar") for a in e.args]
        if POISON in args:
            return POISON
        if UNKNOWN in args:
            return UNKNOWN
        for a, v in zip(e.args, args):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return self.error("wrong-type", f"`{e.func.id}` needs a number, not "
                                  f"{_describe(v)}", a.span)
        try:
            return fn(*args)
        except ValueError as err:
            return self.error("wrong-type", f"`{e.func.id}`: {err}", e.span)

    def op_call(self, name: str, e: Call):
        """An operator called by name: its leading positional arguments are the tensors
        it applies to; without them it is a layer, applied later."""
        op = OPS[name]
        tensors, rest = [], list(e.args)
        only_tensors = op.kind == "reduce" or not op.params  # nothing else to pass first
        while rest and (op.inputs == -1 or len(tensors) < op.inputs):
            first = only_tensors and not tensors
            if not first and not _maybe_tensor(rest[0], self.env):
                break
            v = self.value(rest[0])
            if v is POISON:
                return POISON
            if not isinstance(v, Tensor):
                if first:
                    return self.error("wrong-type", f"`{name}` applies to a tensor, not "
                                      f"{_describe(v)}", rest[0].span)
                break
            tensors.append(v)
            rest.pop(0)
        cfg, exprs = self.config(op, rest, e)
        if cfg is POISON:
            return POISON
        layer = Layer(name, cfg, e.span, arg_exprs=exprs)
        if not tensors:
            if op.kind == "reduce":
                return self.error("wrong-arity", f"`{name}` needs a tensor and the axes it "
                                  "reduces, e.g. mean(x, H W)", e.span)
            return layer
        if op.inputs == -1:
            return self.apply_op(layer, tensors, e.span, self.role)
        return self.apply(layer, tensors[0], e.span, self.role)

    def config(self, op, args, e: Call):
        cfg, exprs = {}, {}
        params = list(op.params)
        if len(args) > len(params):
            extra = args[len(params)]
            hint = _takes(op)
            if params and params[-1].kind == "axes" and isinstance(extra, Name):
                hint = "axis names are separated by spaces, not commas: `H W`"
            return self.error("wrong-arity", f"`{op.name}` takes {len(params)} setting"
                              f"{'s' if len(params) != 1 else ''} after its input, got "
                              f"{len(args)}", extra.span, hint), exprs
        given = list(zip(params, args))
        names = {p.name: p for p in params}
        for kw in e.kwargs:
            if kw.name not in names:
                return self.error("unknown-argument", f"`{op.name}` has no argument "
                                  f"`{kw.name}`", kw.span,
                                  did_you_mean(kw.name, names) or _takes(op)), exprs
            given.append((names[kw.name], kw.value))
        for p, a in given:
            exprs[p.name] = a
            cfg[p.name] = self.setting(op, p, a)
            if cfg[p.name] is POISON:
                return POISON, exprs
        for p in params:
            if p.name not in cfg:
                if p.default is REQUIRED:
                    return self.error("wrong-arity", f"`{op.name}` needs `{p.name}`", e.span,
                                      f"e.g. {op.name}({p.name} = ...)"), exprs
                cfg[p.name] = p.default
        return cfg, exprs

    def setting(self, op, p, a):
        if p.kind == "axes":
            names = self.axes(a)
            return names
        v = self.value(a, "word" if p.kind == "word" else "scalar")
        if v in (POISON, UNKNOWN):
            return v
        if p.kind == "word":
            word = v.name if isinstance(v, Word) else v
            if p.words and word not in p.words:
                return self.error("wrong-type", f"`{p.name}` of `{op.name}` is one of "
                                  f"{', '.join(p.words)}, not `{word}`", a.span,
                                  did_you_mean(str(word), p.words))
            return word
        if p.kind == "bool" and not isinstance(v, bool) or p.kind == "int" and (
                isinstance(v, bool) or not isinstance(v, int)) and v is not None:
            return self.error("wrong-type", f"`{p.name}` of `{op.name}` is "
                              f"{article(p.kind)}, not {_describe(v)}", a.span)
        return v

    # ------------------------------------------------------------------ applying layers

    def apply(self, layer: Layer, x: Tensor, span: Span, prefix: str):
        if layer.parts:
            for i, part in enumerate(layer.parts):
                part.shared_as = part.shared_as or layer.shared_as
                x = self.apply(part, x, span, prefix)
                if x is POISON:
                    return POISON
            return x
        return self.apply_op(layer, [x], span, layer.shared_as or prefix)

    def apply_op(self, layer: Layer, xs: list[Tensor], span: Span, prefix: str):
        op = OPS.get(layer.op)
        if layer.op in NORMALISERS and layer.op not in OPS or op is None:
            return self.error("wrong-type", f"`{layer.op}` is not a layer", layer.span)
        if layer.op == "identity":
            return xs[0]
        if UNKNOWN in layer.config.values():
            return POISON  # a setting depends on a parameter with no value yet
        types = [x.type for x in xs]
        exprs = layer.arg_exprs
        try:
            out = op.infer(types, layer.config)
            attrs = dict(layer.config)
            module = None
            if op.build is not None:
                module = self.module_for(layer, op, types, prefix)
                attrs = self.ir.modules[module].attrs
        except OpError as err:
            if err.axis is not None and self.env.get(err.axis) is UNKNOWN:
                return POISON  # its size is a parameter with no value yet
            expr = exprs.get(err.arg)
            if expr is None:
                return self.error(err.code, err.message, layer.span, err.hint)
            return self.error(err.code, err.message + self.explain(expr), expr.span, err.hint)
        node = self.add(op.name, [x.node for x in xs], out, span, module=module,
                        **{k: v for k, v in attrs.items() if v is not None})
        return Tensor(node, out)

    def module_for(self, layer: Layer, op, types, prefix) -> str:
        key = 0
        if layer.shared_as and key in layer.modules:
            first = layer.first_types[key]
            if first != types[0]:
                raise OpError(f"the shared layer `{layer.shared_as}` was first applied to "
                              f"{first}, now to {types[0]}")
            return layer.modules[key]
        attrs = op.module_attrs(types, layer.config)
        path = self.module_path(prefix, op.name)
        self.ir.modules[path] = ModuleDecl(op.name, attrs, layer.span)
        if layer.shared_as:
            layer.modules[key], layer.first_types[key] = path, types[0]
        return path

    # ------------------------------------------------------------------ the formulation

    def call_E1(self, e: Call):
        x, over, rng, heads, pad = self.core
        args = self.keywords(e, ("query", "key"))
        if args is POISON:
            return POISON
        q = self.projection(args["query"], x, "query")
        if over[1][0] == "memory" or _is_memory_call(args["key"]):
            k = self.value(args["key"])
        else:
            k = self.projection(args["key"], x, "key")
        self.role = "weight"
        if POISON in (q, k):
            return POISON
        q_tokens = over[0][1]
        qf = self.feature(q, q_tokens, "query", args["query"].span)
        if qf is POISON:
            return POISON
        d = q.type.axis(qf).size
        if self.divide(d, heads, args["query"].span) is POISON:
            return POISON
        if isinstance(k, Memory):
            per_head = d // heads if d is not None else None
            path = self.module_path("key", "memory")
            self.ir.modules[path] = ModuleDecl("linear", {"in": per_head, "out": k.slots,
                                                          "bias": False, "init": "default"},
                                               k.span)
            t = _logits_type(x, heads, q_tokens, Axis(_over_name(over[1]), k.slots))
            node = self.add("E1_memory", (q.node,), t, e.span, base="e1",
                            module=path, heads=heads, q_tokens=q_tokens, q_feature=qf,
                            **{"in": per_head})
            return Logits(node, t, True)
        if not isinstance(k, Tensor):
            return self.error("wrong-type", "the key must be a layer or memory(S)",
                              args["key"].span)
        k_tokens = over[1][1]
        kf = self.feature(k, k_tokens, "key", args["key"].span)
        if kf is POISON:
            return POISON
        if None not in (d, k.type.axis(kf).size) and d != k.type.axis(kf).size:
            return self.error("axis-mismatch", f"query and key widths differ: {q.type} vs "
                              f"{k.type}", e.span)
        t = _logits_type(x, heads, q_tokens, Axis(_key_axis_name(q_tokens, k_tokens)))
        node = self.add("E1", (q.node, k.node), t, e.span, base="e1", heads=heads,
                        q_tokens=q_tokens, q_feature=qf, k_tokens=k_tokens, k_feature=kf)
        return Logits(node, t, True)

    def call_E3(self, e: Call):
        x, over, rng, heads, pad = self.core
        args = self.keywords(e, ("key",))
        if args is POISON:
            return POISON
        k = self.projection(args["key"], x, "key")
        self.role = "weight"
        if k is POISON:
            return POISON
        k_tokens = over[1][1]
        kf = self.feature(k, k_tokens, "key", args["key"].span)
        if kf is POISON:
            return POISON
        if k.type.axis(kf).size not in (heads, None):
            return self.error("axis-mismatch", f"E3's key gives one score per key and head: "
                              f"width {heads}, not {k.type.axis(kf).size}", args["key"].span,
                              f"use conv1x1({heads}) or linear({heads})")
        t = TensorType((x.type.axes[0], Axis("M", heads), Axis(_key_axis_name((), k_tokens))))
        node = self.add("E3", (k.node,), t, e.span, base="e3", heads=heads, k_tokens=k_tokens,
                        k_feature=kf)
        return Logits(node, t, False)

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

    def projection(self, arg, x: Tensor, role: str):
        self.role = role
        v = self.value(arg)
        if isinstance(v, Layer):
            v = self.apply(v, x, arg.span, role)
        if v is not POISON and not isinstance(v, Tensor):
            return self.error("wrong-type", f"the {role} must be a layer or tensor, not "
                              f"{_describe(v)}", arg.span)
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
        return Memory(slots, dim, e.span)

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
                              f"E1(...), not {_describe(logits)}", e.args[0].span)
        x, over, rng, heads, pad = self.core
        source = logits.node
        if rng == "causal" or pad is not None:
            if op not in ("softmax_keys", "sigmoid"):
                return self.error("unsupported", f"range `{rng}` or a mask needs a softmax "
                                  "or sigmoid normaliser", e.span)
            inputs = (source,) + ((pad.node,) if pad is not None else ())
            source = self.add("range", inputs, logits.type, e.span, role="range",
                              causal=rng == "causal")
        node = self.add(op, (source,), logits.type, e.span, base=e.func.id, role="normaliser",
                        **attrs)
        return Weights(node, logits.type, logits.has_query)

    def call_softmax(self, e: Call):
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

    # ------------------------------------------------------------------ blocks

    def block(self, d: Block, env: dict, incoming: Tensor | None):
        self.env = dict(env)
        value = self.value(d.body)
        if value is POISON:
            return None, POISON
        if not isinstance(value, Instance):
            return None, self.error("wrong-type", f"a block composes attentions, not "
                                    f"{_describe(value)}", d.body.span)
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
            saved = (self.env, self.scope, self.role, self.choices, self.call_span)
            self.scope = saved[1] + self.instance_name(d.name) + "."
            self.stack.append(d.name)
            self.call_span = e.span
            env = self.bind_params(d, {k: v for k, v in given.items() if v is not UNKNOWN},
                                   spans)
            result = (self.attention if isinstance(d, Attention) else self.block)(
                d, env, incoming)
            self.stack.pop()
            self.env, self.scope, self.role, self.choices, self.call_span = saved
            return result

        return Instance(lambda x: _chain(apply, x), e.span)

    def instance_name(self, name: str) -> str:
        base = "".join("_" + c.lower() if c.isupper() and i and not name[i - 1].isupper()
                       else c.lower() for i, c in enumerate(name))
        n = self.instances.get(self.scope + base, 0) + 1
        self.instances[self.scope + base] = n
        return base if n == 1 else f"{base}_{n}"

    def parallel(self, left, right, e: BinOp):
        if not (isinstance(left, Instance) and isinstance(right, Instance)) or e.op != "+":
            return self.error("wrong-type", f"blocks combine with `>>` or `+`, not `{e.op}` "
                              f"with {_describe(left if not isinstance(left, Instance) else right)}",
                              e.span)

        def apply(x):
            x, a = left.apply(x)
            _, b = right.apply(x)
            if POISON in (a, b):
                return x, POISON
            return x, self.arith("+", a, b, e.span, base="sum")

        return Instance(apply, e.span)

    def call_residual(self, e: Call):
        if len(e.args) != 1 or e.kwargs:
            return self.error("wrong-arity", "residual(...) takes one block", e.span)
        inner = self.value(e.args[0])
        if inner is POISON:
            return POISON
        if not isinstance(inner, Instance):
            return self.error("wrong-type", "residual(...) wraps a block", e.args[0].span)

        def apply(x):
            x, y = inner.apply(x)
            return x, POISON if y is POISON else self.arith("+", x, y, e.span, base="residual")

        return Instance(apply, e.span)


def _chain(apply, incoming):
    """Instances return (input, output); when chained the output of one feeds the next."""
    if isinstance(incoming, tuple):
        first_in, previous = incoming
        if previous is POISON:
            return first_in, POISON
        _, out = apply(previous)
        return first_in, out
    return apply(incoming)


def raise_usage(message: str, hint: str | None):
    raise UsageError(message + (f" ({hint})" if hint else ""))


_ARITH_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


def _describe(v) -> str:
    if isinstance(v, bool):
        return f"the bool {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"`{v}`"
    if isinstance(v, Tensor):
        return f"a tensor {v.type}"
    if isinstance(v, Layer):
        return f"the layer `{v.op or 'composition'}`"
    if isinstance(v, Word):
        return f"the word `{v.name}`"
    if isinstance(v, (Logits, Weights)):
        return "a weight term"
    if isinstance(v, Instance):
        return "a block"
    if isinstance(v, AxesValue):
        return f"the axes {' '.join(v.names)}"
    if isinstance(v, DefinitionRef):
        return f"the definition `{v.name}`"
    return type(v).__name__.lower()


def _takes(op) -> str:
    names = ", ".join(p.name for p in op.params)
    return f"`{op.name}` takes {names}" if names else f"`{op.name}` takes no settings"


def _flatten(layer: Layer) -> tuple[Layer, ...]:
    return layer.parts if layer.parts else (layer,)


def _maybe_tensor(e, env) -> bool:
    """Could this argument be a tensor (so an operator's input) rather than a setting?"""
    if isinstance(e, Name):  # an unknown name is taken as a tensor, to report it as unknown
        return e.id not in PUBLIC_OPS if e.id not in env else \
            not isinstance(env[e.id], (int, float, str, Word)) and env[e.id] is not UNKNOWN
    return isinstance(e, (Call, BinOp, IfElse, UnaryOp)) and not _is_scalar_expr(e, env)


def _is_scalar_expr(e, env) -> bool:
    if isinstance(e, (Number, Bool)):
        return True
    if isinstance(e, Name):
        return e.id in env and isinstance(env[e.id], (int, float, bool, str)) or \
            env.get(e.id) is UNKNOWN
    if isinstance(e, BinOp):
        return _is_scalar_expr(e.left, env) and _is_scalar_expr(e.right, env)
    if isinstance(e, UnaryOp):
        return _is_scalar_expr(e.operand, env)
    if isinstance(e, Call) and isinstance(e.func, Name) and e.func.id in SCALAR_FUNCTIONS:
        return all(_is_scalar_expr(a, env) for a in e.args)
    if isinstance(e, IfElse):
        return _is_scalar_expr(e.then, env) and _is_scalar_expr(e.orelse, env)
    return False


def _maybe_logits(e) -> bool:
    if isinstance(e, Call) and isinstance(e.func, Name):
        return e.func.id in ("E1", "E3")
    if isinstance(e, BinOp):
        return _maybe_logits(e.left) or _maybe_logits(e.right)
    return False


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


def _is_identity(e) -> bool:
    return isinstance(e, Name) and e.id in ("identity", "y")


def _is_memory_call(e) -> bool:
    return isinstance(e, Call) and isinstance(e.func, Name) and e.func.id == "memory"


def _feature(t: TensorType, tokens) -> str:
    return [a for a in t.names[1:] if a not in tokens][0]


def _over_name(spec) -> str:
    kind, what = spec
    return f"S" if kind == "memory" and not isinstance(what, tuple) else "·".join(what)


def _key_axis_name(q_tokens, k_tokens) -> str:
    name = "·".join(k_tokens)
    return name + "'" if tuple(q_tokens) == tuple(k_tokens) else name


def _logits_type(x: Tensor, heads: int, q_tokens, key_axis: Axis) -> TensorType:
    return TensorType((x.type.axes[0], Axis("M", heads), Axis("·".join(q_tokens)), key_axis))


def _with_tokens(v: TensorType, k_tokens, x: TensorType, q_tokens) -> TensorType:
    """The value's layout with its key axes replaced by the query's axes."""
    if tuple(k_tokens) == tuple(q_tokens):
        return v
    feature = [a for a in v.axes[1:] if a.name not in k_tokens][0]
    return TensorType(tuple(feature if a.name not in q_tokens and a is not x.axes[0] else a
                            for a in x.axes))


def _over_text(over) -> str:
    if over is POISON:
        return "?"
    q, k = over
    text = f"{q[0]}({' '.join(q[1])})"
    if k != q:
        text += f" → memory({k[1].slots})" if k[0] == "memory" else f" → {k[0]}({' '.join(k[1])})"
    return text
