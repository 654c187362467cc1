"""Efficient Channel Attention.

Paper: Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep
Convolutional Neural Networks", CVPR 2020, arXiv:1910.03151.
Official code: BangguWu/ECANet (models/eca_module.py): global average pool, a Conv1d(1, 1, k,
padding (k-1)//2, bias=False) sliding across the channel axis, sigmoid, rescale.
The kernel size rule k = psi(C) (paper §3.3, Eq. 12) is from the paper; the official repo
passes k by hand (its released ResNet-50 uses k = 3, 5, 5, 7 per stage).
shared=False is ECA-NS, the paper's non-shared ablation, as models/eca_ns.py: the pooled
channels unfolded into each channel's k neighbours (zero-padded), then a
Conv1d(C, C, k, groups=C, bias=False) over them: channel c's own k weights.
"""

import math

import torch
from torch import nn


def adaptive_kernel_size(C: int, gamma: int = 2, b: int = 1) -> int:
    """k = |log2(C)/gamma + b/gamma|: its integer part t, plus one if t is even."""
    t = int(abs((math.log2(C) + b) / gamma))
    return t if t % 2 == 1 else t + 1


class ECA(nn.Module):
    """y = x * sigmoid(conv1d_over_C(mean_HW(x))), x: [B, C, H, W]."""

    def __init__(self, C: int, gamma: int = 2, b: int = 1, adaptive: bool = True,
                 kernel: int = 3, shared: bool = True):
        super().__init__()
        k = adaptive_kernel_size(C, gamma, b) if adaptive else kernel
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECA: kernel size must be a positive odd integer, got {k}")
        self.k, self.shared = k, shared
        # No bias: the paper's module has exactly k parameters (k·C for ECA-NS).
        if shared:
            self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)
        else:
            self.conv = nn.Conv1d(C, C, kernel_size=k, groups=C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(2, 3))  # [B, C]
        if not self.shared:  # eca_ns.py: unfold each channel's neighbours, [B, C, k]
            near = nn.functional.unfold(z[:, None, None, :], kernel_size=(1, self.k),
                                        padding=(0, (self.k - 1) // 2))  # [B, k, C]
            w = torch.sigmoid(self.conv(near.transpose(1, 2)))[:, :, 0]  # [B, C]
            return x * w[:, :, None, None]
        # The channel axis is the 1-D "length" the kernel slides along (zero-padded ends).
        w = torch.sigmoid(self.conv(z[:, None, :]))[:, 0]  # [B, C]
        return x * w[:, :, None, None]
