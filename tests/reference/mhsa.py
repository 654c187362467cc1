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
        B, N, D = x.shape
        M = self.M

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, N, M·w] -> [B, M, N, w]
            return t.view(B, N, M, -1).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        logits = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # [B, M, Nq, Nk]
        if self.causal:
            # query i may look at keys j <= i only
            future = torch.ones(N, N, dtype=torch.bool, device=x.device).triu(1)
            logits = logits.masked_fill(future, float("-inf"))
        if pad is not None:
            logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
        attn = logits.softmax(dim=-1)  # normalise over keys
        attn = nn.functional.dropout(attn, self.dropout, self.training)
        y = (attn @ v).transpose(1, 2).reshape(B, N, -1)  # concatenate heads
        return self.output(y)


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
        B, N, D = x.shape
        S, M, d = memory.shape[1], self.M, D // self.M
        q = self.query(x).view(B, N, M, d).transpose(1, 2)
        k = self.key(memory).view(B, S, M, d).transpose(1, 2)
        v = self.value(memory).view(B, S, M, d).transpose(1, 2)
        logits = q @ k.transpose(-2, -1) / math.sqrt(d)  # [B, M, N, S]
        if pad is not None:
            logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
        attn = nn.functional.dropout(logits.softmax(dim=-1), self.dropout, self.training)
        return self.output((attn @ v).transpose(1, 2).reshape(B, N, D))
