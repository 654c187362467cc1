"""Non-local block (2-D).

Paper: Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018, arXiv:1711.07971
(§3.2 instantiations, §3.3 block, §4.1 zero-initialised BN).
Official code: facebookresearch/video-nonlocal-net (lib/models/nonlocal_helper.py, Caffe2):
1x1 convs theta, phi, g with biases, affinity theta^T phi over all positions, softmax over
keys (or division by the number of keys for dot product, a constant), y = g p^T, 1x1 conv W
back to C channels, BatchNorm whose scale starts at 0, residual sum.
Concatenation (§3.2): f_ij = ReLU(w_f^T [theta(x_i), phi(x_j)]), C(x) = N, w_f a bias-free
1x1 conv of the concatenation to one channel (as AlexHex7's widely used PyTorch port; the
official release has no concatenation model). w_f^T [a, b] = w_theta^T a + w_phi^T b, so
w_f is held as its two halves, each after its own branch (the compiled spec's order).
This reference follows the paper's equations. The official code's default config also
scales the affinity by 1/sqrt(inner) before the softmax (`scale`) and subsamples the keys and
values (`subsample`, the paper's §3.3: y_i = sum_j f(x_i, x^_j) g(x^_j) / C(x^), x^ a
subsampled x): it max-pools x 2x2 (spacetime_nonlocal's MaxPool, kernel [1, 2, 2]) before
phi and g; both are options here, off by default. `bias` is its NO_BIAS flag inverted
(biases on theta, phi, g and W; w_f never has one).
"""

import torch
from torch import nn

VARIANTS = ("embedded_gaussian", "dot_product", "gaussian", "concatenation")


