"""Polarized self-attention (PSA).

Paper: Liu, Liu, Fan, Huang, "Polarized Self-Attention: Towards High-quality Pixel-wise
Regression", preprint 2021, arXiv:2107.00782 (eqs. 2-5, Fig. 2).
Official code: DeLightCMU/PSA, semantic-segmentation/network/PSA.py, classes PSA_p
(parallel) and PSA_s (sequential), used as PSA_s(planes, planes) in network/hrnetv2.py.

The paper:
- channel-only branch A^ch = sigmoid(LN(W_z(W_v x · softmax_HW(W_q x)))), W_q a 1x1 conv
  C -> 1, W_v C -> C/2, W_z C/2 -> C, LayerNorm before the sigmoid; Z^ch = A^ch (.) x;
- spatial-only branch A^sp = sigmoid(softmax_C(GAP(W_q x)) · W_v x), W_q and W_v 1x1 convs
  C -> C/2, the softmax over the C/2 channels of the pooled query; Z^sp = A^sp (.) x;
- parallel: Z^ch + Z^sp; sequential: Z^sp(Z^ch(x)).

The authors' code, followed here, differs:
- every W_q and W_v is bias-free, and kaiming_normal_(fan_in, relu) initialised;
- PSA_p's W_z (conv_up) is one bias-free 1x1 conv C/2 -> C with NO LayerNorm;
- PSA_s's W_z is a bottleneck with biases: conv C/2 -> C/2//4, LayerNorm([C/2//4, 1, 1]),
  ReLU, conv -> C (torch's default init, not zero);
- spatial-only branch, PSA_p: no softmax on the pooled query; the softmax is over the H*W
  positions of the logits q̄ · W_v x, and the sigmoid is applied to that softmax;
- spatial-only branch, PSA_s: no softmax on the pooled query; the softmax is over the H*W
  positions of W_v x, per channel, before the dot product with q̄.
The constructors' `inplanes`/`planes` must be equal (x is multiplied by a planes-wide gate)
and are one argument C here; kernel_size is unused by the authors, and stride must be 1
(otherwise the gates do not match x), so both are left out.

specs/polarized.attn writes the two branches as `PolarizedChannel` and `PolarizedSpatial`
(a softmax over the H·W positions of a tensor: `softmax(t, over = H W)`) and the whole
module as the block `Polarized`.
"""

import torch
from torch import nn

LAYOUTS = ("parallel", "sequential")


def _kaiming(conv: nn.Conv2d) -> None:
    """The authors' kaiming_init(module, mode='fan_in'): normal, relu gain, zero bias."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _check(name: str, C: int, layout: str) -> int:
    if layout not in LAYOUTS:
        raise ValueError(f"{name}: layout must be one of {LAYOUTS}, got {layout!r}")
    inter = C // 2
    if inter < 1 or (layout == "sequential" and inter // 4 < 1):
        raise ValueError(f"{name}: C = {C} is too small for the {layout} layout")
    return inter


class PolarizedChannel(nn.Module):
    """Channel-only branch, x: [B, C, H, W] -> x * A^ch(x), A^ch: [B, C, 1, 1]."""

    def __init__(self, C: int, layout: str = "parallel"):
        super().__init__()
        inter = _check("PolarizedChannel", C, layout)
        self.conv_q_right = nn.Conv2d(C, 1, kernel_size=1, bias=False)  # W_q
        self.conv_v_right = nn.Conv2d(C, inter, kernel_size=1, bias=False)  # W_v
        if layout == "parallel":  # PSA_p: one conv, no LayerNorm
            self.conv_up = nn.Conv2d(inter, C, kernel_size=1, bias=False)
        else:  # PSA_s: a bottleneck of inter // 4 with LayerNorm and ReLU
            hidden = inter // 4
            self.conv_up = nn.Sequential(
                nn.Conv2d(inter, hidden, kernel_size=1),
                nn.LayerNorm([hidden, 1, 1]),
                nn.ReLU(),
                nn.Conv2d(hidden, C, kernel_size=1),
            )
        _kaiming(self.conv_q_right)
        _kaiming(self.conv_v_right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.conv_v_right(x).flatten(2)  # [B, C/2, HW]
        a = torch.softmax(self.conv_q_right(x).flatten(2), dim=-1)  # [B, 1, HW]
        context = torch.bmm(v, a.transpose(1, 2)).unsqueeze(-1)  # [B, C/2, 1, 1]
        return x * torch.sigmoid(self.conv_up(context))  # gate: [B, C, 1, 1]


class PolarizedSpatial(nn.Module):
    """Spatial-only branch, x: [B, C, H, W] -> x * A^sp(x), A^sp: [B, 1, H, W]."""

    def __init__(self, C: int, layout: str = "parallel"):
        super().__init__()
        inter = _check("PolarizedSpatial", C, layout)
        self.layout = layout
        self.conv_q_left = nn.Conv2d(C, inter, kernel_size=1, bias=False)  # W_q
        self.conv_v_left = nn.Conv2d(C, inter, kernel_size=1, bias=False)  # W_v
        _kaiming(self.conv_q_left)
        _kaiming(self.conv_v_left)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        q = self.conv_q_left(x).mean(dim=(2, 3)).unsqueeze(1)  # global pooling: [B, 1, C/2]
        v = self.conv_v_left(x).flatten(2)  # [B, C/2, HW]
        if self.layout == "sequential":  # PSA_s: each channel of W_v x over the positions
            v = torch.softmax(v, dim=-1)
        logits = torch.bmm(q, v)  # [B, 1, HW]
        if self.layout == "parallel":  # PSA_p: the product over the positions
            logits = torch.softmax(logits, dim=-1)
        return x * torch.sigmoid(logits.view(B, 1, H, W))


class Polarized(nn.Module):
    """The whole PSA module, x: [B, C, H, W] -> [B, C, H, W]: the channel-only branch and
    the spatial-only branch summed (parallel, PSA_p) or chained (sequential, PSA_s)."""

    def __init__(self, C: int, layout: str = "parallel"):
        super().__init__()
        self.layout = layout
        self.channel = PolarizedChannel(C, layout)
        self.spatial = PolarizedSpatial(C, layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "parallel":
            return self.channel(x) + self.spatial(x)
        return self.spatial(self.channel(x))
