"""Axial attention.

Paper: Ho, Kalchbrenner, Weissenborn, Salimans, "Axial Attention in Multidimensional
Transformers", arXiv:1912.12180 (§3: attention along one axis of the tensor, independently
for the other axes' indices; the encoder's unmasked row and column layers in turn). The
authors' code is not public; this follows the paper's definitions with standard multi-head
attention in each layer: q, k, v, out projections with bias, M heads, 1/sqrt(D/M).
"""

import math

import torch
from torch import nn


class _AlongAxis(nn.Module):
    """Multi-head self-attention of x [B, H, W, D] along one axis (1: columns, 2: rows)."""

    def __init__(self, D: int, M: int, axis: int):
        super().__init__()
        self.M, self.axis = M, axis
        self.query = nn.Linear(D, D)
        self.key = nn.Linear(D, D)
        self.value = nn.Linear(D, D)
        self.output = nn.Linear(D, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis == 1:  # columns: attend along H, for each W
            return self._rows(x.transpose(1, 2)).transpose(1, 2)
        return self._rows(x)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """Attention along axis 2 of [B, R, L, D], each of the R rows on its own."""
        B, R, L, D = x.shape
        M, d = self.M, D // self.M

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, R, L, D] -> [B, R, M, L, d]
            return t.view(B, R, L, M, d).transpose(2, 3)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        a = (q @ k.transpose(-1, -2) / math.sqrt(d)).softmax(dim=-1)  # [B, R, M, L, L]
        return self.output((a @ v).transpose(2, 3).reshape(B, R, L, D))


class Row(_AlongAxis):
    def __init__(self, D: int, M: int = 8):
        super().__init__(D, M, axis=2)


class Column(_AlongAxis):
    def __init__(self, D: int, M: int = 8):
        super().__init__(D, M, axis=1)


class Axial(nn.Module):
    """The row layer, then the column layer: every position sees the whole map."""

    def __init__(self, D: int, M: int = 8):
        super().__init__()
        self.row = Row(D, M)
        self.column = Column(D, M)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.column(self.row(x))
