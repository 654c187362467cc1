"""Double attention block (A²-Net).

Paper: Chen, Kalantidis, Li, Yan, Feng, "A^2-Nets: Double Attention Networks", NeurIPS 2018,
arXiv:1810.11579, §3 (Eq. 4-6, Fig. 2). No official code was released; written from the
paper: A = φ(X), B = θ(X), V = ρ(X) are 1×1 convolutions (with biases) to c_m, c_n, c_n
channels; gather G = A · softmax(B)ᵀ, each of the c_n maps normalised over the positions;
distribute Z_i = G · softmax(V_i), each position's vector normalised over the c_n
descriptors (not over the positions, as some copies do, nor with no dim at all, which
normalises over the batch); a 1×1 convolution back to C channels, added to the input.
"""

import torch
from torch import nn


class A2(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, C: int, cm: int | None = None, cn: int | None = None):
        super().__init__()
        cm = C // 4 if cm is None else cm
        cn = C // 4 if cn is None else cn
        if cm < 1 or cn < 1:
            raise ValueError(f"A2: c_m and c_n must be >= 1, got {cm}, {cn}")
        self.convA = nn.Conv2d(C, cm, 1)
        self.convB = nn.Conv2d(C, cn, 1)
        self.convV = nn.Conv2d(C, cn, 1)
        self.reconstruct = nn.Conv2d(cm, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        a = self.convA(x).flatten(2)  # [B, c_m, N]
        maps = self.convB(x).flatten(2).softmax(dim=-1)  # [B, c_n, N]: over the positions
        vectors = self.convV(x).flatten(2).softmax(dim=1)  # [B, c_n, N]: over c_n
        g = a @ maps.transpose(1, 2)  # [B, c_m, c_n]: the gathered descriptors
        z = (g @ vectors).view(b, -1, h, w)  # [B, c_m, H, W]: distributed
        return x + self.reconstruct(z)
