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


class Luong(nn.Module):
    """Luong et al.'s global attention, "Effective Approaches to Attention-based Neural
    Machine Translation", EMNLP 2015, arXiv:1508.04025, §3.1 (Eq. 5, 7, 8): for decoder
    states h [B, T, D] and encoder states memory [B, S, D], score = h_tᵀ h̄_s (dot),
    h_tᵀ W_a h̄_s (general) or v_aᵀ tanh(W_a [h_t; h̄_s]) (concat), a_t = softmax_s,
    c_t = Σ_s a_ts h̄_s, h̃_t = tanh(W_c [c_t; h_t]), W_a, v_a and W_c without biases (the
    paper writes none). The concat score's W_a (D × 2D: the paper does not size its rows)
    is kept as its two halves of columns, W_a,h for h_t and W_a,s for h̄_s (W_a [h_t; h̄_s] =
    W_a,h h_t + W_a,s h̄_s), computed here on the concatenation. `pad` [B, S] marks padded
    source positions, which get no weight.
    align="local_m" is their local attention with monotonic alignment (§3.2, p_t = t): a_t
    the softmax of the scores over the source positions in [t − D, t + D] (D = half_width,
    the paper's 10) that the sequence has; a window that holds none (a target longer than
    the source by more than D, or all of it padding) gives no context, c_t = 0 (the paper
    does not say).
    align="local_p" is their predictive alignment (§3.2, Eq. 9-10): p_t = S ·
    sigmoid(v_pᵀ tanh(W_p h_t)) (W_p D × D, v_p 1 × D, without biases as written), S the
    source length (per sample: its positions that are not padding); a_t the softmax of the
    scores over the source positions s (0-based) with |s − p_t| ≤ D, times
    exp(−(s − p_t)² / (2σ²)), σ = D / 2; no gradient through the window's edges, p_t
    learning through the Gaussian.
    score="location" is their location-based function (§3.1, Eq. 8), a_t = softmax(W_a h_t),
    W_a a bias-free Linear(D, longest): one score per source position, for the first
    `longest` of them; the paper does not say what a longer source gets, and here its
    positions beyond `longest` score 0."""

    def __init__(self, D: int, score: str = "general", align: str = "global",
                 half_width: int = 10, longest: int = 50):
        super().__init__()
        if score not in ("dot", "general", "concat", "location"):
            raise ValueError(f"Luong: score must be dot, general, concat or location, got "
                             f"{score!r}")
        if align not in ("global", "local_m", "local_p"):
            raise ValueError(f"Luong: align must be global, local_m or local_p, got {align!r}")
        self.score, self.align, self.half_width = score, align, half_width
        if align == "local_p":  # first: the compiled spec's order
            self.W_p = nn.Linear(D, D, bias=False)
            self.v_p = nn.Linear(D, 1, bias=False)
        self.W_a = nn.Linear(D, D, bias=False) if score == "general" else None
        if score == "location":
            self.W_a = nn.Linear(D, longest, bias=False)
        if score == "concat":
            self.W_a_h = nn.Linear(D, D, bias=False)
            self.W_a_s = nn.Linear(D, D, bias=False)
            self.v_a = nn.Linear(D, 1, bias=False)
        self.W_c = nn.Linear(2 * D, D, bias=False)

    def _concat_scores(self, h: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """v_aᵀ tanh(W_a [h_t; h̄_s]) for every (t, s): [B, T, S]."""
        T, S = h.shape[1], memory.shape[1]
        pairs = torch.cat([h[:, :, None].expand(-1, -1, S, -1),
                           memory[:, None].expand(-1, T, -1, -1)], dim=-1)  # [B, T, S, 2D]
        W_a = torch.cat([self.W_a_h.weight, self.W_a_s.weight], dim=1)      # [D, 2D]
        return self.v_a(torch.tanh(pairs @ W_a.T))[..., 0]

    def forward(self, h: torch.Tensor, memory: torch.Tensor,
                pad: torch.Tensor | None = None) -> torch.Tensor:
        if self.score == "concat":
            scores = self._concat_scores(h, memory)
        elif self.score == "location":  # W_a h_t: a score per source position
            scores = self.W_a(h)
            S, longest = memory.shape[1], scores.shape[-1]
            scores = scores[..., :S] if S <= longest else F.pad(scores, (0, S - longest))
        else:
            keys = self.W_a(memory) if self.W_a is not None else memory  # W_a h̄_s
            scores = h @ keys.transpose(1, 2)  # [B, T, S]: h_tᵀ W_a h̄_s
        if pad is not None:
            scores = scores.masked_fill(pad[:, None, :], float("-inf"))
        if self.align == "local_m":  # the window [t − D, t + D] around p_t = t
            t = torch.arange(h.shape[1], device=h.device)[:, None]
            s = torch.arange(memory.shape[1], device=h.device)[None, :]
            scores = scores.masked_fill((s - t).abs() > self.half_width, float("-inf"))
        if self.align == "local_p":  # the window [p_t − D, p_t + D] around a predicted p_t
            S = memory.shape[1]
            length = torch.full((1,), float(S)) if pad is None else (~pad).sum(-1).to(h)
            p = length[:, None] * torch.sigmoid(self.v_p(torch.tanh(self.W_p(h))))[..., 0]
            apart = torch.arange(S, dtype=h.dtype)[None, None, :] - p[:, :, None]  # s − p_t
            scores = scores.masked_fill(apart.abs() > self.half_width, float("-inf"))
        seen = (scores > float("-inf")).any(dim=-1, keepdim=True)  # an empty window: c_t = 0
        weights = torch.softmax(scores.masked_fill(~seen, 0), dim=-1) * seen
        if self.align == "local_p":
            sigma = self.half_width / 2
            weights = weights * torch.exp(-apart ** 2 / (2 * sigma ** 2))
        context = weights @ memory  # c_t
        return torch.tanh(self.W_c(torch.cat([context, h], dim=-1)))
