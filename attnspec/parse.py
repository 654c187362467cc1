"""Stage: text → Spec. The cached lark parser, a transformer to plain data, pydantic validation.

No lark or pydantic exception leaves this module: both become diagnostics with spans.
"""

from __future__ import annotations

import functools
from typing import Any

import lark
from lark import Lark, Token, Transformer, v_args
from pydantic import TypeAdapter, ValidationError

from .diagnostics import Diagnostic, SpecError, did_you_mean
from .resources import grammar_file
from .source import NOT_UTF8, SourceFile, Span
from .spec import Attention, Block, Spec, Use


@functools.cache
def parser() -> Lark:
    return Lark(grammar_file().read_text(), parser="lalr", propagate_positions=True,
                maybe_placeholders=True)


def parse_source(source: SourceFile) -> Spec:
    """Parse and validate one file; raises SpecError with every problem found."""
    bad = NOT_UTF8.search(source.text)
    if bad is not None:
        raise SpecError([_encoding_diagnostic(source, bad.start())], {source.name: source})
    try:
        tree = parser().parse(source.text)
    except lark.exceptions.UnexpectedInput as err:
        raise SpecError([_syntax_diagnostic(err, source)], {source.name: source}) from None
    items = _ToData(source.name).transform(tree)
    return _validate(items, source)


# ---------------------------------------------------------------------------- syntax errors

_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a quoted path", "PART": "a part keyword",
    "COMPARE": "a comparison", "ADD_OP": "`+` or `-`", "MUL_OP": "`*`, `/` or `%`",
    "PIPE": "`>>`", "DTYPE": "`bool` or `float`", "OPTIONAL": "`optional`", "$END": "end of file",
}


def _describe(terminal: str) -> str:
    if terminal in _TOKEN_WORDS:
        return _TOKEN_WORDS[terminal]
    pattern = parser().get_terminal(terminal).pattern
    return f"`{pattern.value}`" if pattern.type == "str" else terminal.lower()


def _encoding_diagnostic(source: SourceFile, pos: int) -> Diagnostic:
    """A byte that is not UTF-8 at `pos` (a binary file, or text saved in another
    encoding): lark would stop there with a character that cannot be printed."""
    line = source.text.count("\n", 0, pos) + 1
    col = pos - source.text.rfind("\n", 0, pos)
    byte = ord(source.text[pos]) - 0xDC00
    return Diagnostic("encoding", f"byte 0x{byte:02x} is not UTF-8 text",
                      Span(source.name, line, col, line, col + 1),
                      "a spec is a UTF-8 text file: save it as UTF-8")


def _syntax_diagnostic(err: lark.exceptions.UnexpectedInput, source: SourceFile) -> Diagnostic:
    line, col = max(err.line, 1), max(err.column, 1)
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        char = source.text[err.pos_in_stream]
        span = Span(source.name, line, col, line, col + 1)
        return Diagnostic("syntax", f"unexpected character `{char}`", span,
                          "comments start with `#`; names are letters, digits and `_`")
    token = getattr(err, "token", None)
    unclosed = _unclosed_paren(source, line)
    if unclosed is not None:
        return Diagnostic("syntax", "`(` is never closed", unclosed,
                          "add `)`; without it the lines that follow are read as its arguments")
    if isinstance(err, lark.exceptions.UnexpectedEOF) or token is None or token.type == "$END":
        last = source.text.rstrip().splitlines() or [""]
        n = len(last)
        span = Span(source.name, n, len(last[-1]) + 1, n, len(last[-1]) + 2)
        return Diagnostic("syntax", "the file ends in the middle of a definition", span,
                          "check for a missing `)`, `]` or `}`")
    expected = sorted({_describe(t) for t in err.expected})
    span = Span(source.name, line, col, token.end_line or line,
                token.end_column or col + len(str(token)))
    listed = ", ".join(expected[:6]) + (", ..." if len(expected) > 6 else "")
    hint = f"expected {listed}"
    if token.type == "NAME" and "PART" in err.expected:  # a misspelt keyword
        hint = did_you_mean(str(token), STATEMENT_WORDS) or hint
    return Diagnostic("syntax", f"unexpected `{token}`", span, hint)


