"""Test helper: the FLOPs the IR counts against what torch's FlopCounterMode sees."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from attnspec import count
from attnspec.lower import lower


def flops_both_ways(ir, x: torch.Tensor) -> tuple[int, int]:
    """(count.flops of the IR, torch's count running it unfused on x): torch's counter
    does not see inside CPU SDPA, so the module runs without fused kernels."""
    unfused = lower(ir, fused_kernels=False).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unfused(x)
    bindings = count.bindings_for(ir, tuple(x.shape))
    # E3's pooling is a weighted sum lowered as a product and a sum (faster on CPUs than a
    # one-column matmul), which torch's counter does not see; the IR counts it
    sizes = count.run_time_sizes(ir, bindings)  # pooled keys have their own
    pooled = sum(2 * ir.node(n.inputs[0]).type.numel(sizes[n.inputs[0]]) * n.attrs["v_width"]
                 // n.attrs["heads"] for n in ir.nodes()
                 if n.op == "aggregate" and n.attrs["weight_axes"] == ("B", "M", "K"))
    return count.flops(ir, bindings), counter.get_total_flops() + pooled
