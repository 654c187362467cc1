"""Skip-Squeeze-Excitation (SSE), the attention branch of ParNet's RepVGG-SSE block.

Paper: Goyal, Bochkovskiy, Deng, Koltun, "Non-deep Networks", NeurIPS 2022,
arXiv:2110.07641 (§3, Figure 2b).
Official code: imankgoyal/NonDeepNetworks, imagenet/timm/models/simplenet_impl/repvgg.py
(`RepVGGBlock`) and utils.py (`SE1`, `ConvSig`). With in_channels == out_channels and stride
1 the block keeps `rbr_identity = BatchNorm2d(C)` and an `SE1(C, C, g=groups, ver=1)`; its
forward computes `id_out = bn(x)` and then `id_out * se(id_out)`, where `se` is
AdaptiveAvgPool2d(1) → Conv2d(C, C, 1, bias=False) → Sigmoid. That gated skip is then
summed with the 1×1 and 3×3 conv-BN branches and passed through the activation; only the
SSE branch is reproduced here. ParNet's streams use groups = 1, so the conv is dense.
"""

import torch
from torch import nn


class SSE(nn.Module):
    """y = u * sigmoid(conv(avgpool(u))), u = BN(x); x: [B, C, H, W]."""

    def __init__(self, C: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(C)  # the block's rbr_identity
        self.conv = nn.Conv2d(C, C, kernel_size=1, bias=False)  # SE1's ConvSig conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.bn(x)
        gate = torch.sigmoid(self.conv(u.mean(dim=(2, 3), keepdim=True)))  # [B, C, 1, 1]
        return u * gate
