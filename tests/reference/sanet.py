"""Squeeze-and-attention (SA) module of SANet.

Paper: Zhong, Lin, Bidart, Hu, Ben Daya, Li, Zheng, Li, Wong, "Squeeze-and-Attention Networks for
Semantic Segmentation", CVPR 2020, arXiv:1909.03402 (§3.3, Fig. 2d): a main convolution
branch X_res = F(X_in); an attention branch X_attn = Up(σ(F_attn(APool(X_in)))); and
X_out = X_attn · X_res + X_attn. No official code was released; the layer choices follow
the widely copied PyTorch SqueezeAttentionBlock (its-mayank/SqueezeAttention-PyTorch and
its copies that add the sigmoid): each branch is two 3×3 convolutions (with bias), each
followed by BatchNorm and ReLU; the pooling is 2×2 with stride 2 and the upsampling
nearest-neighbour. That code upsamples by a factor 2, which only fits even sizes; here the
attention map is resized to the input's size (the same thing for even sizes).
"""

import torch
import torch.nn.functional as F
from torch import nn


def _branch(C: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(C, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(),
                         nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU())


class SqueezeAttention(nn.Module):
    """x: [B, C, H, W] → [B, out, H, W]."""

    def __init__(self, C: int, out: int | None = None, pool: int = 2, mode: str = "nearest"):
        super().__init__()
        out = C if out is None else out
        self.pool, self.mode = pool, mode
        self.attend = _branch(C, out)  # F_attn, declared first as in the spec
        self.main = _branch(C, out)  # F

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_res = self.main(x)
        a = torch.sigmoid(self.attend(F.avg_pool2d(x, self.pool, self.pool)))
        if self.mode == "nearest":
            x_attn = F.interpolate(a, size=x.shape[2:], mode="nearest")
        else:
            x_attn = F.interpolate(a, size=x.shape[2:], mode="bilinear", align_corners=False)
        return x_attn * x_res + x_attn
