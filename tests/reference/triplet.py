"""Triplet attention.

Paper: Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet
Attention Module", WACV 2021, arXiv:2010.03045.
Official code: landskape-ai/triplet-attention (MODELS/triplet_attention.py): three
SpatialGates (Z-pool = cat(max over dim 1, mean over dim 1); BasicConv(2, 1, 7, padding 3,
bias False) with BatchNorm2d(eps 1e-5, momentum 0.01); sigmoid; times the input), applied to
x.permute(0, 2, 1, 3), to x.permute(0, 3, 2, 1) and to x, permuted back and averaged.
"""

import torch
from torch import nn


class _Gate(nn.Module):
    def __init__(self, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=(kernel - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x.max(dim=1, keepdim=True)[0], x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(z)))


class TripletAttention(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, kernel: int = 7, spatial: bool = True):
        super().__init__()
        self.gate_h = _Gate(kernel)  # the authors' ChannelGateH: the C-W pair
        self.gate_w = _Gate(kernel)  # ChannelGateW: the H-C pair
        self.gate_s = _Gate(kernel) if spatial else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.gate_h(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        b = self.gate_w(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
        if self.gate_s is None:
            return (a + b) / 2
        return (a + b + self.gate_s(x)) / 3
