"""MUSE: parallel multi-scale attention (the encoder's self-attention form).

Paper: Zhao, Sun, Xu, Zhang, Luo, "MUSE: Parallel Multi-Scale Attention for Sequence to
Sequence Learning", 2019, arXiv:1911.09483, §2: self-attention and convolutions run in
parallel on one shared value projection.

`MUSE` follows the authors' code (lancopku/Prime, fairseq/modules/multihead_attention.py,
MultiheadAttention820 as their released recipes build it: attn_dynamic_type 2,
attn_wide_kernels [3, 15], attn_dynamic_cat 1, dynamic_gate 1; the convolution is
fairseq/modules/dynamic_convolution.py's DynamicConv1dTBC, with no bias, no input
projection, padding_l = kernel // 2): q, k, v = in_proj(x) (one [3D, D] weight there,
three Linears here, in the compiled spec's order), q scaled by head_dim^-0.5 after its bias,
a softmax over the keys with padded keys at -inf, dropout; the dynamic convolutions read
the projected values (zeroed at padding only with dynamic_padding), each position's kernel
softmax(weight_linear(v)) over the taps, dropped; their outputs mixed by
softmax(dynamic_gate_para); out_proj(cat([attention, convolution])). `causal` is their
decoder's self-attention: future keys at -inf, the convolutions' padding_l = kernel - 1.

`MUSESeparable` is the popular re-implementation's form (MUSEAttention of
External-Attention-pytorch): depthwise-separable convolutions with kernels 1, 3, 5 (kernel 1
a pointwise convolution alone), mixed by learned weights that a softmax normalises, added to
the projected attention. That copy replaces its mixing weights by `nn.Parameter(softmax(...))`
inside forward, a new parameter each call that the optimiser never sees and that compounds
the softmax; here the softmax is applied to the registered parameter in forward.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class _Separable(nn.Module):
    def __init__(self, d: int, k: int):
        super().__init__()
        self.depthwise = nn.Conv1d(d, d, k, padding=k // 2, groups=d)
        self.pointwise = nn.Conv1d(d, d, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class MUSESeparable(nn.Module):
    """x: [B, N, D] -> [B, N, D]."""

    def __init__(self, D: int, M: int = 8):
        super().__init__()
        if D % M:
            raise ValueError(f"MUSESeparable: M={M} heads must divide D={D}")
        self.M = M
        # registration order = the compiled spec's: V and the convolutions, then Q, K, W^O,
        # then the mixing weights (in a submodule so that they come last)
        self.fc_v = nn.Linear(D, D)
        self.conv1 = nn.Conv1d(D, D, 1)
        self.conv3 = _Separable(D, 3)
        self.conv5 = _Separable(D, 5)
        self.fc_q = nn.Linear(D, D)
        self.fc_k = nn.Linear(D, D)
        self.fc_o = nn.Linear(D, D)
        self.mixing = nn.ParameterDict({"weight": nn.Parameter(torch.ones(3))})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        heads = lambda t: t.view(b, n, self.M, d // self.M).transpose(1, 2)  # noqa: E731
        v = self.fc_v(x)
        q, k = heads(self.fc_q(x)), heads(self.fc_k(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.M), dim=-1)
        attended = self.fc_o((a @ heads(v)).transpose(1, 2).reshape(b, n, d))
        c = v.transpose(1, 2)  # [B, D, N]: convolve over the sequence
        mix = torch.softmax(self.mixing["weight"], dim=0)
        convolved = mix[0] * self.conv1(c) + mix[1] * self.conv3(c) + mix[2] * self.conv5(c)
        return attended + convolved.transpose(1, 2)


class DynamicConv(nn.Module):
    """DynamicConv1dTBC (no bias, no in_proj) on [B, N, D]: out[t, h·R + r] =
    Σ_j w[t, h, j] · v[t + j − P, h·R + r], w = dropout(softmax_j(weight_linear(v)))."""

    def __init__(self, D: int, M: int, kernel: int, weight_dropout: float = 0.0,
                 causal: bool = False):
        super().__init__()
        self.M, self.kernel = M, kernel
        self.padding_l = kernel - 1 if causal else kernel // 2  # the decoder's, the encoder's
        self.weight_linear = nn.Linear(D, M * kernel, bias=False)
        self.weight_dropout = nn.Dropout(weight_dropout)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        B, N, D = v.shape
        K, P = self.kernel, self.padding_l
        w = self.weight_linear(v).view(B, N, self.M, K).softmax(dim=-1)
        w = self.weight_dropout(w)
        # unfold1d: the K values around each position, zero beyond the sequence
        windows = F.pad(v, (0, 0, P, K - 1 - P)).unfold(1, K, 1)  # [B, N, D, K]
        windows = windows.reshape(B, N, self.M, D // self.M, K)
        return torch.einsum("bnhk,bnhrk->bnhr", w, windows).reshape(B, N, D)


class MUSE(nn.Module):
    """x: [B, N, D] (and a key padding mask [B, N], true = padding) -> [B, N, D]."""

    def __init__(self, D: int, M: int = 16, kernel_small: int = 3, kernel_wide: int = 15,
                 attention_dropout: float = 0.0, weight_dropout: float = 0.1,
                 dynamic_padding: bool = False, causal: bool = False):
        super().__init__()
        self.M, self.dynamic_padding, self.causal = M, dynamic_padding, causal
        # registration order = the compiled spec's: V, the two convolutions, the gates,
        # then Q, K and out_proj
        self.v_proj = nn.Linear(D, D)
        self.dynamics = nn.ModuleList([DynamicConv(D, M, kernel_small, weight_dropout, causal),
                                       DynamicConv(D, M, kernel_wide, weight_dropout, causal)])
        # (in a submodule: a module's own parameters would come before its submodules')
        self.gate = nn.ParameterDict({"dynamic_gate_para": nn.Parameter(torch.full((2,), 0.5))})
        self.q_proj = nn.Linear(D, D)
        self.k_proj = nn.Linear(D, D)
        self.out_proj = nn.Linear(2 * D, D)
        self.attention_dropout = nn.Dropout(attention_dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        d = D // self.M
        heads = lambda t: t.view(B, N, self.M, d).transpose(1, 2)  # noqa: E731
        v = self.v_proj(x)
        u = v.masked_fill(pad[..., None], 0) if self.dynamic_padding and pad is not None else v
        gate = self.gate["dynamic_gate_para"].softmax(dim=0)
        convolved = gate[0] * self.dynamics[0](u) + gate[1] * self.dynamics[1](u)
        q = heads(self.q_proj(x)) * d ** -0.5
        logits = q @ heads(self.k_proj(x)).transpose(-1, -2)
        if self.causal:  # the decoder's future mask
            future = torch.ones(N, N, dtype=torch.bool, device=x.device).triu(1)
            logits = logits.masked_fill(future, float("-inf"))
        if pad is not None:
            logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
        a = self.attention_dropout(logits.softmax(dim=-1))
        attended = (a @ heads(v)).transpose(1, 2).reshape(B, N, D)
        return self.out_proj(torch.cat([attended, convolved], dim=-1))
