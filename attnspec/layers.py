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
