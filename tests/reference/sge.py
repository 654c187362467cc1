"""Spatial Group-wise Enhance.

Paper: Li, Hu, Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning in
Convolutional Networks", 2019, arXiv:1905.09646 (§3, Eq. 1–5).
Official code: implus/PytorchInsight (classification/models/imagenet/resnet_sge.py,
SpatialGroupEnhance): the per-group scale starts at 0 and the shift at 1, the standard
deviation is unbiased (torch's default) with 1e-5 added to it.
"""

import torch
from torch import nn


class SGE(nn.Module):
    """x: [B, C, H, W] in G groups; each position gated by its standardised similarity to
    its group's mean feature."""

    def __init__(self, C: int, G: int = 64):
        super().__init__()
        if C % G:
            raise ValueError(f"SGE: G={G} must divide C={C}")
        self.groups = G
        self.weight = nn.Parameter(torch.zeros(1, G, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, G, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.view(b * self.groups, -1, h, w)
        similarity = (x * x.mean(dim=(2, 3), keepdim=True)).sum(dim=1, keepdim=True)
        t = similarity.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        t = t / (t.std(dim=1, keepdim=True) + 1e-5)
        t = t.view(b, self.groups, h, w) * self.weight + self.bias
        x = x * torch.sigmoid(t.view(b * self.groups, 1, h, w))
        return x.view(b, c, h, w)
