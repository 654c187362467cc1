"""Test helpers: copy weights between two modules by position, and randomise a module.

A compiled spec and its hand-written reference name their parameters differently and may
store them in different shapes (a Linear weight [P, C] vs a 1x1 Conv2d weight [P, C, 1, 1]),
but both register the same tensors in the same order. So weights are matched by position
in state_dict(), and each pair must hold the same number of elements.
"""

import math

import torch
from torch import nn


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy every state_dict entry of `src` into the entry of `dst` at the same position.

    Pairs must agree in count and per-pair numel; each value is reshaped to the
    destination's shape. Raises AssertionError naming both keys on any mismatch.
    """
    src_sd, dst_sd = src.state_dict(), dst.state_dict()
    assert len(src_sd) == len(dst_sd), (
        f"state_dict sizes differ: {type(src).__name__} has {len(src_sd)} entries "
        f"{list(src_sd)}, {type(dst).__name__} has {len(dst_sd)} entries {list(dst_sd)}"
    )
    with torch.no_grad():
        for (sk, sv), (dk, dv) in zip(src_sd.items(), dst_sd.items()):
            assert sv.numel() == dv.numel(), (
                f"state_dict entries differ in size: src {sk!r} {tuple(sv.shape)} "
                f"({sv.numel()} elements) vs dst {dk!r} {tuple(dv.shape)} "
                f"({dv.numel()} elements)"
            )
            assert sv.is_floating_point() == dv.is_floating_point(), (
                f"state_dict entries differ in kind: src {sk!r} is {sv.dtype}, "
                f"dst {dk!r} is {dv.dtype}"
            )
            # state_dict() values share storage with the module's tensors, so an in-place
            # copy writes into dst itself.
            dv.copy_(sv.reshape(dv.shape))


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every floating parameter and buffer of `module` with seeded random values.

    Zero- or one-initialised weights (BN gamma, a zeroed last conv) would make an
    equivalence test pass trivially, so nothing keeps its initial value:
    - weights with >= 2 dims: randn / sqrt(fan_in), so activations stay O(1) and softmaxes
      do not saturate (a saturated softmax hides errors in its gradient);
    - other parameters (biases, norm scales and shifts): randn * 0.5;
    - running_var: rand + 0.5 (positive); running_mean and any other floating buffer: randn.
    Integer buffers (num_batches_tracked) are left alone. Returns the module.
    """
    gen = torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor, kind: str) -> torch.Tensor:
        shape = t.shape
        if kind == "rand":
            v = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5
        else:
            v = torch.randn(shape, generator=gen, dtype=torch.float64)
            if kind == "weight":
                fan_in = t.numel() // max(shape[0], 1)
                v = v / math.sqrt(max(fan_in, 1))
            elif kind == "small":
                v = v * 0.5
        return v.to(dtype=t.dtype, device=t.device)

    with torch.no_grad():
        for _, p in module.named_parameters():
            if p.is_floating_point():
                p.copy_(draw(p, "weight" if p.dim() >= 2 else "small"))
        for name, b in module.named_buffers():
            if b.is_floating_point():
                b.copy_(draw(b, "rand" if name.rsplit(".", 1)[-1] == "running_var" else "randn"))
    return module
