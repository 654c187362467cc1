"""Attention pooling of a sequence into one vector.

Paper: Yang, Yang, Dyer, He, Smola, Hovy, "Hierarchical Attention Networks for Document
Classification", NAACL 2016, Sec. 2.2 (word attention; the sentence attention is the same
with its own parameters):

    u_it = tanh(W_w h_it + b_w),  alpha_it = exp(u_it^T u_w) / sum_t exp(u_it^T u_w),
    s_i = sum_t alpha_it h_it,

with u_w a learned context vector, randomly initialised. HAN's annotations h are 100-wide
(a bidirectional GRU of 50 units each way) and so is u_w. `bias=False` drops b_w, as in the
additive score v_a^T tanh(W_a s + U_a h) of Bahdanau, Cho, Bengio (ICLR 2015,
arXiv:1409.0473), here without the decoder state s.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class AttentionPool(nn.Module):
    """x: [B, T, D] -> [B, D]."""

    def __init__(self, D: int, A: int | None = None, bias: bool = True):
        super().__init__()
        A = D if A is None else A  # the spec's default A = D
        # The paper's three tensors, registered in the compiled spec's order: W_w, b_w, u_w.
        bound = 1 / math.sqrt(D)  # nn.Linear's initialisation for W_w and b_w
        self.W = nn.Parameter(torch.empty(A, D).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.empty(A).uniform_(-bound, bound)) if bias else None
        self.u = nn.Parameter(torch.randn(A) / math.sqrt(A))  # the context vector u_w

    def forward(self, h: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        u = torch.tanh(F.linear(h, self.W, self.b))  # [B, T, A]
        scores = u @ self.u  # u_t^T u_w: [B, T]
        if pad is not None:  # padded positions (True) take no part in the softmax
            scores = scores.masked_fill(pad, float("-inf"))
        alpha = torch.softmax(scores, dim=1)  # over the T positions
        return (alpha.unsqueeze(-1) * h).sum(dim=1)  # [B, D]
