"""Separable self-attention (MobileViTv2).

Paper: Mehta, Rastegari, "Separable Self-attention for Mobile Vision Transformers", TMLR
2023, arXiv:2206.02680 (§3.2): with k tokens x [k, d],
    c_s = softmax_k(x W_I)              one context score per token (W_I: d -> 1)
    c_v = sum_k c_s(k) (x W_K)(k)       the context vector (W_K: d -> d)
    y   = (ReLU(x W_V) * c_v) W_O       c_v broadcast to every token (W_V, W_O: d -> d)
Official code: apple/ml-cvnets, cvnets/layers/linear_attention.py, LinearSelfAttention
(_forward_self_attn): on x [B, d, P, N] (P pixels of a patch, N patches) one 1x1 conv
qkv_proj d -> 1 + 2d (bias = `bias`) split along the channels into the score (1), key (d)
and value (d); softmax of the score over N (the last axis); attention dropout
(`attn_dropout`) on the softmaxed scores; sum over N of key * scores; ReLU(value) times the
context vector; out_proj, a 1x1 conv d -> d. Every pixel position p attends over the N
patches on its own. _forward_cross_attn (forward(x, x_prev) with x_prev [B, d, P, M]):
the score and key rows of qkv_proj applied to x_prev, the value rows to x, the softmax and
the sum over x_prev's M patches.

Deviation, forced by the spec (tests copy weights by position):
- qkv_proj is held as three 1x1 convs, `score` (d -> 1), `key` (d -> d), `value` (d -> d),
  registered in that order: the official weight [1 + 2d, d, 1, 1] and bias are their rows
  stacked (rows 0, 1 .. d, d + 1 .. 2d). Same parameter count, (1 + 2d)(d + 1).
The attention dropout is applied where the official code applies it (on the scores); the
spec drops the key's rows instead, which is the same random function (see the spec).
"""

import torch
import torch.nn.functional as F
from torch import nn


class SeparableSA(nn.Module):
    """x: [B, d, P, N] -> [B, d, P, N]."""

    def __init__(self, d: int, attn_dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if not 0.0 <= attn_dropout < 1.0:
            raise ValueError(f"SeparableSA: attn_dropout must be in [0, 1), got {attn_dropout}")
        self.d = d
        # qkv_proj's three row blocks, in its order: score (W_I), key (W_K), value (W_V)
        self.score = nn.Conv2d(d, 1, kernel_size=1, bias=bias)
        self.key = nn.Conv2d(d, d, kernel_size=1, bias=bias)
        self.value = nn.Conv2d(d, d, kernel_size=1, bias=bias)
        self.attn_dropout = nn.Dropout(p=attn_dropout)
        self.out_proj = nn.Conv2d(d, d, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor | None = None) -> torch.Tensor:
        source = x if x_prev is None else x_prev  # their self- or cross-attention
        query = self.score(source)  # [B, 1, P, M]
        key = self.key(source)  # [B, d, P, M]
        value = self.value(x)  # [B, d, P, N]
        context_scores = self.attn_dropout(F.softmax(query, dim=-1))  # over the M patches
        context_vector = (key * context_scores).sum(dim=-1, keepdim=True)  # [B, d, P, 1]
        out = F.relu(value) * context_vector.expand_as(value)
        return self.out_proj(out)
