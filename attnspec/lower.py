"""Stage: IR → torch.fx GraphModule. Generated code, not an interpreter: the module's
forward is the Python that torch.fx writes for the graph, as a person would write it.
"""

from __future__ import annotations

import math
import operator
import os

import torch
import torch.fx as fx
import torch.nn as nn

from . import runtime
from .diagnostics import UsageError
from .ir import IR, TensorType
from .ops import ARITHMETIC, OPS
from .passes import fuse

# Functions without side effects or randomness whose repeated calls may share one result.
PURE = {operator.add, operator.sub, operator.mul, operator.truediv, operator.getitem,
        torch.mean, torch.sum}


class RuntimeTracer(fx.Tracer):
    """Traces generated code with attnspec.runtime's helpers as leaf calls. Unpickling a
    GraphModule (`torch.load` of a whole module) traces its code again with the graph's
    tracer class; fx's default one would run check_input on a Proxy and fail."""

    proxy_buffer_attributes = True  # a buffer read in forward stays a buffer, no copy

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("autowrap_modules", (math, runtime))
        super().__init__(*args, **kwargs)


class Emitter:
    """What an operator's `emit` sees: helpers that add fx nodes, and IR types by name."""

    def __init__(self, ir: IR, graph: fx.Graph):
        self.ir, self.graph = ir, graph
        self.env: dict[str, fx.Node] = {}
        self.size_of: dict[str, fx.Node] = {}
        self.done: dict[tuple, fx.Node] = {}  # pure calls already emitted

    def call(self, fn, *args, **kwargs) -> fx.Node:
        """A call; a pure one made before with the same arguments is reused (a mean and a
        deviation that a spec writes and `var` needs again are computed once)."""
        if fn not in PURE:
            return self.graph.call_function(fn, args, kwargs)
        key = (fn, repr(args), repr(sorted(kwargs.items())))
        if key not in self.done:
            self.done[key] = self.graph.call_function(fn, args, kwargs)
        return self.done[key]

    def method(self, obj, name: str, *args, **kwargs) -> fx.Node:
        return self.graph.call_method(name, (obj, *args), kwargs)

    def module(self, path: str, *args) -> fx.Node:
        return self.graph.call_module(path, args)

    def attr(self, path: str) -> fx.Node:
        """A parameter of a module, read directly (no call)."""
        return self.graph.get_attr(path)

    def type(self, name: str) -> TensorType:
        return self.ir.node(name).type

    def sizes(self, name: str, axes: tuple[str, ...]) -> tuple:
        """Run-time sizes of `axes` of the tensor `name` (one size() call per tensor)."""
        if name not in self.size_of:
            self.size_of[name] = self.method(self.env[name], "size")
        t = self.type(name)
        return tuple(self.call(operator.getitem, self.size_of[name], t.index(a)) for a in axes)


def lower(ir: IR, fused_kernels: bool = True) -> fx.GraphModule:
    """The IR as a GraphModule; `fused_kernels=False` keeps the formulation's steps."""
    root = nn.Module()
    for path, decl in ir.modules.items():  # declaration order: stable parameter order
        _set_submodule(root, path, _build(path, decl))
    graph = fx.Graph(tracer_cls=RuntimeTracer)
    em = Emitter(ir, graph)
    for name in ir.inputs:
        node = ir.node(name)
        short = name.rsplit(".", 1)[-1]  # an input inside a block is named by its scope
        ph = graph.placeholder(short, default_value=None) if node.attrs["optional"] \
            else graph.placeholder(short)
        em.env[name] = em.call(runtime.check_input, ph, short, node.attrs["axes"],
                               node.type.dtype)
    _check_shared_axes(em, ir)
    fused = fuse(ir) if fused_kernels else ir
    for node in fused.nodes():
        if node.op == "input":
            continue
        args = [em.env[i] for i in node.inputs]
        em.ir = fused
        em.env[node.name] = _emit(em, node, args)
    outputs = [em.env[o] for o in fused.outputs()]
    graph.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
    gm = fx.GraphModule(root, graph, class_name=_class_name(ir.name))
    gm._graphmodule_cls_name = gm.__class__.__name__  # the name fx gives it when unpickled
    _order_like(gm, root)
    return gm


def _build(path: str, decl) -> nn.Module:
    """The layer's module; one whose float32 parameters would not fit in this machine's
    memory (a ratio of 1e8 somewhere) is the user's mistake, not an allocator crash."""
    op = OPS[decl.op]
    count = op.count(decl.attrs) if op.count else 0
    if count * 4 > _memory():
        raise UsageError(f"layer `{path}` would have {count:,} parameters, more than this "
                         f"machine's memory holds: check the sizes it is given")
    return op.build(decl.attrs)


def _memory() -> float:
    """This machine's physical memory in bytes (unbounded where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return math.inf


def _check_shared_axes(em, ir: IR) -> None:
    """Inputs that share a free axis name must agree on its size at run time (a padding
    mask and its sequence, a second map): an error naming the axis, not torch's."""
    inputs = [ir.node(name) for name in ir.inputs]
    names = [n.attrs["axes"] for n in inputs]
    counts = {}
    for axes in names:
        for axis, size in axes:
            if size is None:
                counts[axis] = counts.get(axis, 0) + 1
    if any(c > 1 for c in counts.values()):
        em.call(runtime.check_shared_axes, tuple(em.env[n.name] for n in inputs),
                tuple(n.name.rsplit(".", 1)[-1] for n in inputs), tuple(names))


def _emit(em, node, args):
    if node.op == "arith" and "scalar" in node.attrs:
        # (x * 1, x + 0 and the like never get here: the checker gives x itself)
        op, s, first = node.attrs["op"], node.attrs["scalar"], node.attrs["scalar_first"]
        fn = ARITHMETIC[op]
        return em.call(fn, s, args[0]) if first else em.call(fn, args[0], s)
    return OPS[node.op].emit(em, node, args)


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    *parents, leaf = path.split(".")
    owner = root
    for p in parents:
        if not hasattr(owner, p):
            owner.add_module(p, nn.Module())
        owner = getattr(owner, p)
    owner.add_module(leaf, module)


def _order_like(gm: nn.Module, root: nn.Module) -> None:
    """GraphModule copies submodules in order of first use; put them back in the order
    the spec declares them so state_dict keys and parameters() follow the spec."""
    for name in root._modules:
        if name in gm._modules:
            gm._modules[name] = gm._modules.pop(name)
            _order_like(gm._modules[name], root._modules[name])


def _class_name(name: str) -> str:
    return name if name.isidentifier() else "Compiled"
