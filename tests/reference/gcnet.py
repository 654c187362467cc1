"""Global context (GC) block.

Paper: Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks
and Beyond", ICCV Workshops 2019, arXiv:1904.11492 (Fig. 4(d)).
Official code: xvjiarui/GCNet (ContextBlock2d, mmdet/ops/.../context_block.py), later
upstreamed as mmcv's ContextBlock. Pooling 'att': conv_mask Conv2d(C, 1, 1) + softmax over
H*W pools one context vector; 'avg': the mean over the map (AdaptiveAvgPool2d(1)). Each
fusion has its transform Conv2d(C, P, 1) -> LayerNorm([P, 1, 1]) -> ReLU -> Conv2d(P, C, 1)
with P = int(C * ratio), the last conv zero-initialised: 'channel_mul' gates x by
sigmoid(T_mul(c)), then 'channel_add' adds T_add(c); fusion "both" uses the two.
"""

import torch
from torch import nn

POOLINGS = ("att", "avg")
FUSIONS = ("add", "mul", "both")


def _transform(C: int, P: int) -> nn.Sequential:
    t = nn.Sequential(
        nn.Conv2d(C, P, kernel_size=1),
        nn.LayerNorm([P, 1, 1]),  # normalises over the P bottleneck channels
        nn.ReLU(),
        nn.Conv2d(P, C, kernel_size=1),
    )
    nn.init.zeros_(t[-1].weight)  # official last_zero_init: 'add' starts as the identity,
    nn.init.zeros_(t[-1].bias)  # 'mul' at x * 0.5
    return t


class GCNet(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, C: int, ratio: float = 0.0625, pooling: str = "att",
                 fusion: str = "add"):
        super().__init__()
        if pooling not in POOLINGS or fusion not in FUSIONS:
            raise ValueError(f"GCNet: pooling must be one of {POOLINGS} and fusion one of "
                             f"{FUSIONS}, got {pooling!r}, {fusion!r}")
        P = int(C * ratio)  # as the official code: truncation, not rounding
        if P < 1:
            raise ValueError(f"GCNet: int(C * ratio) must be >= 1, got C={C}, ratio={ratio}")
        self.pooling, self.fusion = pooling, fusion
        if pooling == "att":  # E3: key content only
            self.conv_mask = nn.Conv2d(C, 1, kernel_size=1)
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        # registered in the official order: channel_add_conv, then channel_mul_conv
        self.channel_add_conv = _transform(C, P) if fusion != "mul" else None
        self.channel_mul_conv = _transform(C, P) if fusion != "add" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if self.pooling == "att":  # one map shared by every query: softmax over H*W
            a = self.conv_mask(x).view(B, 1, H * W).softmax(dim=-1)  # [B, 1, HW]
            context = (x.view(B, C, H * W) * a).sum(dim=-1).view(B, C, 1, 1)
        else:
            context = x.mean(dim=(2, 3), keepdim=True)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out
