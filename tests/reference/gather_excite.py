"""Gather-Excite, the parameter-free operator GE-θ⁻ with the global extent.

Paper: Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in
Convolutional Neural Networks", NeurIPS 2018, arXiv:1810.12348 (§3): the gather ξ_G averages
each channel over its extent, here the whole map, giving a 1 × 1 map; the excite ξ_E
resizes it back to H × W by nearest-neighbour interpolation and gates the input:
y = x ⊙ σ(interp(ξ_G(x))). The authors' Caffe code (hujie-frank/GENet) ships only the
parametric GE-θ and GE-θ⁺ models (RN50-GEP, RN50-GEPP, RN50-GEPF prototxts), whose gather is
a global depthwise convolution; with no parameters that gather is the plain average.
This reference follows the paper's two steps literally (an average pooling whose window is
the map, then nearest-neighbour interpolation), not the compiled broadcast.
"""

import torch
import torch.nn.functional as F
from torch import nn


class GatherExcite(nn.Module):
    """y = x * sigmoid(nearest_upsample(avg_pool_{H×W}(x))), x: [B, C, H, W]; no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gathered = F.avg_pool2d(x, kernel_size=x.shape[2:])  # ξ_G: [B, C, 1, 1]
        excited = F.interpolate(gathered, size=x.shape[2:], mode="nearest")  # ξ_E: [B, C, H, W]
        return x * torch.sigmoid(excited)
