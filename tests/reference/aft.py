"""Attention Free Transformer: AFT-simple, AFT-full and AFT-local (AFT); AFT-conv (AFTConv).

Paper: Zhai, Talbott, Srivastava, Huang, Goh, Zhang, Susskind, "An Attention Free
Transformer", 2021, arXiv:2105.14103. AFT-full (Sec. 3.1):

    Q = X W^Q, K = X W^K, V = X W^V,
    Y_t = sigma_q(Q_t) * sum_t' exp(K_t' + w_t,t') * V_t' / sum_t' exp(K_t' + w_t,t'),

elementwise in the feature dimension, sigma_q a sigmoid, w in R^{T x T} learned pairwise
position biases (T the largest length). AFT-local (Sec. 3.2): w_t,t' is kept where
|t - t'| < s and is 0 elsewhere (still inside the sums, exp(K_t') there). AFT-simple drops w,
so the ratio no longer depends on t: Y_t = sigma(Q_t) * sum_t' softmax_t'(K)_t' * V_t'.
`causal` restricts both sums to t' <= t (the paper's autoregressive models).
This reference computes the ratio of sums as the paper writes it (with the maximum over t'
subtracted, which cancels), not as a softmax. No official code was released; the paper
writes no output projection, and `proj` adds the W^O of the MHA that AFT replaces, as the
public implementations do. w is a registered parameter (one popular copy of AFT-simple keeps
its zero bias as a plain tensor).

AFT-conv (Sec. 3.2, Eq. 6; 2-D, as in the paper's ImageNet experiments, AFT-conv-h-s): h
heads, K tied to the heads (K in R^{T x h}), Q and V of D channels split into h contiguous
groups of D / h, and per head i a learned s x s kernel w^i:

    Y^i_t = sigma(Q^i_t) * [conv2d(exp(K^i) * V^i, exp(w^i) - 1) + sum_t' exp(K^i_t') V^i_t']
                         / [conv2d(exp(K^i), exp(w^i) - 1) + sum_t' exp(K^i_t')],

conv2d a depthwise convolution whose kernel is shared by the head's channels, zero-padded
('same'), so a key beyond the map does not exist. AFTConv computes exactly these
convolutions and global sums (the maximum of K^i over the positions subtracted, which
cancels). `reparam` (the default) is the paper's reparameterisation of each kernel
(Eq. 8):

    w^i <- gamma^i (w^i - mean(w^i)) / std(w^i) + beta^i,

the mean and std over the kernel's s x s entries (torch's unbiased std: the biased one
differs by a constant factor, which gamma absorbs), gamma^i and beta^i learned scalars,
zero at first, so every kernel starts at 0 (AFT-simple); the raw w^i starts random (all
zero it would have no std). Without it w^i is learned directly, starting at 0. The tokens
come on their grid, [B, H, W, D].
"""

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("simple", "full", "local")


class AFT(nn.Module):
    """x: [B, T, D] -> [B, T, D]."""

    def __init__(self, D: int, variant: str = "simple", T: int = 1024, s: int = 32,
                 proj: bool = True, bias: bool = True, causal: bool = False):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"AFT: variant must be one of {VARIANTS}, got {variant!r}")
        self.variant, self.T, self.s, self.causal = variant, T, s, causal
        # Registered in the compiled spec's order: W^K, w, W^V (the formulation's key,
        # position term and value), then W^Q (applied in the spec's `output`), then W^O.
        self.to_k = nn.Linear(D, D, bias=bias)
        if variant != "simple":
            self.position = nn.ParameterDict({"w": nn.Parameter(torch.zeros(T, T))})
        self.to_v = nn.Linear(D, D, bias=bias)
        self.to_q = nn.Linear(D, D, bias=bias)
        self.proj = nn.Linear(D, D, bias=bias) if proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        if n > self.T and self.variant != "simple":
            raise ValueError(f"AFT: a sequence of {n} is longer than T={self.T}")
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)  # [B, T, D]
        if self.variant == "simple" and not self.causal:  # no w: the ratio is t's own
            e = torch.exp(k - k.amax(dim=1, keepdim=True))
            context = (e * v).sum(dim=1, keepdim=True) / e.sum(dim=1, keepdim=True)
            y = torch.sigmoid(q) * context  # the same context gated at every position t
            return self.proj(y) if self.proj is not None else y
        if self.variant == "simple":
            w = x.new_zeros(n, n)
        else:
            w = self.position["w"][:n, :n]
            if self.variant == "local":
                t = torch.arange(n, device=x.device)
                w = torch.where((t[:, None] - t[None, :]).abs() < self.s, w, 0)
        if self.causal:  # t' > t leaves both sums
            w = w.masked_fill(torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1),
                              float("-inf"))
        logits = k[:, None, :, :] + w[None, :, :, None]  # [B, t, t', D]
        e = torch.exp(logits - logits.amax(dim=2, keepdim=True))
        context = (e * v[:, None]).sum(dim=2) / e.sum(dim=2)  # [B, t, D]
        y = torch.sigmoid(q) * context
        return self.proj(y) if self.proj is not None else y


