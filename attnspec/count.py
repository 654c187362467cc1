"""Stage: IR → numbers. Learned parameters and FLOPs, read off the IR alone."""

from __future__ import annotations

from . import attend  # noqa: F401  (registers the formulation's operators)
from .ir import IR
from .ops import OPS


def parameters(ir: IR) -> dict[str, int]:
    """Learned parameters per layer, in declaration order."""
    return {path: OPS[decl.op].count(decl.attrs) for path, decl in ir.modules.items()}


def bindings_for(ir: IR, shape: tuple[int, ...]) -> dict[str, int]:
    """Run-time sizes of the free axes, from the first input's shape."""
    first = ir.node(ir.inputs[0]).type
    if len(shape) != len(first.axes):
        raise ValueError(f"the input is {first}: {len(first.axes)} axes, not {len(shape)}")
    sizes = {}
    for axis, size in zip(first.axes, shape):
        if axis.size is not None and axis.size != size:
            raise ValueError(f"axis {axis.name} must be {axis.size}, not {size}")
        sizes[axis.name] = size
    return sizes


def run_time_sizes(ir: IR, bindings: dict[str, int]) -> dict[str, dict[str, int]]:
    """Each node's run-time sizes of its free axes, from the input's `bindings`: pooling
    shrinks them, `upsample` restores them, pooled keys keep their own."""
    sizes = {}
    for node in ir.nodes():
        op = OPS.get(node.op)
        ins = [sizes[i] for i in node.inputs]
        attrs = _attrs(ir, node)
        sizes[node.name] = (op.sizes(ins, ir.node(node.inputs[0]).type, attrs)
                            if op is not None and op.sizes is not None and node.inputs
                            else ins[0] if ins else bindings)
        # the fixed sizes the node's type names (a learned tensor's K, a layer's width)
        # win over those carried from upstream under the same name
        fixed = {a.name: a.size for a in node.type.axes[1:] if a.size is not None}
        sizes[node.name] = {**sizes[node.name], **fixed}
    return sizes


def flops(ir: IR, bindings: dict[str, int]) -> int:
    """FLOPs of one forward pass as torch.utils.flop_counter counts them: 2 per
    multiply-add of a matmul or convolution; elementwise work is not counted. Of the IR as
    given: `passes.fuse(ir)` counts what the generated code computes (a criss-cross range
    as its row and column energies), `ir` the formulation as written."""
    total, sizes = 0, run_time_sizes(ir, bindings)
    for node in ir.nodes():
        op = OPS.get(node.op)
        if op is None or op.flops is None:
            continue
        types = [ir.node(i).type for i in node.inputs]
        # the first input's sizes, and what the node itself knows (a pooled key's sizes)
        known = {**sizes[node.name], **sizes[node.inputs[0]]} if node.inputs else bindings
        total += op.flops(types, node.type, _attrs(ir, node), known)
    return total


def _attrs(ir: IR, node) -> dict:
    """A node's attributes with its module's (a layer's width, kernel, ...)."""
    return {**node.attrs, **(ir.modules[node.module].attrs if node.module else {})}
