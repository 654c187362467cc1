"""The checker's shared state: diagnostics, IR building, parameters."""

from __future__ import annotations

import math
from typing import Any

from .. import attend  # noqa: F401  (registers the formulation's operators)
from ..diagnostics import Diagnostic, UsageError, did_you_mean
from ..ir import IR, ModuleDecl, Node, TensorType
from ..ops import OPS, OpError
from ..program import Program
from ..source import Span
from ..spec import (
    Attention,
    Block,
    Param,
    article,
)
from ..values import (
    POISON,
    UNKNOWN,
    AxesValue,
    DefinitionRef,
    Instance,
    Layer,
    Logits,
    Tensor,
    Weights,
    Word,
)

RANGES = ("all", "self", "causal", "criss_cross")
NORMALISERS = ("softmax", "sigmoid", "count", "double_norm", "l1")
SPECIAL = ("E1", "E2", "E3", "E4", "sinusoid", "offsets", "axis_offsets", "bilinear", "pairs",
           "absolute", "distance", "displacement", "window", "partition", "blocks", "memory",
           "identity", "positions", "channels", "residual", "repeat", "learned", "dropout",
           "index") + NORMALISERS
# Operators a spec may call by name (the rest of OPS is internal to the lowering).
PUBLIC_OPS = tuple(name for name, op in OPS.items() if op.infer is not None)
TYPE_OF = {"int": int, "float": (int, float), "bool": bool}


def _example_values(p: Param) -> tuple[str, str]:
    """A value of the parameter's type for a hint, as --param and as Python write it: 64,
    1.0, true, or its first choice."""
    if p.type.name == "choice":
        first = p.type.choices[0]
        return str(first), repr(first)
    return {"int": ("64", "64"), "float": ("1.0", "1.0"), "bool": ("true", "True")}[p.type.name]


