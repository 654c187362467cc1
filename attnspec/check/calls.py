"""Calls and layers: operators by name, definitions applied to tensors, learned tensors,
scalar functions, an operator's settings, and applying a layer to tensors (its modules)."""

from __future__ import annotations

from dataclasses import replace

from .. import attend  # noqa: F401  (registers the formulation's operators)
from ..diagnostics import did_you_mean
from ..ir import Axis, TensorType
from ..ops import COMPLEX_OPS, OPS, REQUIRED, SCALAR_FUNCTIONS, OpError
from ..ops.tensors import POINTWISE
from ..source import Span
from ..spec import Attention, Axes, BinOp, Bool, Call, IfElse, Name, Number, UnaryOp, article
from ..values import (
    POISON,
    UNKNOWN,
    Instance,
    Layer,
    Tensor,
    Word,
)
from .base import NORMALISERS, PUBLIC_OPS, SPECIAL, describe, takes
from .terms import _is_layer_op, _is_weight, _maybe_logits

# learned(...)'s random initialisations (layers.Learned draws them)
RANDOM_INITS = ("normal", "unit")


class Calls:
    """Calls of operators, scalar functions and definitions; layers applied to tensors."""

    def v_call(self, e: Call, want):
        if not isinstance(e.func, Name):
            f = self.value(e.func)
            return self.call_value(f, e)
        name = e.func.id
        # a parameter named like an operator (`dropout: float = 0.1`, as torch names it;
        # `window: int`, a range's radius) is a number, which cannot be called: the call is
        # the operator's
        if name in self.env and not (isinstance(self.env[name], (int, float, str))
                                     and (name in PUBLIC_OPS or name in SPECIAL)):
            return self.call_value(self.env[name], e)
        handler = getattr(self, "call_" + name, None)
        if name in ("E1", "E2", "E3", "E4") and getattr(self, "core", None) is None:
            return self.error("wrong-type", f"{name}(...) is a term of the weight: it belongs "
                              "in `weight`, inside a normaliser", e.span)
        if handler is not None and name in SPECIAL:
            return handler(e)
        if name in SCALAR_FUNCTIONS and not (name in PUBLIC_OPS and e.args
                                             and _maybe_tensor(e.args[0], self.env)):
            return self.scalar_call(e)
        if name in POINTWISE and name != "sigmoid" and e.args and _maybe_logits(e.args[0]):
            return self.pointwise_logits(name, e)  # relu(E3(query = ...) + E3(key = ...))
        if name in PUBLIC_OPS and e.args and _is_layer_op(name) and (
                _is_weight(e.args[0]) or _maybe_logits(e.args[0])):
            return self.layer_on_weights(name, e)
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
                                  f"{describe(x)}", e.args[0].span)
            return self.apply(f, x, e.span, f.shared_as or self.prefix)
        if isinstance(f, Instance):  # `Gather(C)(x)`: an attention used on tensors
            if not e.args or e.kwargs:
                return self.error("wrong-arity", "an attention is applied to its inputs, in "
                                  "order: Def(...)(x) or Def(...)(x, memory)", e.span)
            xs = [self.value(a) for a in e.args]
            if POISON in xs:
                return POISON
            for a, x in zip(e.args, xs):
                if not isinstance(x, Tensor):
                    return self.error("wrong-type", f"an attention applies to tensors, not "
                                      f"{describe(x)}", a.span)
            saved = (getattr(self, "core", None), self.role, getattr(self, "kx", None),
                     getattr(self, "kv", 1))
            result = f.apply(xs[0] if len(xs) == 1 else tuple(xs))[1]
            self.core, self.role, self.kx, self.kv = saved
            if isinstance(self.program.definitions.get(called_definition(e)), Attention):
                return self.caller_names(result, self.last_bound, e.span)
            return result
        return self.error("wrong-type", f"{describe(f)} cannot be called", e.func.span)

    def caller_names(self, result, bound: dict[str, str], span: Span):
        """An attention's result under the names its caller gave the axes it received
        (`Def(...)(t)` on t [B, D, P, Q] declared [B, C, H, W]: [B, ..., P, Q] again);
        unchanged if that would name two axes alike."""
        if not isinstance(result, Tensor) or not bound:
            return result
        names = tuple(bound.get(n, n) for n in result.type.names)
        if names == result.type.names or len(set(names)) != len(names):
            return result
        t = TensorType(tuple(replace(a, name=n) for a, n in zip(result.type.axes, names)),
                       result.type.dtype)
        renamed = tuple((a, n) for a, n in zip(result.type.names, names) if a != n)
        return Tensor(self.add("rename", (result.node,), t, span, base="result",
                               role=self.role, renamed=renamed, check=None), t)

    def call_learned(self, e: Call):
        """`learned(K, init = 1)`: a learned tensor [batch = 1, K], its axes named like int
        parameters or lets (MUSE's mixing weights before their softmax); `init = normal`
        draws it from N(0, std²), `init = unit` then scales it to unit length along its first
        axis (EMANet's bases); `trainable = false` makes it a buffer."""
        settings = {"init": 0.0, "std": 1.0, "trainable": True}
        if len(e.args) != 1 or any(kw.name not in settings for kw in e.kwargs):
            return self.error("wrong-arity", "learned takes its axes, then `init`, `std`, "
                              "`trainable`: learned(K, init = 1)", e.span)
        names = self.axes(e.args[0])
        for kw in e.kwargs:
            settings[kw.name] = self.value(kw.value, "word" if kw.name == "init" else "scalar")
        if POISON in (names, *settings.values()):
            return POISON
        if isinstance(settings["init"], Word):
            settings["init"] = settings["init"].name
        if self.learned_settings(e, settings) is POISON:
            return POISON
        sizes = [self.env.get(n) for n in names]
        if UNKNOWN in sizes or UNKNOWN in settings.values():
            return POISON if self.check_only else UNKNOWN
        bad = [n for n, size in zip(names, sizes) if isinstance(size, bool)
               or not isinstance(size, int) or size < 1]
        if bad:
            return self.error("unknown-size", f"learned's axis `{bad[0]}` needs a size: name "
                              f"it like an int parameter or let", e.args[0].span)
        batch = self.ir.node(self.ir.inputs[0]).type.axes[0].name if self.ir.inputs else "B"
        t = TensorType((Axis(batch, 1), *(Axis(n, size) for n, size in zip(names, sizes))))
        attrs = {"shape": tuple(sizes), "init": settings["init"] if settings["init"] in
                 RANDOM_INITS else float(settings["init"]), "std": float(settings["std"]),
                 "trainable": bool(settings["trainable"])}
        path = self.declare_module(self.prefix, "learned", attrs, e.span)
        return Tensor(self.add("learned", (), t, e.span, module=path), t)

    def learned_settings(self, e: Call, settings: dict):
        """`init` a number, `normal` or `unit`; `std` a number ≥ 0; `trainable` a bool
        (values still unknown pass: they are checked once known)."""
        given = {kw.name: kw.value.span for kw in e.kwargs}
        init, std, trainable = settings["init"], settings["std"], settings["trainable"]
        if init is not UNKNOWN and init not in RANDOM_INITS and (
                isinstance(init, bool) or not isinstance(init, (int, float))):
            return self.error("wrong-type", f"`init` is a number, `normal` or `unit`, not "
                              f"{describe(init)}", given.get("init", e.span))
        if std is not UNKNOWN and \
                self.at_least_zero(std, "std", given.get("std", e.span)) is POISON:
            return POISON
        if trainable is not UNKNOWN and not isinstance(trainable, bool):
            return self.error("wrong-type", f"`trainable` is true or false, not "
                              f"{describe(trainable)}", given.get("trainable", e.span))
        return None

    def call_index(self, e: Call):
        """`index(K)`: the numbers 0 … K − 1 along a new axis K, [batch = 1, K], no
        parameters (ALiBi's per-head slopes are a formula of it); its size is an int
        parameter's or let's. `index(t, S)`: 0 … n − 1 along t's axis S, n its size at
        run time (Luong's source positions)."""
        if len(e.args) == 2 and not e.kwargs and isinstance(e.args[1], Name):
            return self.index_along(e)
        if len(e.args) != 1 or e.kwargs or not isinstance(e.args[0], Name):
            return self.error("wrong-arity", "index takes one axis, named like an int "
                              "parameter or let, index(M), or a tensor and one of its axes, "
                              "index(t, S)", e.span)
        name = e.args[0].id
        size = self.env.get(name)
        if size is UNKNOWN:
            return POISON if self.check_only else UNKNOWN
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            return self.error("unknown-size", f"index's axis `{name}` needs a size: name it "
                              f"like an int parameter or let", e.args[0].span,
                              "or give a tensor that has it: index(t, S)")
        like = self.ir.inputs[0]  # the index takes its dtype and device
        batch = self.ir.node(like).type.axes[0].name
        t = TensorType((Axis(batch, 1), Axis(name, size)))
        return Tensor(self.add("index", (like,), t, e.span, size=size), t)

    def index_along(self, e: Call):
        t, name = self.value(e.args[0]), e.args[1].id
        if t is POISON:
            return POISON
        if not isinstance(t, Tensor) or t.type.dtype == "bool":
            return self.error("wrong-type", f"index(t, S) reads the axis S of a tensor of "
                              f"numbers, not {describe(t)}", e.args[0].span)
        if name not in t.type.names[1:]:
            return self.error("axis-mismatch", f"index: {t.type} has no axis `{name}` (after "
                              f"the batch)", e.args[1].span)
        axis = t.type.axis(name)
        out = TensorType((Axis(t.type.names[0], 1), axis), t.type.dtype)
        return Tensor(self.add("index", (t.node,), out, e.span, size=axis.size, axis=name),
                      out)

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
                                  f"{describe(v)}", a.span)
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
            if not first and (not _maybe_tensor(rest[0], self.env) or
                              _names_an_axis(op, rest, e, self.env)):
                break
            v = self.value(rest[0])
            if v is POISON:
                return POISON
            if not isinstance(v, Tensor):
                if first:
                    return self.error("wrong-type", f"`{name}` applies to a tensor, not "
                                      f"{describe(v)}", rest[0].span)
                break
            tensors.append(v)
            rest.pop(0)
        layer = self.layer_of(name, rest, e)
        if layer is POISON:
            return POISON
        if not tensors:
            if op.kind == "reduce":
                return self.error("wrong-arity", f"`{name}` needs a tensor and the axes it "
                                  "reduces, e.g. mean(x, H W)", e.span)
            return layer
        if op.inputs == -1:
            return self.apply_op(layer, tensors, e.span, self.prefix)
        if op.inputs > 1:  # a fixed number of tensors, e.g. upsample(t, x)
            if len(tensors) != op.inputs:
                return self.error("wrong-arity", f"`{name}` applies to {op.inputs} tensors, "
                                  f"got {len(tensors)}", e.span,
                                  f"the {op.inputs} tensors come first, then the settings")
            return self.apply_op(layer, tensors, e.span, self.prefix)
        return self.apply(layer, tensors[0], e.span, self.prefix)

    def layer_of(self, name: str, settings: list, e: Call):
        """The operator `name` with its settings (the arguments after its tensors)."""
        cfg, exprs = self.config(OPS[name], settings, e)
        return POISON if cfg is POISON else Layer(name, cfg, e.span, arg_exprs=exprs)

    def config(self, op, args, e: Call):
        cfg, exprs = {}, {}
        params = [p for p in op.params if not p.keyword]  # the ones given by position
        if len(args) > len(params):
            extra = args[len(params)]
            hint = takes(op)
            if params and params[-1].kind == "axes" and isinstance(extra, Name):
                hint = "axis names are separated by spaces, not commas: `H W`"
            return self.error("wrong-arity", f"`{op.name}` takes {len(params)} setting"
                              f"{'s' if len(params) != 1 else ''} after its input, got "
                              f"{len(args)}", extra.span, hint), exprs
        given = list(zip(params, args))
        names = {p.name: p for p in op.params}
        for kw in e.kwargs:
            if kw.name == "per" and op.kind == "layer":  # any layer, per index of axes
                cfg["per"] = self.axes(kw.value)
                exprs["per"] = kw.value
                if cfg["per"] is POISON:
                    return POISON, exprs
                continue
            if kw.name not in names:
                return self.error("unknown-argument", f"`{op.name}` has no argument "
                                  f"`{kw.name}`", kw.span,
                                  did_you_mean(kw.name, names) or takes(op)), exprs
            if any(p.name == kw.name for p, _ in given):
                return self.error("duplicate-argument", f"`{kw.name}` of `{op.name}` is "
                                  f"given by position and by name", kw.span), exprs
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
            return self.axes(a)
        if p.kind == "sized_axes":  # new axes: one named like an int parameter has its size
            names = self.axes(a)
            if names is POISON:
                return POISON
            sizes = [self.env.get(n) for n in names]
            if UNKNOWN in sizes:
                return UNKNOWN
            return tuple((n, s if isinstance(s, int) and not isinstance(s, bool) else None)
                         for n, s in zip(names, sizes))
        if p.kind == "word" and not p.words and isinstance(a, Name):
            return a.id  # a new name, e.g. stack's `as`: never a parameter's value
        v = self.value(a, "word" if p.kind == "word" else "scalar")
        if v in (POISON, UNKNOWN):
            return v
        if isinstance(v, (Layer, Tensor)):  # e.g. batchnorm(conv1x1(8)), meant as a chain
            hint = f"to apply one layer after another, chain them: ... >> {op.name}" \
                if isinstance(v, Layer) else None
            return self.error("wrong-type", f"`{p.name}` of `{op.name}` is a setting, not "
                              f"{describe(v)}", a.span, hint)
        if p.kind == "word":
            word = v.name if isinstance(v, Word) else v
            if not isinstance(word, str):  # `as = P P`, `as = 3`: one name goes there
                return self.error("wrong-type", f"`{p.name}` of `{op.name}` is "
                                  + (f"one of {', '.join(p.words)}" if p.words else "a name")
                                  + f", not {describe(v)}", a.span)
            if p.words and word not in p.words:
                return self.error("wrong-type", f"`{p.name}` of `{op.name}` is one of "
                                  f"{', '.join(p.words)}, not `{word}`", a.span,
                                  did_you_mean(str(word), p.words))
            return word
        if p.kind == "bool" and not isinstance(v, bool) or p.kind == "int" and (
                isinstance(v, bool) or not isinstance(v, int)) and v is not None:
            return self.error("wrong-type", f"`{p.name}` of `{op.name}` is "
                              f"{article(p.kind)}, not {describe(v)}", a.span)
        return v

    # ------------------------------------------------------------------ applying layers

    def apply(self, layer: Layer, x: Tensor, span: Span, prefix: str):
        for part in layer.parts:  # a shared chain (or residual) shares the layers in it
            part.shared_as = part.shared_as or layer.shared_as
        if layer.op == "residual":
            return self.apply_residual(layer, x, span, prefix)
        if layer.parts:
            for part in layer.parts:
                x = self.apply(part, x, span, prefix)
                if x is POISON:
                    return POISON
            return x
        return self.apply_op(layer, [x], span, layer.shared_as or prefix)

    def apply_residual(self, layer: Layer, x: Tensor, span: Span, prefix: str):
        """`residual(f)`: x + f(x), f keeping x's type."""
        y = self.apply(layer.parts[0], x, span, prefix)
        if y is POISON:
            return POISON
        if y.type != x.type:
            return self.error("shape", f"residual(...) adds its layers' result to what they "
                              f"are given: {y.type} to {x.type}", layer.span,
                              "the layers inside must keep the axes and their sizes")
        return self.arith("+", x, y, layer.span)

    def apply_op(self, layer: Layer, xs: list[Tensor], span: Span, prefix: str):
        op = OPS.get(layer.op)
        if layer.op in NORMALISERS and layer.op not in OPS or op is None:
            return self.error("wrong-type", f"`{layer.op}` is not a layer", layer.span)
        if layer.op == "identity" or layer.op in ("dropout", "drop_path") and \
                layer.config.get("p") == 0:
            return xs[0]  # dropout(p = 0) is the identity: no module, no call
        if UNKNOWN in layer.config.values():
            return POISON  # a setting depends on a parameter with no value yet
        if layer.op == "split" and self.env.get(layer.config.get("axis")) is UNKNOWN:
            return POISON  # the split axis is a parameter's size, not known yet
        if layer.config.get("per"):
            return self.apply_per(layer, xs[0], span, prefix)
        types = [x.type for x in xs]
        exprs = layer.arg_exprs
        if any(t.dtype == "complex" for t in types) and op.name not in COMPLEX_OPS:
            return self.error("wrong-type", f"`{op.name}` takes real tensors, not the complex "
                              f"{next(t for t in types if t.dtype == 'complex')}", layer.span,
                              "a spectrum goes back to real values with irfft(...)")
        if op.build is not None and any(t.dtype == "bool" for t in types):
            return self.error("wrong-type", f"`{op.name}` takes real tensors, not the bool "
                              f"{next(t for t in types if t.dtype == 'bool')}", layer.span,
                              "a mask selects with where(mask, a, b)")
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

    def apply_per(self, layer: Layer, x: Tensor, span: Span, prefix: str):
        """`conv(t, c, per = G)`: the layer on its own for each index of G, with the same
        weights, as if G were part of the batch (DAT's offset network, shared by the
        groups): G moves into the batch, and back where it was."""
        carried = tuple(layer.config["per"])
        where = layer.arg_exprs["per"].span
        if x.type.names[0] in carried or not all(a in x.type.names for a in carried):
            return self.error("axis-mismatch", f"`per` names axes of {x.type} other than the "
                              f"batch, not {' '.join(carried)}", where)
        folded = self.fold(x, x, carried, where, role=self.role)
        inner = replace(layer, config={k: v for k, v in layer.config.items() if k != "per"})
        y = self.apply_op(inner, [folded], span, prefix)
        if y is POISON:
            return POISON
        if any(a in y.type.names for a in carried):
            return self.error("axis-mismatch", f"`{layer.op}` per {' '.join(carried)} gives "
                              f"{y.type}, which has a carried axis again", where)
        return self.unfold(y, x, carried, where, role=self.role)

    def module_for(self, layer: Layer, op, types, prefix) -> str:
        key = 0
        if layer.shared_as and key in layer.modules:
            first = layer.first_types[key]
            if first != types[0]:
                raise OpError(f"the shared layer `{layer.shared_as}` was first applied to "
                              f"{first}, now to {types[0]}")
            return layer.modules[key]
        attrs = op.module_attrs(types, layer.config)
        path = self.declare_module(prefix, op.name, attrs, layer.span)
        if layer.shared_as:
            layer.modules[key], layer.first_types[key] = path, types[0]
        return path


