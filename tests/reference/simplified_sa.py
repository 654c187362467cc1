"""Simplified (projection-free) multi-head scaled dot-product attention.

Origin: no paper. xmu-xiaoma666/External-Attention-pytorch,
model/attention/SimplifiedSelfAttention.py, SimplifiedScaledDotProductAttention, whose
README lists its paper as "None"; the attention it simplifies is Vaswani et al., "Attention
Is All You Need", NeurIPS 2017, arXiv:1706.03762, §3.2. (Luo et al.'s "Simplified
Self-Attention" for speech, arXiv:2005.10463, is another module: FSMN memory blocks make
its queries and keys.)

As the zoo's code: x [B, N, D] is viewed as M heads of D / M features and used as query,
key and value without any projection; logits q·k / sqrt(D / M); softmax over the keys
(the last axis: the zoo's axis is right); heads concatenated; fc_o = nn.Linear(D, D) with
bias, its only parameters (registered in __init__: no catalogue bug to avoid here);
dropout on the attention weights while training (the zoo's `dropout`, 0.1).

Deviations: self-attention only (the zoo's forward takes queries, keys, values separately;
its usage passes x three times); the attention mask is the key-padding case
(pad[:, None, None, :] of the zoo's [B, M, Nq, Nk] attention_mask, -inf where True); no
multiplicative attention_weights; fc_o keeps torch's initialisation instead of the zoo's
normal(std = 0.001) (weights are copied in the tests anyway).
"""

import math

import torch
from torch import nn


class SimplifiedSA(nn.Module):
    """x: [B, N, D] -> [B, N, D]; forward(x, pad=None), pad: [B, N] bool, True = ignore."""

    def __init__(self, D: int, M: int = 8, dropout: float = 0.1):
        super().__init__()
        if M < 1 or D % M != 0:
            raise ValueError(f"SimplifiedSA: D must be divisible by M, got D={D}, M={M}")
        self.D, self.M = D, M
        self.fc_o = nn.Linear(D, D)  # the only parameters
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        M, d = self.M, D // self.M
        heads = x.view(B, N, M, d).permute(0, 2, 1, 3)  # [B, M, N, d]: q = k = v
        logits = heads @ heads.transpose(-2, -1) / math.sqrt(d)  # [B, M, Nq, Nk]
        if pad is not None:
            logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
        attn = self.dropout(torch.softmax(logits, dim=-1))  # over the keys
        y = (attn @ heads).permute(0, 2, 1, 3).reshape(B, N, D)
        return self.fc_o(y)
