"""Attention Free Transformer, AFT-simple.

Paper: Zhai, Talbott, Srivastava, Huang, Goh, Zhang, Susskind, "An Attention Free
Transformer", 2021, arXiv:2105.14103. AFT-full (Sec. 3.1):

    Q = X W^Q, K = X W^K, V = X W^V,
    Y_t = sigma_q(Q_t) * sum_t' exp(K_t' + w_t,t') * V_t' / sum_t' exp(K_t' + w_t,t'),

elementwise in the feature dimension, sigma_q a sigmoid. AFT-simple drops the position bias
w, so the ratio no longer depends on t: Y_t = sigma(Q_t) * sum_t' softmax_t'(K)_t' * V_t'.
This reference computes that ratio of sums as the paper writes it (with the per-feature
maximum of K subtracted, which cancels), not as a softmax. No official code was released;
the paper writes no output projection, and `proj` adds the W^O of the MHA that AFT
replaces, as the public implementations do.
"""

import torch
from torch import nn


class AFT(nn.Module):
    """x: [B, T, D] -> [B, T, D]."""

    def __init__(self, D: int, proj: bool = True, bias: bool = True):
        super().__init__()
        # Registered in the compiled spec's order: W^K, W^V (the formulation's key and
        # value), then W^Q (applied in the spec's `output`), then W^O.
        self.to_k = nn.Linear(D, D, bias=bias)
        self.to_v = nn.Linear(D, D, bias=bias)
        self.to_q = nn.Linear(D, D, bias=bias)
        self.proj = nn.Linear(D, D, bias=bias) if proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)  # [B, T, D]
        # exp(K_t') over the T positions (dim 1), separately for every feature.
        e = torch.exp(k - k.amax(dim=1, keepdim=True))
        context = (e * v).sum(dim=1, keepdim=True) / e.sum(dim=1, keepdim=True)  # [B, 1, D]
        y = torch.sigmoid(q) * context  # the same context gated at every position t
        return self.proj(y) if self.proj is not None else y
