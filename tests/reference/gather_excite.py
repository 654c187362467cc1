"""Gather-Excite: the parameter-free GE-θ⁻ (global or local extent) and the authors'
parametric GE-θ and GE-θ⁺ with the global extent.

Paper: Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in
Convolutional Neural Networks", NeurIPS 2018, arXiv:1810.12348 (§3): the gather ξ_G collects
each channel over its extent; the excite ξ_E resizes the result back to H × W and gates the
input: y = x ⊙ σ(interp(ξ_G(x))). The authors' Caffe models (hujie-frank/GENet) ship the
three operators with the global extent: RN50-GEPF (GE-θ⁻: a global average pooling, Sigmoid,
Axpy), RN50-GEP (GE-θ: a DepthwiseConvolution whose kernel is the map, no bias, then
CuDNNBatchNorm and Sigmoid) and RN50-GEPP (GE-θ⁺: that gather, BatchNorm, ReLU, a 1×1
convolution down to C/16 with bias, ReLU, a 1×1 convolution back up with bias, Sigmoid).
GE-θ⁻ follows the paper's two steps literally (an average pooling whose window is the map,
then nearest-neighbour interpolation), not the compiled broadcast. For an extent e >= 2 the
gather averages (2e - 1) x (2e - 1) windows at stride e, the border windows cut (padding
e - 1, count_include_pad=False), as timm's GatherExcite (the authors ship no local-extent
model).
"""

import torch
import torch.nn.functional as F
from torch import nn


class GatherExcite(nn.Module):
    """y = x * sigmoid(nearest_upsample(avg_pool(x))), x: [B, C, H, W]; no parameters."""

    def __init__(self, extent: int = 0):
        super().__init__()
        if extent == 1 or extent < 0:
            raise ValueError(f"GatherExcite: extent must be 0 (global) or >= 2, got {extent}")
        self.extent = extent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.extent
        if e == 0:
            gathered = F.avg_pool2d(x, kernel_size=x.shape[2:])  # ξ_G: [B, C, 1, 1]
        else:
            gathered = F.avg_pool2d(x, 2 * e - 1, stride=e, padding=e - 1,
                                    count_include_pad=False)
        excited = F.interpolate(gathered, size=x.shape[2:], mode="nearest")  # ξ_E: [B, C, H, W]
        return x * torch.sigmoid(excited)


class GatherExciteTheta(nn.Module):
    """GE-θ (RN50-GEP): y = x * sigmoid(BN(depthwise_conv_{H x W}(x))), no bias."""

    def __init__(self, C: int, H: int, W: int):
        super().__init__()
        self.gather = nn.Conv2d(C, C, kernel_size=(H, W), groups=C, bias=False)
        self.gather_bn = nn.BatchNorm2d(C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gather_bn(self.gather(x)))


class GatherExciteThetaPlus(nn.Module):
    """GE-θ⁺ (RN50-GEPP): the gather, BN, ReLU, then 1x1 down (bias), ReLU, 1x1 up (bias)."""

    def __init__(self, C: int, H: int, W: int, r: int = 16):
        super().__init__()
        self.gather = nn.Conv2d(C, C, kernel_size=(H, W), groups=C, bias=False)
        self.gather_bn = nn.BatchNorm2d(C)
        self.excite_down = nn.Conv2d(C, C // r, 1)
        self.excite_up = nn.Conv2d(C // r, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.relu(self.gather_bn(self.gather(x)))
        return x * torch.sigmoid(self.excite_up(F.relu(self.excite_down(g))))
