"""Attention with linear biases (ALiBi).

Paper: Press, Smith, Lewis, "Train Short, Test Long: Attention with Linear Biases Enables
Input Length Extrapolation", ICLR 2022, arXiv:2108.12409 (§3, Figure 3).
Official code: ofirpress/attention_with_linear_biases, fairseq/models/transformer.py:
`get_slopes(n)` (2^(−8/n) to the powers 1 … n for n a power of two; otherwise the slopes
of the power of two c below n followed by get_slopes(2c)[0::2][:n − c]) and the bias
slopes[h] · j on key position j, added to the future mask before the softmax of fairseq's
MultiheadAttention (q, k, v, out projections with bias; q scaled by head_dim^−0.5).
Causal, as in the paper. `causal=False` uses −m_h · |i − j| on every key, the symmetric
form (not the paper's; it has no key-position form).
"""

import math

import torch
from torch import nn


def get_slopes(n: int) -> list[float]:
    """The authors' per-head slopes."""
    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + get_slopes(2 * closest)[0::2][:n - closest]


class ALiBi(nn.Module):
    """x: [B, N, D] -> [B, N, D]; forward(x, pad=None), pad: [B, N] bool, True = ignore."""

    def __init__(self, D: int, M: int = 8, causal: bool = True,
                 attention_dropout: float = 0.0):
        super().__init__()
        self.D, self.M, self.causal = D, M, causal
        self.attention_dropout = nn.Dropout(attention_dropout)  # fairseq's dropout_module
        self.q_proj = nn.Linear(D, D)
        self.k_proj = nn.Linear(D, D)
        self.v_proj = nn.Linear(D, D)
        self.out_proj = nn.Linear(D, D)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        M, d = self.M, D // self.M

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, N, M, d).transpose(1, 2)

        q = heads(self.q_proj(x)) * d ** -0.5
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        slopes = torch.tensor(get_slopes(M), dtype=x.dtype)[:, None, None]  # [M, 1, 1]
        position = torch.arange(N, dtype=x.dtype)
        if self.causal:  # the authors' slopes · j on key j, and the future mask
            bias = (slopes * position[None, None, :]).expand(M, N, N)
            future = torch.ones(N, N, dtype=torch.bool).triu(1)
            bias = bias.masked_fill(future, float("-inf"))
        else:
            bias = -slopes * (position[:, None] - position[None, :]).abs()
        logits = q @ k.transpose(-1, -2) + bias
        if pad is not None:
            logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
        y = (self.attention_dropout(logits.softmax(dim=-1)) @ v).transpose(1, 2).reshape(B, N, D)
        return self.out_proj(y)
