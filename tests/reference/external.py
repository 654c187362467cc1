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
