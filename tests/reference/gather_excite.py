"""Gather-Excite, the parameter-free operator GE-θ⁻, with the global extent or a local one.

Paper: Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in
Convolutional Neural Networks", NeurIPS 2018, arXiv:1810.12348 (§3): the gather ξ_G averages
each channel over its extent, here the whole map, giving a 1 × 1 map; the excite ξ_E
resizes it back to H × W by nearest-neighbour interpolation and gates the input:
y = x ⊙ σ(interp(ξ_G(x))). The authors' Caffe code (hujie-frank/GENet) ships only the
parametric GE-θ and GE-θ⁺ models (RN50-GEP, RN50-GEPP, RN50-GEPF prototxts), whose gather is
a global depthwise convolution; with no parameters that gather is the plain average.
This reference follows the paper's two steps literally (an average pooling whose window is
the map, then nearest-neighbour interpolation), not the compiled broadcast. For an extent
e >= 2 the gather averages (2e - 1) x (2e - 1) windows at stride e, the border windows cut
(padding e - 1, count_include_pad=False), as timm's GatherExcite.
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