def _unclosed_paren(source: SourceFile, error_line: int) -> Span | None:
    """The innermost `(` still open where parsing failed, if it opened on an earlier line:
    the parser only notices a missing `)` lines later."""
    code = "\n".join(line.split("#")[0] for line in source.text.splitlines())
    if code.count("(") <= code.count(")"):
        return None
    stack = []
    for n, text in enumerate(source.text.splitlines()[:error_line - 1], start=1):
        for col, char in enumerate(text.split("#")[0], start=1):
            if char == "(":
                stack.append((n, col))
            elif char == ")" and stack:
                stack.pop()
    if not stack:
        return None
    n, col = stack[-1]
    return Span(source.name, n, col, n, col + 1)


STATEMENT_WORDS = ("input", "let", "over", "range", "mask", "heads", "weight", "value",
                   "output")


# ---------------------------------------------------------------------------- tree → data


@v_args(meta=True)
class _ToData(Transformer):
    """Builds plain dicts in the shape of spec.py's models, each with its span."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, m) -> Span:
        return Span(self.file, m.line, m.column, m.end_line, m.end_column)

    def _tok(self, t: Token) -> Span:
        return Span(self.file, t.line, t.column, t.end_line, t.end_column)

    def start(self, meta, items):
        return items

    def use(self, meta, paths):
        strings = [{"kind": "string", "value": p[1:-1], "span": self._tok(p)} for p in paths]
        return ("use", {"span": self._span(meta), "paths": strings})

    def attention(self, meta, c):
        name, params, *body = c
        return ("attention", {"span": self._span(meta), "name": str(name),
                              "name_span": self._tok(name), "params": params, "body": body})

    def block(self, meta, c):
        name, params, body = c
        return ("block", {"span": self._span(meta), "name": str(name),
                          "name_span": self._tok(name), "params": params, "body": body})

    def params(self, meta, c):
        return [p for p in c if p is not None]

    def param(self, meta, c):
        name, type_, default = c
        return {"span": self._span(meta), "name": str(name), "type": type_, "default": default}

    def simple_type(self, meta, c):
        return {"span": self._span(meta), "name": str(c[0])}

    def choice_type(self, meta, c):
        return {"span": self._span(meta), "name": "choice",
                "choices": [_choice(t) for t in c if t is not None]}

    def input(self, meta, c):
        name, *axes, dtype, optional, default = c
        axes = [a for a in axes if a is not None]
        return {"kind": "input", "span": self._span(meta), "name": str(name),
                "axes": [str(a) for a in axes],
                "axis_spans": [self._tok(a) for a in axes],
                "dtype": str(dtype) if dtype else "float", "optional": optional is not None,
                "default": None if default is None else str(default),
                "default_span": None if default is None else self._tok(default)}

    def let(self, meta, c):
        *names, value = c
        return {"kind": "let", "span": self._span(meta), "name": str(names[0]),
                "more": [str(n) for n in names[1:]], "value": value}

    def part(self, meta, c):
        values = [v for v in c[1:] if v.get("kind") != "part_kwarg"]
        kwargs = [{k: v for k, v in kw.items() if k != "kind"} for kw in c[1:]
                  if kw.get("kind") == "part_kwarg"]
        return {"kind": "part", "span": self._span(meta), "keyword": str(c[0]),
                "values": values, "kwargs": kwargs}

    def part_kwarg(self, meta, c):
        return {"kind": "part_kwarg", **self.kwarg(meta, c)}

    # expressions
    def if_else(self, meta, c):
        then, cond, orelse = c
        return {"kind": "if", "span": self._span(meta), "cond": cond, "then": then,
                "orelse": orelse}

    def _binop(self, meta, left, op, right):
        return {"kind": "binop", "span": self._span(meta), "op": op, "left": left,
                "right": right}

    def or_op(self, meta, c):
        return self._binop(meta, c[0], "or", c[1])

    def and_op(self, meta, c):
        return self._binop(meta, c[0], "and", c[1])

    def compare_op(self, meta, c):
        return self._binop(meta, c[0], str(c[1]), c[2])

    bin_op = compare_op
    pipe_op = compare_op

    def not_op(self, meta, c):
        return {"kind": "unary", "span": self._span(meta), "op": "not", "operand": c[0]}

    def neg(self, meta, c):
        return {"kind": "unary", "span": self._span(meta), "op": "-", "operand": c[0]}

    def number(self, meta, c):
        text = str(c[0])
        value = int(text) if text.isdigit() else float(text)
        return {"kind": "number", "span": self._span(meta), "value": value}

    def true(self, meta, c):
        return {"kind": "bool", "span": self._span(meta), "value": True}

    def false(self, meta, c):
        return {"kind": "bool", "span": self._span(meta), "value": False}

    def name(self, meta, c):
        return {"kind": "name", "span": self._span(meta), "id": str(c[0])}

    def string(self, meta, c):
        return {"kind": "string", "span": self._span(meta), "value": str(c[0])[1:-1]}

    def call(self, meta, c):
        func, args = c
        args = args or []
        return {"kind": "call", "span": self._span(meta), "func": func,
                "args": [a for a in args if "kind" in a],
                "kwargs": [a for a in args if "kind" not in a]}

    def args(self, meta, c):
        return [a for a in c if a is not None]

    def kwarg(self, meta, c):
        return {"span": self._span(meta), "name": str(c[0]), "value": c[1]}

    def kwarg_axes(self, meta, c):
        name, *axes = c
        first, last = axes[0], axes[-1]
        value = {"kind": "axes", "names": [str(t) for t in axes],
                 "span": Span(self.file, first.line, first.column, last.end_line,
                              last.end_column)}
        return {"span": self._span(meta), "name": str(name), "value": value}

    def axes(self, meta, c):
        return {"kind": "axes", "span": self._span(meta), "names": [str(t) for t in c]}


# ---------------------------------------------------------------------------- validation

_DEFINITION = TypeAdapter(Attention | Block)


def _validate(items: list[tuple[str, dict]], source: SourceFile) -> Spec:
    diagnostics, uses, definitions = [], [], []
    for kind, data in items:
        try:
            if kind == "use":
                uses.append(Use.model_validate(data))
            else:
                model = Attention if kind == "attention" else Block
                definitions.append(model.model_validate(data))
        except ValidationError as err:
            diagnostics.extend(_diagnostics_from(err, data))
    try:
        spec = Spec(span=Span(source.name, 1, 1, 1, 1), file=source.name, uses=uses,
                    definitions=definitions)
    except ValidationError as err:
        diagnostics.extend(_diagnostics_from(err, {}))
    if diagnostics:
        raise SpecError(diagnostics, {source.name: source})
    return spec


def _diagnostics_from(err: ValidationError, data: dict) -> list[Diagnostic]:
    """Each pydantic error becomes a diagnostic at the span it names, or at the span of
    the deepest piece of input data on its `loc` path."""
    out = []
    for e in err.errors():
        ctx = e.get("ctx") or {}
        span, hint = ctx.get("span"), ctx.get("hint")
        if span is None:
            span = _deepest_span(data, e["loc"])
        out.append(Diagnostic(e["type"] if "span" in ctx else "invalid", e["msg"], span, hint))
        out.extend(Diagnostic(*more) for more in ctx.get("more", ()))
    return out


def _deepest_span(data: Any, loc: tuple) -> Span:
    span = data.get("span") if isinstance(data, dict) else None
    for key in loc:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(data, dict) and "span" in data:
            span = data["span"]
    return span


def _choice(token) -> str | int | float:
    """A choice's item: a word, or a number (`choice(2, 3)`; ParamType rejects fractions)."""
    if token.type != "NUMBER":
        return str(token)
    return float(token) if any(c in token for c in ".eE") else int(token)
