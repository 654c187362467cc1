"""Convolution as attention: the reference is the convolution itself.

Paper: Zhu, Cheng, Zhang, Lin, Dai, "An Empirical Study of Spatial Attention Mechanisms in
Deep Networks", ICCV 2019, arXiv:1904.05873 (§3: a k×k convolution is the generalized
formulation with one head per kernel offset, E4 only, on a window).
The spec must equal F.conv2d(x, W, padding=k // 2) with no bias. Its parameter is the heads'
value maps W'_m stacked, head m belonging to the offset k − q of the key from the query,
row-major from −R to R: kernel position m. So this module stores its kernel as [k, k, out, C]
and moves the axes into torch's [out, C, k, k] for the convolution.
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
        self.weight = nn.Parameter(torch.empty(kernel, kernel, out, C))  # per kernel position
        nn.init.normal_(self.weight, std=C ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.permute(2, 3, 0, 1)  # [out, C, k, k]
        return F.conv2d(x, w, padding=self.kernel // 2)
