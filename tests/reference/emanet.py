"""EM attention unit (EMAU).

Paper: Li, Zhong, Wu, Yang, Lin, Liu, "Expectation-Maximization Attention Networks for
Semantic Segmentation", ICCV 2019, arXiv:1907.13426, §3.2 (Eq. 13-16).
Official code: XiaLiPKU/EMANet (network.py, class EMAU), followed here: a 1×1 conv (bias)
before the EM steps; bases μ a buffer [1, C, K]; T steps under torch.no_grad of
z = softmax over K of xᵀμ, z normalised over the positions (+1e-6), μ = x z, μ divided by
(1e-6 + its L2 norm over C); the reconstruction μ zᵀ uses the last step's z (computed from
the μ before the last update) and the last μ; ReLU, 1×1 conv without bias and BatchNorm,
the input added, ReLU. Returns (y, the last μ [B, C, K]) as their EMAU.forward does;
the running-average update of the buffer from that μ lives in the authors' training loop,
not in the unit, and is not here either. BatchNorm's momentum is 3e-4, their
settings.BN_MOM (torch's convention: running = (1 − m)·running + m·batch).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class _Bases(nn.Module):
    def __init__(self, C: int, K: int):
        super().__init__()
        mu = torch.randn(1, C, K) * math.sqrt(2.0 / K)
        self.register_buffer("mu", mu / (1e-6 + mu.norm(dim=1, keepdim=True)))


class EMANet(nn.Module):
    """x: [B, C, H, W] -> ([B, C, H, W], μ [B, C, K])."""

    def __init__(self, C: int, K: int = 64, T: int = 3):
        super().__init__()
        if T < 1 or K < 1:
            raise ValueError(f"EMANet: K and T must be >= 1, got K={K}, T={T}")
        self.T = T
        self.conv1 = nn.Conv2d(C, C, 1)
        self.bases = _Bases(C, K)  # after conv1: the compiled spec's order
        self.conv2 = nn.Sequential(nn.Conv2d(C, C, 1, bias=False),
                                   nn.BatchNorm2d(C, momentum=3e-4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        identity = x
        x = self.conv1(x)
        b, c, h, w = x.shape
        x = x.view(b, c, h * w)
        mu = self.bases.mu.repeat(b, 1, 1)  # [B, C, K]
        with torch.no_grad():
            for _ in range(self.T):
                z = torch.softmax(torch.bmm(x.transpose(1, 2), mu), dim=2)  # [B, N, K]
                z_ = z / (1e-6 + z.sum(dim=1, keepdim=True))
                mu = torch.bmm(x, z_)  # [B, C, K]
                mu = mu / (1e-6 + mu.norm(dim=1, keepdim=True))
        x = mu.matmul(z.transpose(1, 2)).view(b, c, h, w)
        x = self.conv2(F.relu(x))
        return F.relu(x + identity), mu
