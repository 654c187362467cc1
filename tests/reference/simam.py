"""SimAM, a parameter-free attention module.

Paper: Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for
Convolutional Neural Networks", ICML 2021 (Eq. 5 and the paper's Figure 3 code).
Official code: ZjjConan/SimAM (simam_module): n = H·W − 1, e = (x − μ)² / (4 (Σ(x − μ)² / n +
λ)) + 0.5 per channel, y = x · sigmoid(e).
"""

import torch
from torch import nn


class SimAM(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, lam: float = 1e-4):
        super().__init__()
        self.lam = lam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d2 = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        e = d2 / (4 * (d2.sum(dim=(2, 3), keepdim=True) / n + self.lam)) + 0.5
        return x * torch.sigmoid(e)
