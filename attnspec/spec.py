"""The Spec: pydantic models of a parsed .attn file, one model per construct.

Every model keeps the span it came from. Structural rules that need no parameter values
(required parts, duplicate names, a default of the declared type) are validators here;
`parse.py` turns a failed validation into diagnostics that point at the source.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from .source import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    span: Span


def fail(code: str, message: str, span: Span, hint: str | None = None):
    """Raise a validation error that carries its own source span and hint."""
    raise PydanticCustomError(code, message, {"span": span, "hint": hint})


def fail_all(problems: list[tuple]):
    """Raise one validation error carrying every (code, message, span, hint) found, so a
    file's structural problems are reported together."""
    if problems:
        code, message, span, hint = problems[0]
        raise PydanticCustomError(code, message, {"span": span, "hint": hint,
                                                  "more": problems[1:]})


# ---------------------------------------------------------------------------- expressions


class Number(Node):
    kind: Literal["number"] = "number"
    value: int | float

    @model_validator(mode="after")
    def _finite(self):  # 1e400 reads as inf, and inf or nan fills a tensor silently
        if not math.isfinite(self.value):
            fail("syntax", "a number too large for a float (64 bits)", self.span,
                 "the largest is about 1.8e308")
        return self


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class String(Node):
    kind: Literal["string"] = "string"
    value: str


class Name(Node):
    kind: Literal["name"] = "name"
    id: str


class Axes(Node):
    """Two or more axis names side by side, as in `mean(x, H W)`."""

    kind: Literal["axes"] = "axes"
    names: tuple[str, ...]


class Keyword(Node):
    name: str
    value: Expr


class Call(Node):
    kind: Literal["call"] = "call"
    func: Expr
    args: tuple[Expr, ...] = ()
    kwargs: tuple[Keyword, ...] = ()

    @model_validator(mode="after")
    def _positional_first(self):
        """`coords(x, H W, as = P, corners false)`: a lost `=` reads as a value by position
        (the axis names `corners false`), which no named argument may precede."""
        if not self.kwargs:
            return self
        first = min((kw.span.line, kw.span.col) for kw in self.kwargs)
        for arg in self.args:
            if (arg.span.line, arg.span.col) > first:
                names = getattr(arg, "names", ())
                hint = (f"`{names[0]} = {' '.join(names[1:])}`?" if len(names) > 1
                        else "values given by position come before the named ones")
                fail("syntax", "a value by position after a named one", arg.span, hint)
        return self

    @model_validator(mode="after")
    def _unique_keywords(self):
        seen = set()
        for kw in self.kwargs:
            if kw.name in seen:
                fail("duplicate-argument", f"argument `{kw.name}` is given twice", kw.span)
            seen.add(kw.name)
        return self


class BinOp(Node):
    """Arithmetic (+ - * / %), comparison, `and`/`or`, and `>>` (sequence)."""

    kind: Literal["binop"] = "binop"
    op: str
    left: Expr
    right: Expr


class UnaryOp(Node):
    kind: Literal["unary"] = "unary"
    op: Literal["-", "not"]
    operand: Expr


class IfElse(Node):
    kind: Literal["if"] = "if"
    cond: Expr
    then: Expr
    orelse: Expr


