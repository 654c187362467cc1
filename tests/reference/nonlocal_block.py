"""Non-local block (2-D, no subsampling).

Paper: Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018, arXiv:1711.07971
(§3.2 instantiations, §3.3 block, §4.1 zero-initialised BN).
Official code: facebookresearch/video-nonlocal-net (lib/models/nonlocal_helper.py, Caffe2):
1x1 convs theta, phi, g with biases, affinity theta^T phi over all positions, softmax over
keys (or division by the number of keys for dot product, a constant), y = g p^T, 1x1 conv W
back to C channels, BatchNorm whose scale starts at 0, residual sum.
This reference follows the paper's equations, which the spec states. The official code also
(by its default config) scales the affinity by 1/sqrt(inner) before the softmax and
max-pools phi and g 2x2; neither is part of the spec, so neither is done here.
"""

import torch
from torch import nn

VARIANTS = ("embedded_gaussian", "dot_product", "gaussian")


class NonLocal(nn.Module):
    """z = x + BN(W(y)),  y_i = sum_j f(x_i, x_j) g(x_j) / C(x);  x: [B, C, H, W]."""

    def __init__(self, C: int, variant: str = "embedded_gaussian", reduction: int = 2,
                 bn: bool = True):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"NonLocal: variant must be one of {VARIANTS}, got {variant!r}")
        inner = C // reduction
        if inner < 1:
            raise ValueError(f"NonLocal: C // reduction must be >= 1, got C={C}, "
                             f"reduction={reduction}")
        self.variant, self.inner = variant, inner
        # Registration order = state_dict order: theta, phi, g, W, bn.
        if variant != "gaussian":  # gaussian uses x itself as query and key: no params
            self.theta = nn.Conv2d(C, inner, kernel_size=1)
            self.phi = nn.Conv2d(C, inner, kernel_size=1)
        self.g = nn.Conv2d(C, inner, kernel_size=1)
        self.W = nn.Conv2d(inner, C, kernel_size=1)
        self.bn = nn.BatchNorm2d(C) if bn else None
        # §4.1: the block starts as the identity. With BN, its scale is zero (official
        # BN_INIT_GAMMA = 0); without BN, W itself is zero.
        if bn:
            nn.init.zeros_(self.bn.weight)
        else:
            nn.init.zeros_(self.W.weight)
            nn.init.zeros_(self.W.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        N = H * W
        if self.variant == "gaussian":
            q = k = x.flatten(2)  # [B, C, N]
        else:
            q, k = self.theta(x).flatten(2), self.phi(x).flatten(2)  # [B, inner, N]
        f = q.transpose(1, 2) @ k  # [B, N_query, N_key], f_ij = q_i . k_j
        if self.variant == "dot_product":
            a = f / N  # C(x) = N, the number of keys (a constant, not a sum of f)
        else:
            a = f.softmax(dim=-1)  # exp(f_ij) / sum_j exp(f_ij)
        g = self.g(x).flatten(2)  # [B, inner, N]
        y = (g @ a.transpose(1, 2)).view(B, self.inner, H, W)  # y_i = sum_j a_ij g_j
        z = self.W(y)
        if self.bn is not None:
            z = self.bn(z)
        return x + z