class AFTConv(nn.Module):
    """x: [B, H, W, D] -> [B, H, W, D]."""

    def __init__(self, D: int, h: int | None = None, s: int = 11, proj: bool = True,
                 bias: bool = True, reparam: bool = True):
        super().__init__()
        h = D if h is None else h
        if D % h:
            raise ValueError(f"AFTConv: h={h} heads must divide D={D}")
        if s < 1 or s % 2 == 0:
            raise ValueError(f"AFTConv: the window s={s} must be odd")
        if reparam and s == 1:
            raise ValueError("AFTConv: a 1 x 1 kernel has no std to reparameterise by")
        self.h, self.s, self.reparam = h, s, reparam
        # Registered in the compiled spec's order: W^K (h outputs), the kernels w, W^V, then
        # W^Q (applied in the spec's `output`), then W^O.
        self.to_k = nn.Linear(D, h, bias=bias)
        # w^i[dy + s // 2, dx + s // 2] for the key's offset (dy, dx) = k − q, then Eq. 8's
        # gamma^i and beta^i (in a module, so that they come after W^K in state_dict)
        self.position = nn.ParameterDict({"w": nn.Parameter(torch.zeros(h, s, s))})
        if reparam:
            nn.init.uniform_(self.position["w"], -1 / s, 1 / s)
            self.position["gamma"] = nn.Parameter(torch.zeros(h))
            self.position["beta"] = nn.Parameter(torch.zeros(h))
        self.to_v = nn.Linear(D, D, bias=bias)
        self.to_q = nn.Linear(D, D, bias=bias)
        self.proj = nn.Linear(D, D, bias=bias) if proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, height, width, d = x.shape
        h, c = self.h, d // self.h
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        k = k.permute(0, 3, 1, 2)  # [B, h, H, W]
        v = v.permute(0, 3, 1, 2).reshape(b, h, c, height, width)
        ek = torch.exp(k - k.amax(dim=(2, 3), keepdim=True))  # exp(K^i), max cancels
        ekv = ek[:, :, None] * v  # [B, h, c, H, W]
        kernel = torch.expm1(self.kernels())[:, None]  # exp(w^i) − 1: [h, 1, s, s]
        pad = self.s // 2
        local_kv = F.conv2d(ekv.reshape(b, h * c, height, width),
                            kernel.repeat_interleave(c, dim=0), padding=pad, groups=h * c)
        local_k = F.conv2d(ek, kernel, padding=pad, groups=h)  # [B, h, H, W]
        num = local_kv.reshape(b, h, c, height, width) + ekv.sum(dim=(3, 4), keepdim=True)
        den = local_k + ek.sum(dim=(2, 3), keepdim=True)
        context = (num / den[:, :, None]).reshape(b, d, height, width).permute(0, 2, 3, 1)
        y = torch.sigmoid(q) * context
        return self.proj(y) if self.proj is not None else y

    def kernels(self) -> torch.Tensor:
        """w^i for every head, [h, s, s]: reparameterised by Eq. 8, or as learned."""
        w = self.position["w"]
        if not self.reparam:
            return w
        p = self.position
        mean, std = w.mean(dim=(1, 2), keepdim=True), w.std(dim=(1, 2), keepdim=True)
        return p["gamma"][:, None, None] * (w - mean) / std + p["beta"][:, None, None]