Expr = Annotated[
    Number | Bool | String | Name | Axes | Call | BinOp | UnaryOp | IfElse,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------------------- definitions


TYPES = ("int", "float", "bool", "choice")


def article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


class ParamType(Node):
    name: str
    choices: tuple[str | int | float, ...] = ()  # words, or whole numbers: choice(2, 3)

    @model_validator(mode="after")
    def _known(self):
        if self.name not in TYPES:
            from .diagnostics import did_you_mean

            fail("unknown-type", f"unknown type `{self.name}`", self.span,
                 did_you_mean(self.name, TYPES) or "types are int, float, bool, choice(...)")
        kinds = {type(c) for c in self.choices}
        if float in kinds or len(kinds) > 1:
            fail("wrong-type", "a choice lists words or whole numbers, not "
                 + ("fractions" if float in kinds else "both"), self.span,
                 "e.g. choice(avg, max) or choice(2, 3)")
        return self

    @property
    def numeric(self) -> bool:
        """choice(2, 3): an int parameter that takes one of those values."""
        return bool(self.choices) and isinstance(self.choices[0], int)

    def listed(self) -> str:
        return ", ".join(map(str, self.choices))


class Param(Node):
    name: str
    type: ParamType
    default: Expr | None = None

    @model_validator(mode="after")
    def _default_has_declared_type(self):
        d, t = self.default, self.type.name
        if d is None or not isinstance(d, (Number, Bool, Name)) or \
                isinstance(d, Name) and t != "choice":
            return self  # computed defaults (`r: int = C`) are checked with values
        ok = {
            "int": isinstance(d, Number) and isinstance(d.value, int),
            "float": isinstance(d, Number),
            "bool": isinstance(d, Bool),
            "choice": isinstance(d, Name) and d.id in self.type.choices
                      or isinstance(d, Number) and self.type.numeric
                      and d.value in self.type.choices,
        }[t]
        if not ok:
            expected = f"one of {self.type.listed()}" if t == "choice" else article(t)
            got = {Number: f"the number {getattr(d, 'value', '')}",
                   Bool: f"the bool {str(getattr(d, 'value', '')).lower()}",
                   Name: f"`{getattr(d, 'id', '')}`"}[type(d)]
            fail("wrong-type", f"default of `{self.name}` must be {expected}, not {got}", d.span)
        return self


class Input(Node):
    kind: Literal["input"] = "input"
    name: str
    axes: tuple[str, ...]
    axis_spans: tuple[Span, ...]
    dtype: Literal["float", "bool"] = "float"
    optional: bool = False
    default: str | None = None  # `optional = x`: the input x stands for it when left out
    default_span: Span | None = None

    @model_validator(mode="after")
    def _axes_unique(self):
        for i, a in enumerate(self.axes):
            if a in self.axes[:i]:
                fail("duplicate-axis", f"axis `{a}` appears twice in input `{self.name}`",
                     self.axis_spans[i])
        return self

    def default_problems(self, earlier: list[Input]) -> list:
        """`optional = x` names a float input declared before this one, laid out alike:
        as many axes, the axes both name in the same places (x's others renamed)."""
        if self.default is None:
            return []
        other = next((i for i in earlier if i.name == self.default), None)
        where = self.default_span
        if other is None:
            return [("unknown-name", f"`{self.default}` is to stand in for `{self.name}` when "
                     f"it is left out, but no input `{self.default}` is declared before it", where,
                     "name an earlier input, e.g. `input memory: [B, S, D] optional = x`")]
        if "bool" in (self.dtype, other.dtype) or other.default is not None:
            return [("wrong-type", f"`{self.name}` can stand in for a float input given "
                     f"itself, not `{other.name}`", where, None)]
        misplaced = [a for a in self.axes if a in other.axes and
                     other.axes.index(a) != self.axes.index(a)]
        if len(self.axes) != len(other.axes) or misplaced:
            return [("axis-mismatch", f"`{other.name}` [{', '.join(other.axes)}] cannot stand "
                     f"in for `{self.name}` [{', '.join(self.axes)}]: it needs as many axes, "
                     "the axes both name in the same places", where, None)]
        return []


class Let(Node):
    """`let t = expr`; `let y, mu = Def(...)(x)` names each output of an attention."""

    kind: Literal["let"] = "let"
    name: str
    more: list[str] = []  # the names after the first: the call's further outputs
    value: Expr

    @model_validator(mode="after")
    def _names_differ(self):
        names = [self.name, *self.more]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            fail("duplicate-name", f"`{twice}` is named twice in one `let`", self.span)
        return self


class Part(Node):
    """`over`, `range`, `mask`, `heads`, `weight`, `value` or `output` and its expressions."""

    kind: Literal["part"] = "part"
    keyword: Literal["over", "range", "mask", "heads", "weight", "value", "output"]
    values: tuple[Expr, ...]
    kwargs: tuple[Keyword, ...] = ()  # `heads M, kv = G`

    @model_validator(mode="after")
    def _one_value(self):
        for kw in self.kwargs:
            if self.keyword != "heads" or kw.name != "kv":
                fail("wrong-arity", f"`{self.keyword}` takes no `{kw.name} =`", kw.span,
                     "only `heads` has an option: `heads M, kv = G` (keys and values in G "
                     "heads, each shared by M / G query heads)")
        if len({kw.name for kw in self.kwargs}) < len(self.kwargs):
            fail("duplicate-argument", "`kv` is given twice", self.kwargs[-1].span)
        if self.keyword == "output":  # `output y, mu`: the module returns each
            return self
        limit = 2 if self.keyword == "over" else 1
        if len(self.values) > limit:
            most = "at most two values" if limit == 2 else "one value"
            fail("wrong-arity", f"`{self.keyword}` takes {most}",
                 self.values[limit].span,
                 "`over` takes two (what q indexes, then what k indexes) and `output` "
                 "several (the module returns them in order)")
        return self


Statement = Annotated[Input | Let | Part, Field(discriminator="kind")]

REQUIRED_PARTS = ("over", "range", "weight", "value", "output")
FORMULATION_PARTS = ("over", "range", "weight", "value", "heads", "mask")
PART_HINTS = {
    "over": "say what q and k index, e.g. `over positions(H W)` or `over channels(C)`",
    "range": "say which keys each query sees, e.g. `range all` or `range self`",
    "weight": "give the weight function A, e.g. `weight softmax(E1(query = ..., key = ...))`",
    "value": "give the value projection W', e.g. `value identity` or `value conv1x1(C)`",
    "output": "give the output projection W, e.g. `output identity`",
}


def _duplicate_params(params: tuple[Param, ...]) -> list[tuple]:
    seen, problems = set(), []
    for p in params:
        if p.name in seen:
            problems.append(("duplicate-name", f"parameter `{p.name}` is declared twice",
                             p.span, None))
        seen.add(p.name)
    return problems


class Attention(Node):
    name: str
    name_span: Span
    params: tuple[Param, ...]
    body: tuple[Statement, ...]

    @model_validator(mode="after")
    def _parts_complete(self):
        problems = _duplicate_params(self.params)
        seen: dict[str, Part] = {}
        for p in (s for s in self.body if isinstance(s, Part)):
            if p.keyword in seen:
                problems.append(("duplicate-part", f"`{p.keyword}` is given twice in "
                                 f"`{self.name}`", p.span, "an attention has one of each part"))
            seen[p.keyword] = p
        inputs = [s for s in self.body if isinstance(s, Input)]
        names = [s.name for s in inputs]
        problems += [("duplicate-name", f"input `{s.name}` is declared twice", s.span, None)
                     for i, s in enumerate(inputs) if s.name in names[:i]]
        for i, s in enumerate(inputs):
            problems += s.default_problems(inputs[:i])
        if not inputs:
            problems.append(("missing-part", f"attention `{self.name}` has no `input`",
                             self.name_span, "declare the input tensor with named axes, "
                             "e.g. `input x: [B, C, H, W]`"))
        elif inputs[0].optional or inputs[0].dtype != "float":
            problems.append(("wrong-type", "the first input is the attended tensor: float "
                             "and required", inputs[0].span, None))
        # with none of over/range/weight/value it composes others: inputs, lets, output
        composition = not any(kw in seen for kw in FORMULATION_PARTS)
        for kw in ("output",) if composition else REQUIRED_PARTS:
            if kw not in seen:
                problems.append(("missing-part", f"attention `{self.name}` has no `{kw}` part",
                                 self.name_span, PART_HINTS[kw]))
        fail_all(problems)
        return self

    def part(self, keyword: str) -> Part | None:
        return next((s for s in self.body if isinstance(s, Part) and s.keyword == keyword), None)

    @property
    def inputs(self) -> list[Input]:
        return [s for s in self.body if isinstance(s, Input)]


class Block(Node):
    name: str
    name_span: Span
    params: tuple[Param, ...]
    body: Expr

    @model_validator(mode="after")
    def _params_unique(self):
        fail_all(_duplicate_params(self.params))
        return self


class Use(Node):
    paths: tuple[String, ...]


class Spec(Node):
    """One parsed file: its `use` lines and definitions, in source order."""

    file: str
    uses: tuple[Use, ...] = ()
    definitions: tuple[Attention | Block, ...] = ()

    @model_validator(mode="after")
    def _names_unique(self):
        seen = set()
        for d in self.definitions:
            if d.name in seen:
                fail("duplicate-name", f"`{d.name}` is defined twice in this file", d.name_span)
            seen.add(d.name)
        return self


for _model in (Keyword, Call, BinOp, UnaryOp, IfElse, Param):
    _model.model_rebuild()
