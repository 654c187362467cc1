"""External attention (the core module: two linear memories, double normalisation).

Paper: Guo, Liu, Mu, Hu, "Beyond Self-attention: External Attention using Two Linear Layers
for Visual Tasks", TPAMI 2022, arXiv:2105.02358 (Algorithm 1).
Official code: MenghaoGuo/EANet (model_torch.py, External_attention): memory M_k as
Conv1d(c, 64, 1, bias=False), softmax over the N positions, then each position's weights are
divided by (1e-9 + their sum over the S slots), memory M_v as Conv1d(64, c, 1, bias=False).
The official segmentation block wraps this core in a 1x1 conv before, and conv + BN +
residual + ReLU after: `External` is the core, `ExternalAttention` the whole block.
"""

import torch
import torch.nn.functional as F
from torch import nn


class External(nn.Module):
    """x: [B, N, D] -> [B, N, D]."""

    EPS = 1e-9  # the official code's epsilon in the L1 step

    def __init__(self, D: int, S: int = 64):
        super().__init__()
        self.mk = nn.Linear(D, S, bias=False)  # key memory M_k: S slots of width D
        self.mv = nn.Linear(S, D, bias=False)  # value memory M_v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.mk(x)  # [B, N, S]
        # Double normalisation. The axes are the subtle part: the softmax runs over the
        # N positions (dim 1), not over the memory slots; then an L1 norm over S (dim 2).
        attn = attn.softmax(dim=1)
        attn = attn / (self.EPS + attn.sum(dim=2, keepdim=True))
        return self.mv(attn)  # [B, N, D]


class ExternalMultiHead(nn.Module):
    """Multi-head external attention (paper §3.3), as the authors' EANet
    multi_head_attention_torch.py: x [B, N, D] widened coef times, split into M·coef heads
    that share linear_0 (keys, with bias) and linear_1 (values, with bias); a softmax over
    the N positions, then an L1 normalisation over the S = 256 // coef slots (+1e-9);
    projected back to D; attn_drop on the normalised map, proj_drop after the projection."""

    def __init__(self, D: int, M: int = 8, coef: int = 4, S: int | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if D % M:
            raise ValueError(f"ExternalMultiHead: M={M} must divide D={D}")
        self.heads = M * coef
        S = 256 // coef if S is None else S
        self.trans_dims = nn.Linear(D, D * coef)
        self.linear_0 = nn.Linear(D * coef // self.heads, S)
        self.linear_1 = nn.Linear(S, D * coef // self.heads)
        self.proj = nn.Linear(D * coef, D)
        self.attn_drop, self.proj_drop = nn.Dropout(attn_drop), nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.trans_dims(x).view(b, n, self.heads, -1).permute(0, 2, 1, 3)  # [B, H, N, d]
        attn = self.linear_0(x).softmax(dim=-2)  # over the positions
        attn = attn / (1e-9 + attn.sum(dim=-1, keepdim=True))  # over the slots
        x = self.linear_1(self.attn_drop(attn)).permute(0, 2, 1, 3).reshape(b, n, -1)
        return self.proj_drop(self.proj(x))


class ExternalAttention(nn.Module):
    """The authors' External_attention(c) (EANet, model_torch.py) on [B, C, H, W]: conv1 (1x1,
    bias), linear_0 (Conv1d C -> S, no bias), softmax over the positions, L1 over the slots
    (eps 1e-9), linear_1 (Conv1d S -> C, no bias), conv2 (1x1, no bias) + BatchNorm, the
    residual, ReLU. Their linear_1 weight is a permuted view of linear_0's (the memories
    tied); here the two are separate parameters, as the paper's M_k and M_v."""

    def __init__(self, C: int, S: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(C, C, 1)
        self.linear_0 = nn.Conv1d(C, S, 1, bias=False)
        self.linear_1 = nn.Conv1d(S, C, 1, bias=False)
        self.conv2 = nn.Sequential(nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idn = x
        x = self.conv1(x)
        b, c, h, w = x.size()
        attn = F.softmax(self.linear_0(x.view(b, c, h * w)), dim=-1)  # [B, S, N]
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        x = self.conv2(self.linear_1(attn).view(b, c, h, w))
        return F.relu(x + idn)
