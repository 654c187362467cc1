"""Multi-head (scaled dot-product) self-attention.

Paper: Vaswani et al., "Attention Is All You Need", NeurIPS 2017, arXiv:1706.03762 (§3.2).
Semantics follow torch.nn.MultiheadAttention (batch_first, self-attention): separate
query / key / value / output projections of width D, M heads of width D/M, logits scaled
by 1/sqrt(D/M), an optional causal range and an optional key padding mask where True marks
a key to ignore, `dropout` on the attention weights while training (as nn.MultiheadAttention's).
Written out by hand (no F.scaled_dot_product_attention) so that it is an
independent check of compiled code that does use the fused kernel.
"""

import math

import torch
from torch import nn


def heads(t: torch.Tensor, M: int) -> torch.Tensor:
    """[B, N, M·w] -> [B, M, N, w]."""
    return t.unflatten(-1, (M, -1)).transpose(1, 2)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad: torch.Tensor | None,
           causal: bool, dropout: float, training: bool) -> torch.Tensor:
    """Scaled dot-product attention per head, q [B, M, Nq, d_k], k [B, M, Nk, d_k], v
    [B, M, Nk, d_v]; the heads concatenated: [B, Nq, M·d_v]."""
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [B, M, Nq, Nk]
    if causal:  # query i may look at keys j <= i only
        n = logits.shape[-1]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        logits = logits.masked_fill(future, float("-inf"))
    if pad is not None:
        logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
    attn = nn.functional.dropout(logits.softmax(dim=-1), dropout, training)  # over the keys
    return (attn @ v).transpose(1, 2).flatten(2)


class MHSA(nn.Module):
    """x: [B, N, D] -> [B, N, D]; forward(x, pad=None), pad: [B, N] bool, True = ignore."""

    def __init__(self, D: int, M: int = 8, causal: bool = False, bias: bool = True,
                 dropout: float = 0.0, d_k: int | None = None, d_v: int | None = None):
        super().__init__()
        if M < 1 or D % M != 0:
            raise ValueError(f"MHSA: D must be divisible by M, got D={D}, M={M}")
        self.D, self.M, self.causal, self.dropout = D, M, causal, dropout
        self.d_k, self.d_v = d_k or D // M, d_v or D // M  # §3.2.2: D / M each
        # Registration order = state_dict order: query, key, value, output (weight, bias).
        self.query = nn.Linear(D, M * self.d_k, bias=bias)
        self.key = nn.Linear(D, M * self.d_k, bias=bias)
        self.value = nn.Linear(D, M * self.d_v, bias=bias)
        self.output = nn.Linear(M * self.d_v, D, bias=bias)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = (heads(f(x), self.M) for f in (self.query, self.key, self.value))
        return self.output(attend(q, k, v, pad, self.causal, self.dropout, self.training))


class CrossAttention(nn.Module):
    """Encoder-decoder attention (§3.2.3): queries from x [B, N, D], keys and values from
    memory [B, S, E] (nn.MultiheadAttention's kdim = vdim = E); pad [B, S], True = ignore."""

    def __init__(self, D: int, M: int = 8, E: int | None = None, bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        E = D if E is None else E
        self.M, self.dropout = M, dropout
        self.query = nn.Linear(D, D, bias=bias)
        self.key = nn.Linear(E, D, bias=bias)
        self.value = nn.Linear(E, D, bias=bias)
        self.output = nn.Linear(D, D, bias=bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor,
                pad: torch.Tensor | None = None) -> torch.Tensor:
        q = heads(self.query(x), self.M)
        k, v = heads(self.key(memory), self.M), heads(self.value(memory), self.M)
        return self.output(attend(q, k, v, pad, False, self.dropout, self.training))
