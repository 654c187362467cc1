"""Class-specific residual attention (CSRA) and its multi-head form (MHA).

Paper: Zhu, Wu, "Residual Attention: A Simple but Effective Method for Multi-Label
Recognition", ICCV 2021, arXiv:2108.02456 (§3, eq. 1 – 5; multi-head CSRA, §3.3).
Official code: Kevinz-code/CSRA, pipeline/csra.py, classes `CSRA` and `MHA`, followed
step by step: a bias-free Conv2d(input_dim, num_classes, 1) classifier whose output is
divided by the L2 norm of each class's weight row in every forward pass; the scores
flattened over the positions; base logit = their mean; attention logit = their max when
T == 99, else Σ_j softmax_j(T · s_j) · s_j; output base + lam · attention. MHA sums the
logits of num_heads CSRA heads (own classifiers, one shared lam) whose temperatures come
from the authors' table.

Deviations: the constructors take keywords in the spec's order, with the defaults of the
authors' main.py (lam = 0.1, one head) and T = 1 (the one-head temperature); the
official MHA takes (num_heads, lam, input_dim, num_classes) with no defaults.
"""

import torch
from torch import nn


class CSRA(nn.Module):
    """x: [B, input_dim, H, W] -> logits [B, num_classes]."""

    def __init__(self, input_dim: int, num_classes: int, T: float = 1.0, lam: float = 0.1):
        super().__init__()
        self.T = T
        self.lam = lam
        self.head = nn.Conv2d(input_dim, num_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each class's score divided by the norm of its classifier row: [K, 1, 1, 1] -> [1, K, 1, 1]
        row_norm = self.head.weight.norm(dim=1, keepdim=True).transpose(0, 1)
        score = (self.head(x) / row_norm).flatten(2)  # [B, K, HW]
        base = score.mean(dim=2)
        if self.T == 99:  # the authors' code for T -> infinity: max pooling
            att = score.max(dim=2).values
        else:
            att = (score * torch.softmax(score * self.T, dim=2)).sum(dim=2)
        return base + self.lam * att


class MHA(nn.Module):
    """Multi-head CSRA: the heads' logits summed."""

    TEMPERATURES = {1: [1], 2: [1, 99], 4: [1, 2, 4, 99], 6: [1, 2, 3, 4, 5, 99],
                    8: [1, 2, 3, 4, 5, 6, 7, 99]}

    def __init__(self, input_dim: int, num_classes: int, num_heads: int = 1,
                 lam: float = 0.1):
        super().__init__()
        if num_heads not in self.TEMPERATURES:
            raise ValueError(f"MHA: num_heads must be one of {sorted(self.TEMPERATURES)}, "
                             f"got {num_heads}")
        self.multi_head = nn.ModuleList(
            CSRA(input_dim, num_classes, T, lam) for T in self.TEMPERATURES[num_heads])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = 0.0
        for head in self.multi_head:
            logit = logit + head(x)
        return logit
