"""Longformer's sliding-window (local) self-attention.

Paper: Beltagy, Peters, Cohan, "Longformer: The Long-Document Transformer", 2020,
arXiv:2004.05150, §3.1 (sliding window, dilated sliding window).
Code followed: allenai/longformer, longformer/longformer.py, LongformerSelfAttention (and
its TVM kernel longformer/diagonaled_mm_tvm.py for the dilation), and HuggingFace's
LongformerSelfAttention (transformers, models/longformer), which the authors contributed:
query / key / value nn.Linear(D, D) with bias, the queries divided by sqrt(D / M) after
their bias, each query scored against the 2·(w/2) + 1 keys at offsets i·d,
|i| ≤ w/2 (w = attention_window, d = attention_dilation), locations outside the sequence
set to -inf, padding keys given -10000 (the authors' additive mask), a softmax over the
window and the window's values summed. As the authors' kernels, the scores are computed in
the "diagonal" layout [B, N, M, 2·(w/2) + 1] (each query's window gathered), not as a
dense N × N map, so this is an independent check of the spec's dense window mask.

Deviations, each because the spec cannot express the authors' behaviour:
- a padded query's output row is not zeroed (the authors zero its attention
  probabilities after the softmax); non-padded rows are the authors';
- global attention (attention_mask > 0, with query_global / key_global / value_global)
  and per-head dilations are left out; `autoregressive` keeps the window's keys up to the
  query (allenai/longformer's autoregressive mode of its TVM kernel);
- no dropout on the attention probabilities (attention_probs_dropout_prob): this is the
  authors' module in eval mode, or with that probability 0.
The output projection is not part of the module (it is LongformerSelfOutput's dense).
The authors pad the sequence to a multiple of the window before the layer; any N is
accepted here, which equals their result at the real tokens.
"""

import math

import torch
from torch import nn


class SlidingWindow(nn.Module):
    """x: [B, N, D] -> [B, N, D]; forward(x, pad=None), pad: [B, N] bool, True = padding."""

    def __init__(self, D: int, M: int = 16, attention_window: int = 512,
                 attention_dilation: int = 1, autoregressive: bool = False):
        super().__init__()
        if M < 1 or D % M != 0:
            raise ValueError(f"SlidingWindow: D must be divisible by M, got D={D}, M={M}")
        if attention_window < 0 or attention_dilation < 1:
            raise ValueError("SlidingWindow: attention_window >= 0 and attention_dilation >= 1")
        self.D, self.M = D, M
        self.one_sided = attention_window // 2
        self.dilation = attention_dilation
        self.autoregressive = autoregressive  # only the window's keys up to the query
        # Registration order = state_dict order: query, key, value (weight, bias).
        self.query = nn.Linear(D, D)
        self.key = nn.Linear(D, D)
        self.value = nn.Linear(D, D)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        M, d = self.M, D // self.M
        q = (self.query(x) / math.sqrt(d)).view(B, N, M, d)
        k = self.key(x).view(B, N, M, d)
        v = self.value(x).view(B, N, M, d)

        # key index of diagonal j for query n: n + dilation·(j − w), j = 0 … 2w
        w = self.one_sided
        steps = torch.arange(-w, w + 1, device=x.device) * self.dilation
        where = torch.arange(N, device=x.device)[:, None] + steps[None, :]  # [N, 2w+1]
        inside = (where >= 0) & (where < N)
        if self.autoregressive:  # the authors' TVM kernel's one-sided, causal window
            inside = inside & (steps[None, :] <= 0)
        where = where.clamp(0, N - 1)

        k_win = k[:, where]  # [B, N, 2w+1, M, d]
        v_win = v[:, where]
        scores = torch.einsum("bnmc,bnjmc->bnmj", q, k_win)  # [B, N, M, 2w+1]
        scores = scores.masked_fill(~inside[None, :, None, :], float("-inf"))
        if pad is not None:  # the authors' additive -10000 on padding keys
            padded = pad[:, where]  # [B, N, 2w+1]
            scores = scores + padded[:, :, None, :].to(scores.dtype) * -10000.0
        probs = scores.softmax(dim=-1)  # over the window
        y = torch.einsum("bnmj,bnjmc->bnmc", probs, v_win)
        return y.reshape(B, N, D)
