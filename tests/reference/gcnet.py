"""Global context (GC) block.

Paper: Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks
and Beyond", ICCV Workshops 2019, arXiv:1904.11492 (Fig. 4(d)).
Official code: xvjiarui/GCNet (ContextBlock2d, mmdet/ops/.../context_block.py), later
upstreamed as mmcv's ContextBlock with pooling 'att': conv_mask Conv2d(C, 1, 1) + softmax
over H*W pools one context vector; transform = Conv2d(C, P, 1) -> LayerNorm([P, 1, 1]) ->
ReLU -> Conv2d(P, C, 1) with P = int(C * ratio), the last conv zero-initialised; fusion
'channel_add' (x + T(c)) or 'channel_mul' (x * sigmoid(T(c))).
"""

import torch
from torch import nn

FUSIONS = ("add", "mul")


class GCNet(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, C: int, ratio: float = 0.0625, fusion: str = "add"):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"GCNet: fusion must be one of {FUSIONS}, got {fusion!r}")
        P = int(C * ratio)  # as the official code: truncation, not rounding
        if P < 1:
            raise ValueError(f"GCNet: int(C * ratio) must be >= 1, got C={C}, ratio={ratio}")
        self.fusion = fusion
        self.conv_mask = nn.Conv2d(C, 1, kernel_size=1)  # E3: key content only
        self.transform = nn.Sequential(
            nn.Conv2d(C, P, kernel_size=1),
            nn.LayerNorm([P, 1, 1]),  # normalises over the P bottleneck channels
            nn.ReLU(),
            nn.Conv2d(P, C, kernel_size=1),
        )
        # Official init: kaiming (fan_in) mask conv, zero last conv (so 'add' starts as
        # the identity; 'mul' starts at x * 0.5).
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        # One attention map shared by every query: softmax over the H*W positions.
        a = self.conv_mask(x).view(B, 1, H * W).softmax(dim=-1)  # [B, 1, HW]
        context = (x.view(B, C, H * W) * a).sum(dim=-1).view(B, C, 1, 1)
        t = self.transform(context)  # [B, C, 1, 1]
        if self.fusion == "add":
            return x + t
        return x * torch.sigmoid(t)
