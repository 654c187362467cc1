"""The few modules attnspec builds that torch.nn lacks."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    """A learned scalar γ: y = γ·x. Generated code reads `gamma` directly."""

    def __init__(self, init: float = 0.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * x


class Affine(nn.Module):
    """x · w + b, one learned (w, b) per index of an axis (SGE's per-group scale and shift).
    Generated code reads `weight` and `bias` directly, viewed along the axis."""

    def __init__(self, size: int, weight: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((size,), float(weight)))
        self.bias = nn.Parameter(torch.full((size,), float(bias)))
