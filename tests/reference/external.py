"""External attention (the core module: two linear memories, double normalisation).

Paper: Guo, Liu, Mu, Hu, "Beyond Self-attention: External Attention using Two Linear Layers
for Visual Tasks", TPAMI 2022, arXiv:2105.02358 (Algorithm 1).
Official code: MenghaoGuo/EANet (model_torch.py, External_attention): memory M_k as
Conv1d(c, 64, 1, bias=False), softmax over the N positions, then each position's weights are
divided by (1e-9 + their sum over the S slots), memory M_v as Conv1d(64, c, 1, bias=False).
The official segmentation block wraps this core in a 1x1 conv before, and conv + BN +
residual + ReLU after; those wrappers are not part of the spec and are left out here.
"""

import torch
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
    projected back to D. No dropout."""

    def __init__(self, D: int, M: int = 8, coef: int = 4, S: int | None = None):
        super().__init__()
        if D % M:
            raise ValueError(f"ExternalMultiHead: M={M} must divide D={D}")
        self.heads = M * coef
        S = 256 // coef if S is None else S
        self.trans_dims = nn.Linear(D, D * coef)
        self.linear_0 = nn.Linear(D * coef // self.heads, S)
        self.linear_1 = nn.Linear(S, D * coef // self.heads)
        self.proj = nn.Linear(D * coef, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.trans_dims(x).view(b, n, self.heads, -1).permute(0, 2, 1, 3)  # [B, H, N, d]
        attn = self.linear_0(x).softmax(dim=-2)  # over the positions
        attn = attn / (1e-9 + attn.sum(dim=-1, keepdim=True))  # over the slots
        x = self.linear_1(attn).permute(0, 2, 1, 3).reshape(b, n, -1)
        return self.proj(x)
