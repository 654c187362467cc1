"""Convolution as attention: the reference is the convolution itself.

Paper: Zhu, Cheng, Zhang, Lin, Dai, "An Empirical Study of Spatial Attention Mechanisms in
Deep Networks", ICCV 2019, arXiv:1904.05873 (§3: a k×k convolution is the generalized
formulation with one head per kernel offset, E4 only, on a window).
The spec must equal F.conv2d(x, W, padding=k // 2) with no bias. Its parameter is the heads'
value maps W'_m stacked, head m belonging to the joint offset m = (Δy + R)(2R + 1) + (Δx + R)
of Δ = q − k, from −R to R row-major; so this module stores its kernel in that order,
[k, k, out, C] indexed by (R − i, R − j) for kernel position (i, j), and flips it back into
torch's [out, C, k, k] for the convolution.
"""

import torch
import torch.nn.functional as F
from torch import nn


class ConvAsAttention(nn.Module):
    """x: [B, C, H, W] -> [B, out, H, W]."""

    def __init__(self, C: int, out: int | None = None, kernel: int = 3):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"ConvAsAttention: the kernel must be odd, got {kernel}")
        out = C if out is None else out
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(kernel, kernel, out, C))  # by offset q − k
        nn.init.normal_(self.weight, std=C ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # offset (a, b) of q − k is kernel position (2R − a, 2R − b): flip, then [out, C, k, k]
        w = self.weight.flip(0, 1).permute(2, 3, 0, 1)
        return F.conv2d(x, w, padding=self.kernel // 2)
