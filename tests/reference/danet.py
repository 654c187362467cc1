"""Dual attention: position attention + channel attention, summed.

Paper: Fu, Liu, Tian, Li, Bao, Fang, Lu, "Dual Attention Network for Scene Segmentation",
CVPR 2019, arXiv:1809.02983 (§3.2 position attention, §3.3 channel attention, §3.4 sum).
Official code: junfu1115/DANet (encoding/nn/da_att.py, PAM_Module and CAM_Module):
- PAM: query and key are 1x1 Conv2d(C, C // 8) with bias, value a 1x1 Conv2d(C, C) with
  bias; energy = Qᵀ K over the H*W positions, softmax over the keys (last axis),
  out = V Aᵀ, then gamma * out + x with gamma = Parameter(zeros(1)).
- CAM: no convolutions; X is the input viewed [B, C, H*W], energy = X Xᵀ [B, C, C],
  attention = softmax(max_k energy - energy) over the last axis, out = A X, then
  gamma * out + x with its own zero-initialised gamma. The paper's §3.3 writes
  softmax(+energy) instead (x_ji = exp(A_i·A_j) / Σ_i exp(A_i·A_j)): cam="paper".
- The head (DANetHead) sums the two branches' outputs; its 3x3 conv/BN/ReLU layers around
  the branches are not part of the attention module.
Unlike several copies, nothing here is tied to 512 channels or a 7x7 map, and the C // r
query/key reduction and the gamma residuals are kept.
"""

import torch
from torch import nn


class PositionAttention(nn.Module):
    """PAM_Module: gamma * (V A^T) + x, A = softmax(Q^T K) over the keys."""

    def __init__(self, C: int, r: int = 8):
        super().__init__()
        inner = C // r  # official: in_dim // 8 (floor)
        if inner < 1:
            raise ValueError(f"DANet: C // r must be >= 1, got C={C}, r={r}")
        self.query_conv = nn.Conv2d(C, inner, kernel_size=1)
        self.key_conv = nn.Conv2d(C, inner, kernel_size=1)
        self.value_conv = nn.Conv2d(C, C, kernel_size=1)
        # γ in a submodule: a module's own parameters would come before the convolutions
        self.gamma = nn.ParameterDict({"weight": nn.Parameter(torch.zeros(1))})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q = self.query_conv(x).view(B, -1, H * W).permute(0, 2, 1)  # [B, HW, inner]
        k = self.key_conv(x).view(B, -1, H * W)  # [B, inner, HW]
        a = torch.bmm(q, k).softmax(dim=-1)  # [B, HW_query, HW_key]
        v = self.value_conv(x).view(B, C, H * W)  # [B, C, HW]
        out = torch.bmm(v, a.permute(0, 2, 1)).view(B, C, H, W)  # out_i = sum_j a_ij v_j
        return self.gamma["weight"] * out + x


class ChannelAttention(nn.Module):
    """CAM_Module: gamma * (A X) + x, A = softmax(max_k energy - energy), energy = X X^T."""

    def __init__(self, cam: str = "code"):
        super().__init__()
        if cam not in ("code", "paper"):
            raise ValueError(f"ChannelAttention: cam must be 'code' or 'paper', got {cam!r}")
        self.cam = cam
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        f = x.view(B, C, H * W)
        energy = torch.bmm(f, f.permute(0, 2, 1))  # [B, C, C]
        if self.cam == "paper":  # §3.3: exp(A_i · A_j) normalised over i
            a = energy.softmax(dim=-1)
        else:  # the authors' code: each energy subtracted from its row maximum, softmax
            energy_new = energy.max(dim=-1, keepdim=True)[0].expand_as(energy) - energy
            a = energy_new.softmax(dim=-1)
        out = torch.bmm(a, f).view(B, C, H, W)
        return self.gamma * out + x


class DANet(nn.Module):
    """PAM(x) + CAM(x);  x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, C: int, r: int = 8, cam: str = "code"):
        super().__init__()
        # state_dict order: PAM query, key, value, gamma; CAM gamma
        self.pam = PositionAttention(C, r)
        self.cam = ChannelAttention(cam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pam(x) + self.cam(x)