def _maybe_tensor(e, env) -> bool:
    """Could this argument be a tensor (so an operator's input) rather than a setting?"""
    if isinstance(e, Name):  # an unknown name is taken as a tensor, to report it as unknown
        return e.id not in PUBLIC_OPS if e.id not in env else \
            not isinstance(env[e.id], (int, float, str, Word)) and env[e.id] is not UNKNOWN
    return isinstance(e, (Call, BinOp, IfElse, UnaryOp)) and not _is_scalar_expr(e, env)


def _names_an_axis(op, args, call: Call, env) -> bool:
    """Is the unknown name leading `args` the operator's first setting, an axis, rather
    than a tensor (`x >> standardise(H)`, `take(G, 0)`)? Only when every argument left
    fits a setting given by position: `standardise(xx, H)` reports `xx` unknown."""
    if not isinstance(args[0], Name) or args[0].id in env:
        return False
    params = [p for p in op.params if not p.keyword]
    if len(args) > len(params) or params[0].kind not in ("axes", "word", "sized_axes") or \
            any(kw.name in (p.name for p in params[:len(args)]) for kw in call.kwargs):
        return False
    for p, a in zip(params, args):
        names = isinstance(a, (Name, Axes)) and (not isinstance(a, Name) or a.id not in env)
        if names != (p.kind in ("axes", "word", "sized_axes")):
            return False
    return True


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


def called_definition(e: Call) -> str | None:
    """The definition `Def(...)(t)` applies: the name of the inner call's function."""
    inner = e.func
    if isinstance(inner, Call) and isinstance(inner.func, Name):
        return inner.func.id
    return inner.id if isinstance(inner, Name) else None