class NonLocal(nn.Module):
    """z = x + BN(W(y)),  y_i = sum_j f(x_i, x_j) g(x_j) / C(x);  x: [B, C, H, W]."""

    def __init__(self, C: int, variant: str = "embedded_gaussian", reduction: int = 2,
                 bn: bool = True, subsample: bool = False, scale: bool = False,
                 bias: bool = True):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"NonLocal: variant must be one of {VARIANTS}, got {variant!r}")
        inner = C // reduction
        if inner < 1:
            raise ValueError(f"NonLocal: C // reduction must be >= 1, got C={C}, "
                             f"reduction={reduction}")
        self.variant, self.inner = variant, inner
        self.subsample, self.scale = subsample, scale
        # Registration order = state_dict order: theta, phi, g, W, bn.
        if variant != "gaussian":  # gaussian uses x itself as query and key: no params
            self.theta = nn.Conv2d(C, inner, kernel_size=1, bias=bias)
            if variant == "concatenation":  # w_f's half for theta, after theta
                self.w_theta = nn.Conv2d(inner, 1, kernel_size=1, bias=False)
            self.phi = nn.Conv2d(C, inner, kernel_size=1, bias=bias)
            if variant == "concatenation":
                self.w_phi = nn.Conv2d(inner, 1, kernel_size=1, bias=False)
        self.g = nn.Conv2d(C, inner, kernel_size=1, bias=bias)
        self.W = nn.Conv2d(inner, C, kernel_size=1, bias=bias)
        self.bn = nn.BatchNorm2d(C) if bn else None
        # §4.1: the block starts as the identity. With BN, its scale is zero (official
        # BN_INIT_GAMMA = 0); without BN, W itself is zero.
        if bn:
            nn.init.zeros_(self.bn.weight)
        else:
            nn.init.zeros_(self.W.weight)
            if bias:
                nn.init.zeros_(self.W.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        # x^: the keys' and values' input, max-pooled 2x2 with subsample
        x_hat = nn.functional.max_pool2d(x, 2) if self.subsample else x
        if self.variant == "concatenation":
            a_q = self.w_theta(self.theta(x)).flatten(1)  # [B, N]
            b_k = self.w_phi(self.phi(x_hat)).flatten(1)  # [B, N_key]
            f = torch.relu(a_q[:, :, None] + b_k[:, None, :])
            a = f / b_k.shape[-1]  # C(x) = N
            g = self.g(x_hat).flatten(2)
            y = (g @ a.transpose(1, 2)).view(B, self.inner, H, W)
            z = self.W(y)
            return x + (self.bn(z) if self.bn is not None else z)
        if self.variant == "gaussian":
            q, k = x.flatten(2), x_hat.flatten(2)  # [B, C, N], [B, C, N_key]
        else:
            q, k = self.theta(x).flatten(2), self.phi(x_hat).flatten(2)  # [B, inner, N]
        f = q.transpose(1, 2) @ k  # [B, N_query, N_key], f_ij = q_i . k_j
        if self.scale and self.variant != "dot_product":
            f = f / q.shape[1] ** 0.5
        if self.variant == "dot_product":
            a = f / k.shape[-1]  # C(x) = the number of keys (a constant, not a sum of f)
        else:
            a = f.softmax(dim=-1)  # exp(f_ij) / sum_j exp(f_ij)
        g = self.g(x_hat).flatten(2)  # [B, inner, N_key]
        y = (g @ a.transpose(1, 2)).view(B, self.inner, H, W)  # y_i = sum_j a_ij g_j
        z = self.W(y)
        if self.bn is not None:
            z = self.bn(z)
        return x + z


class NonLocal3D(nn.Module):
    """The authors' spacetime_nonlocal + add_nonlocal on x: [B, C, T, H, W] (Caffe2, their
    config's defaults): theta, phi, g 1x1x1 convs (biases unless NO_BIAS), phi and g on x
    max-pooled [1, 2, 2] (USE_MAXPOOL), affinity theta^T phi scaled by inner^-0.5
    (USE_SCALE), softmax over the keys (USE_SOFTMAX; else divided by the number of keys),
    y = g p^T, the out conv, SpatialBN with its scale at 0 (USE_BN), the sum with x.
    With group_size, their add_nonlocal_group: frames moved next to the batch, the clip cut
    into T / group_size clips of consecutive frames, the block on those, the frames put back."""

    def __init__(self, C: int, variant: str = "embedded_gaussian", reduction: int = 2,
                 bn: bool = True, subsample: bool = True, scale: bool = True,
                 bias: bool = True, group_size: int = 0):
        super().__init__()
        inner = C // reduction
        self.variant, self.inner, self.subsample, self.scale = variant, inner, subsample, scale
        self.group_size = group_size
        self.theta = nn.Conv3d(C, inner, 1, bias=bias)
        self.phi = nn.Conv3d(C, inner, 1, bias=bias)
        self.g = nn.Conv3d(C, inner, 1, bias=bias)
        self.out = nn.Conv3d(inner, C, 1, bias=bias)
        self.bn = nn.BatchNorm3d(C) if bn else None
        if bn:
            nn.init.zeros_(self.bn.weight)
        else:  # the block starts as the identity (USE_ZERO_INIT_CONV)
            nn.init.zeros_(self.out.weight)
            if bias:
                nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        if not self.group_size:
            return self.spacetime_nonlocal(x)
        groups = T // self.group_size
        clips = x.transpose(1, 2).reshape(B * groups, self.group_size, C, H, W).transpose(1, 2)
        out = self.spacetime_nonlocal(clips)
        return out.transpose(1, 2).reshape(B, T, C, H, W).transpose(1, 2)

    def spacetime_nonlocal(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        pooled = nn.functional.max_pool3d(x, (1, 2, 2), (1, 2, 2)) if self.subsample else x
        theta = self.theta(x).reshape(B, self.inner, -1)
        phi = self.phi(pooled).reshape(B, self.inner, -1)
        g = self.g(pooled).reshape(B, self.inner, -1)
        theta_phi = theta.transpose(1, 2) @ phi  # [B, N, N_key]
        if self.variant == "dot_product":
            p = theta_phi / phi.shape[-1]
        else:
            if self.scale:
                theta_phi = theta_phi * self.inner ** -0.5
            p = theta_phi.softmax(dim=2)
        t = (g @ p.transpose(1, 2)).reshape(B, self.inner, T, H, W)
        out = self.out(t)
        return x + (self.bn(out) if self.bn is not None else out)
