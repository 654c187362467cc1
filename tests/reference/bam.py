"""Bottleneck Attention Module: channel and spatial branches combined into one 3D gate.

Paper: Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018,
arXiv:1807.06514 (§3, Eq. 1-4): F' = F + F ⊗ M(F), M(F) = σ(M_c(F) + M_s(F)), r = 16, d = 4,
M_c(F) = BN(MLP(AvgPool(F))), M_s(F) = BN(f_3^{1×1}(f_2^{3×3}(f_1^{3×3}(f_0^{1×1}(F))))).
Official code: Jongchan/attention-module (MODELS/bam.py, MODELS/model_resnet.py).
- Channel gate: global average pool -> num_layers times (Linear -> BatchNorm1d -> ReLU),
  the first C -> C/r, the others C/r -> C/r -> Linear(C/r, C) (num_layers = 1, biases on).
- Spatial gate: 1x1 conv C -> C/r -> BatchNorm2d -> ReLU, then dilation_conv_num (2) 3x3
  convs C/r -> C/r with dilation 4 and padding 4 (the map keeps its size), each with
  BatchNorm2d and ReLU, then a 1x1 conv C/r -> 1 (all convs with biases).
- The official forward is `1 + sigmoid(channel_att * spatial_att)`: the branches are
  MULTIPLIED, where the paper adds them, and neither ends in the BatchNorm of the paper's
  Eqs. 3 and 4. fusion="add" (the default) follows the paper: a BatchNorm1d(C) on M_c and a
  BatchNorm2d(1) on M_s, then their sum; fusion="mul" the code. The layers inside each
  branch are the code's in both. Either way the result is x * (1 + gate), x + x * gate.
- Torch's default BatchNorm settings (eps 1e-5, momentum 0.1). ResidualNet's init zeroes a
  BN scale only when "SpatialGate" is in its key, which BAM's keys (spatial_att.gate_s...)
  never contain, so every BN scale starts at 1.
"""

import torch
from torch import nn


class BAM(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W], any H and W."""

    def __init__(self, C: int, r: int = 16, d: int = 4, fusion: str = "add",
                 num_layers: int = 1, dilation_conv_num: int = 2):
        super().__init__()
        hidden = C // r
        if hidden < 1:
            raise ValueError(f"BAM: C // r must be >= 1, got C={C}, r={r}")
        if fusion not in ("add", "mul"):
            raise ValueError(f"BAM: fusion must be 'add' or 'mul', got {fusion!r}")
        self.fusion = fusion
        # Registration order = state_dict order: channel branch, then spatial branch.
        widths = [C] + [hidden] * num_layers  # their gate_channels, less the last
        channel = []
        for a, b in zip(widths, widths[1:]):
            channel += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.channel = nn.Sequential(*channel, nn.Linear(hidden, C))
        if fusion == "add":  # the paper's BN closing each branch (Eqs. 3 and 4)
            self.channel_bn = nn.BatchNorm1d(C)
        layers = [nn.Conv2d(C, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU()]
        for _ in range(dilation_conv_num):
            layers += [nn.Conv2d(hidden, hidden, 3, padding=d, dilation=d),
                       nn.BatchNorm2d(hidden), nn.ReLU()]
        layers.append(nn.Conv2d(hidden, 1, 1))
        self.spatial = nn.Sequential(*layers)
        if fusion == "add":
            self.spatial_bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mc = self.channel(x.mean(dim=(2, 3)))  # [B, C]
        ms = self.spatial(x)  # [B, 1, H, W]
        if self.fusion == "add":
            mc, ms = self.channel_bn(mc), self.spatial_bn(ms)
        mc = mc[:, :, None, None]  # [B, C, 1, 1]
        gate = torch.sigmoid(mc + ms if self.fusion == "add" else mc * ms)  # [B, C, H, W]
        return x + x * gate
