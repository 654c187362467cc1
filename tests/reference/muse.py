"""MUSE: parallel multi-scale attention (the encoder's self-attention form).

Paper: Zhao, Sun, Xu, Zhang, Luo, "MUSE: Parallel Multi-Scale Attention for Sequence to
Sequence Learning", 2019, arXiv:1911.09483, §2: self-attention and depthwise-separable
convolutions run in parallel on one shared value projection, the convolution kernels
(1, 3, 5; kernel 1 is a pointwise convolution alone) mixed by learned weights that a
softmax normalises, and the branches added.
The widely copied version (MUSEAttention) computes the same sum but replaces its mixing
weights by `nn.Parameter(softmax(...))` inside forward, a new parameter each call that the
optimiser never sees and that compounds the softmax; here the softmax is applied to the
registered parameter in forward, as the paper's weights intend. No attention dropout.
"""

import math

import torch
from torch import nn


class _Separable(nn.Module):
    def __init__(self, d: int, k: int):
        super().__init__()
        self.depthwise = nn.Conv1d(d, d, k, padding=k // 2, groups=d)
        self.pointwise = nn.Conv1d(d, d, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class MUSE(nn.Module):
    """x: [B, N, D] -> [B, N, D]."""

    def __init__(self, D: int, M: int = 8):
        super().__init__()
        if D % M:
            raise ValueError(f"MUSE: M={M} heads must divide D={D}")
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
