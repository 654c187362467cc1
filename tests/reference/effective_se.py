"""Effective Squeeze-and-Excitation (eSE), VoVNetV2's channel attention.

Paper: Lee, Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation", CVPR 2020,
arXiv:1911.06667.
Official code: youngwanLEE/CenterMask (maskrcnn_benchmark/modeling/backbone/vovnet.py) and
youngwanLEE/vovnet-detectron2 (vovnet/vovnet.py), `eSEModule`: AdaptiveAvgPool2d(1), one
Conv2d(channel, channel, kernel_size=1, padding=0) with bias, then `Hsigmoid`,
F.relu6(x + 3., inplace=True) / 6. (torch's F.hardsigmoid), and `input * x`. The module
also takes `reduction=4`, which it never uses; it is left out here.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Hsigmoid(nn.Module):
    """relu6(x + 3) / 6, as in the authors' code."""

    def __init__(self, inplace: bool = True):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0, inplace=self.inplace) / 6.0


class EffectiveSE(nn.Module):
    """y = x * hsigmoid(fc(avgpool(x))), x: [B, C, H, W], fc a 1x1 conv C -> C."""

    def __init__(self, C: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(C, C, kernel_size=1, padding=0)  # [C, C, 1, 1] weight, bias
        self.hsigmoid = Hsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.hsigmoid(self.fc(self.avg_pool(x)))  # [B, C, 1, 1]
        return x * s
