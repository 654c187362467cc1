"""Coordinate attention.

Paper: Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
arXiv:2103.02907 (§3.2, Fig. 2c).
Official code: houqb/CoordAttention, coordatt.py, `CoordAtt(inp, oup, reduction=32)`: pool_h
(AdaptiveAvgPool2d((None, 1))) and pool_w (AdaptiveAvgPool2d((1, None)), permuted to a
column), concatenated along dim 2, conv1 (1×1, inp -> mip = max(8, inp // reduction), with
bias), bn1, h_swish (x · relu6(x + 3) / 6), torch.split back into [h, w], conv_h and conv_w
(1×1, mip -> oup, with bias), sigmoids, out = identity · a_w · a_h. Here oup = inp = C (the
gates multiply the input).
"""

import torch
import torch.nn.functional as F
from torch import nn


class HSwish(nn.Module):
    """The authors' h_swish: x · h_sigmoid(x), h_sigmoid = relu6(x + 3) / 6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (F.relu6(x + 3) / 6)


class CoordAtt(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, C: int, reduction: int = 32):
        super().__init__()
        mip = max(8, C // reduction)
        self.conv1 = nn.Conv2d(C, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = HSwish()
        self.conv_h = nn.Conv2d(mip, C, kernel_size=1, stride=1, padding=0)
        self.conv_w = nn.Conv2d(mip, C, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x_h = F.adaptive_avg_pool2d(x, (None, 1))  # [B, C, H, 1]
        x_w = F.adaptive_avg_pool2d(x, (1, None)).permute(0, 1, 3, 2)  # [B, C, W, 1]
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        x_h, x_w = torch.split(y, [h, w], dim=2)
        a_h = self.conv_h(x_h).sigmoid()  # [B, C, H, 1]
        a_w = self.conv_w(x_w.permute(0, 1, 3, 2)).sigmoid()  # [B, C, 1, W]
        return x * a_w * a_h
