"""Shuffle Attention (SA-Net).

Paper: Zhang, Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
ICASSP 2021, arXiv:2102.00240 (§3).
Official code: wofmanaf/SA-Net (models/sa_resnet.py, sa_layer): groups = 64 by default;
cweight and sweight start at 0, cbias and sbias at 1, each of shape [1, C/(2G), 1, 1];
nn.GroupNorm(C/(2G), C/(2G)); x viewed as [B·G, C/G, H, W] and chunked into two halves;
the channel half gated by σ(cweight · avgpool(x0) + cbias), the spatial half by
σ(sweight · gn(x1) + sbias); the halves concatenated, viewed back as [B, C, H, W] and
channel-shuffled with 2 groups. The compiled spec creates the GroupNorm between the two
affine pairs; a module's own parameters come before its submodules' in state_dict(), so
the GroupNorm's scale and shift are held here as parameters (F.group_norm) to keep that
order.
"""

import torch
from torch import nn
from torch.nn import functional as F


class ShuffleAttention(nn.Module):
    """x: [B, C, H, W] in G groups, each split into a channel-gated and a spatially gated
    half; the result channel-shuffled across two groups."""

    def __init__(self, C: int, G: int = 64):
        super().__init__()
        if C % (2 * G):
            raise ValueError(f"ShuffleAttention: 2G={2 * G} must divide C={C}")
        self.groups = G
        c = C // (2 * G)
        self.cweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, c, 1, 1))
        self.gn_weight = nn.Parameter(torch.ones(c))  # nn.GroupNorm(c, c)'s affine
        self.gn_bias = nn.Parameter(torch.zeros(c))
        self.sweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, c, 1, 1))

    def gn(self, x: torch.Tensor) -> torch.Tensor:
        """nn.GroupNorm(c, c): each channel normalised over its map (eps 1e-5)."""
        return F.group_norm(x, self.gn_weight.numel(), self.gn_weight, self.gn_bias, 1e-5)

    @staticmethod
    def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, groups, c // groups, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b * self.groups, c // self.groups, h, w)
        x0, x1 = x.chunk(2, dim=1)
        xn = x0 * torch.sigmoid(self.cweight * x0.mean(dim=(2, 3), keepdim=True) + self.cbias)
        xs = x1 * torch.sigmoid(self.sweight * self.gn(x1) + self.sbias)
        out = torch.cat([xn, xs], dim=1).reshape(b, c, h, w)
        return self.channel_shuffle(out, 2)