class CheckerBase:
    """State and the IR-building helpers every part of the checker shares."""

    def __init__(self, program: Program, check_only: bool):
        self.program = program
        self.check_only = check_only
        self.diagnostics: list[Diagnostic] = []
        self.ir: IR | None = None
        self.names: dict[str, int] = {}
        self.env: dict[str, Any] = {}
        self.scope = ""
        self.role = "weight"
        self.let_name = ""  # the `let` being built, while role is "let"
        self.instances: dict[str, int] = {}
        self.stack: list[str] = []  # definitions being built, to catch recursion
        self.choices: dict[str, tuple[str, ...]] = {}  # choice parameters in scope
        self.call_span: Span | None = None  # the block call building this attention
        # per attention being built: its axis names → the names of the tensors given to it
        # (`Def(...)(t)`: its result goes back under the caller's names)
        self.bound: list[dict[str, str]] = []
        self.last_bound: dict[str, str] = {}
        self.last_outputs: list = []  # every output of the attention built last
        # repeat(..., share = true): the layers its first application made, to reuse
        self.recording: list[str] | None = None
        self.replaying: list[str] | None = None

    @property
    def prefix(self) -> str:
        """How an unnamed layer's name begins: its part (`weight_mlp`), or inside
        `let g = ...` the let's name (`g_conv`)."""
        return self.let_name if self.role == "let" else self.role

    # ------------------------------------------------------------------ diagnostics

    def error(self, code: str, message: str, span: Span, hint: str | None = None):
        self.diagnostics.append(Diagnostic(code, message, span, hint))
        return POISON

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

    def declare_module(self, prefix: str, op: str, attrs: dict, span: Span,
                       name: str | None = None) -> str:
        """A new layer `<scope><prefix>_<name or op>` built by `op`; while a repeat with
        shared weights replays an attention, the next layer of its first application."""
        if self.replaying is not None:
            path = self.replaying.pop(0)
            if self.ir.modules[path].attrs != attrs:
                raise OpError(f"a shared repetition meets {op} {attrs}, not the "
                              f"{self.ir.modules[path].attrs} of its first application")
            return path
        base = f"{self.scope}{prefix}_{name or op}"
        path, n = base, 1
        while path in self.ir.modules:
            n += 1
            path = f"{base}_{n}"
        self.ir.modules[path] = ModuleDecl(op, attrs, span)
        if self.recording is not None:
            self.recording.append(path)
        return path

    # ------------------------------------------------------------------ entry points

    def top(self, definition: Attention | Block, params: dict[str, Any]) -> IR:
        self.ir = IR(definition.name)
        self.stack = [definition.name]
        env = self.bind_params(definition, params)
        if isinstance(definition, Attention):
            x, y = self.attention(definition, env, None)
            if isinstance(y, Tensor):  # `output y, mu`: the rest, returned after y
                self.ir.extra_outputs = [o.node for o in self.last_outputs[1:]
                                         if isinstance(o, Tensor)]
        else:
            x, y = self.block(definition, env, None)
        if isinstance(y, Tensor):
            self.ir.output = y.node
            if not self.diagnostics:
                self.zero_edges_lowered()
        return self.ir

    def zero_edges_lowered(self) -> None:
        """`blocks(b, halo = h, edge = zeros)` attends keys beyond the map, which only the
        halo kernel has (passes.fuse_halo): a spec that kernel cannot take is refused here,
        where the range can be pointed at, not when it runs."""
        if not any(n.op == "range" and n.attrs.get("zeros") for n in self.ir.nodes()):
            return
        from ..passes import fuse

        for n in fuse(self.ir).nodes():
            if n.op == "range" and n.attrs.get("zeros"):
                self.error("unsupported", "`edge = zeros` attends keys beyond the map, which "
                           "only the blocked kernel has: it takes softmax(E1(q, k) [+ E2(query "
                           "= p, position = R)] [+ E4(position = T)], scaled) · v, R a "
                           "per-axis encoding (axis_offsets, sinusoid, distance) under "
                           "bias-free linear maps, T that or a table of offsets, each read by "
                           "its term alone, dropout on the weights, no key mask",
                           n.span, "or leave the keys beyond the map out: edge = mask")

    def bind_params(self, d: Attention | Block, given: dict[str, Any],
                    spans: dict[str, Span] | None = None) -> dict:
        """Each parameter's value: given (an error points at `spans`, else at the
        declaration), else its default, else unknown when only checking."""
        env: dict[str, Any] = {}
        spans = spans or {}
        self.choices = {p.name: p.type.choices for p in d.params  # the word choices
                        if p.type.name == "choice" and not p.type.numeric}
        declared = {p.name: p for p in d.params}
        for key in given:
            if key not in declared:
                hint = did_you_mean(key, declared) or (
                    f"`{d.name}` takes " + ", ".join(declared) if declared else None)
                raise_usage(f"`{d.name}` has no parameter `{key}`", hint)
        for p in d.params:
            self.env = env
            if p.name in given:
                value = self.param_value(p, given[p.name], spans.get(p.name, p.span))
            elif p.default is not None:
                word = p.type.name == "choice" and not p.type.numeric
                value = self.param_value(p, self.scalar(p.default, "word" if word else "scalar"),
                                         p.default.span)
            elif self.check_only:
                value = UNKNOWN
            else:
                cli, python = _example_values(p)
                value = self.error("missing-param", f"parameter `{p.name}` of `{d.name}` needs "
                                   "a value", p.span, f"pass it, e.g. --param {p.name}={cli} "
                                   f"(in Python, {p.name}={python})")
            env[p.name] = value
        return env

    def at_least_zero(self, value, name: str, span: Span):
        """`value`, if it is a number of at least 0 (a bool is not); else a wrong-type error
        naming the setting (a normaliser's eps, a learned tensor's std)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            return self.error("wrong-type", f"`{name}` is a number at least 0, not "
                              f"{describe(value)}", span)
        return value

    def param_value(self, p: Param, value: Any, span: Span):
        if value in (UNKNOWN, POISON):
            return value
        # a str here came from Python (C="64"); a word of the spec arrives as a Word
        shown = f"the text {value!r}" if isinstance(value, str) else describe(value)
        if isinstance(value, Word):
            value = value.name
        if p.type.name == "choice":
            if isinstance(value, bool) or value not in p.type.choices:
                return self.error("wrong-type", f"`{p.name}` is one of {p.type.listed()}, "
                                  f"not `{value}`", span,
                                  did_you_mean(str(value), list(map(str, p.type.choices))))
            return value
        expected = TYPE_OF[p.type.name]
        if isinstance(value, bool) and p.type.name != "bool" or not isinstance(value, expected):
            return self.error("wrong-type", f"`{p.name}` is {article(p.type.name)}, not "
                              f"{shown}", span)
        if p.type.name == "float" and not math.isfinite(value):  # nan or inf: never meant
            return self.error("wrong-type", f"`{p.name}` is a finite float, not {value}", span)
        return float(value) if p.type.name == "float" else value


def raise_usage(message: str, hint: str | None):
    raise UsageError(message + (f" ({hint})" if hint else ""))


def describe(v) -> str:
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
    if v is None:  # a value given from Python (attnspec.load("se", C=None))
        return "None"
    return article(type(v).__name__)


def takes(op) -> str:
    names = ", ".join(p.name for p in op.params if not p.keyword)
    return f"`{op.name}` takes {names}" if names else f"`{op.name}` takes no settings"
