"""Axial attention.

Paper: Ho, Kalchbrenner, Weissenborn, Salimans, "Axial Attention in Multidimensional
Transformers", arXiv:1912.12180 (§3: attention along one axis of the tensor, independently
for the other axes' indices; the encoder's unmasked row and column layers in turn), and the
authors' code (google-research/google-research, axial/transformers.py: AttnBlock,
TransformerBlock, MlpBlock; axial/nn.py: attn_nd, nonlinearity): q, k, v, out projections
with bias, M heads, 1/sqrt(D/M); `masked` adds their -1e9 above the diagonal along the axis.
"""

import math

import torch
from torch import nn


class _AlongAxis(nn.Module):
    """Multi-head self-attention of x [B, H, W, D] along one axis (1: columns, 2: rows)."""

    def __init__(self, D: int, M: int, axis: int, masked: bool = False):
        super().__init__()
        self.M, self.axis, self.masked = M, axis, masked
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
        w = q @ k.transpose(-1, -2) / math.sqrt(d)  # [B, R, M, L, L]
        if self.masked:  # attn_nd: w * mask - 1e9 * (1 - mask), mask = query >= key
            mask = torch.ones(L, L, dtype=torch.bool, device=x.device).tril().to(w.dtype)
            w = w * mask - 1e9 * (1 - mask)
        a = w.softmax(dim=-1)
        return self.output((a @ v).transpose(2, 3).reshape(B, R, L, D))


class Row(_AlongAxis):
    def __init__(self, D: int, M: int = 16, masked: bool = False):
        super().__init__(D, M, axis=2, masked=masked)


class Column(_AlongAxis):
    def __init__(self, D: int, M: int = 16, masked: bool = False):
        super().__init__(D, M, axis=1, masked=masked)


class AxialTransformerBlock(nn.Module):
    """TransformerBlock: x + drop(attn(LN(x))), then x + drop(mlp(LN(x))).

    The MLP is MlpBlock: Dense(D, hdim_factor * D), x * sigmoid(1.702 x), Dense back to D.
    Parameters in the compiled spec's order (first LayerNorm, attention, second LayerNorm,
    MLP); the authors' order differs, and copy_weights goes by position.
    """

    def __init__(self, D: int, M: int = 16, axis: str = "row", masked: bool = False,
                 hdim_factor: int = 1, dropout: float = 0.0):
        super().__init__()
        self.layernorm_attn = nn.LayerNorm(D, eps=1e-5)
        self.attn = (Row if axis == "row" else Column)(D, M, masked)
        self.layernorm_mlp = nn.LayerNorm(D, eps=1e-5)
        self.proj_in = nn.Linear(D, D * hdim_factor)
        self.proj_out = nn.Linear(D * hdim_factor, D)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.layernorm_attn(x)))
        h = self.proj_in(self.layernorm_mlp(x))
        return x + self.drop(self.proj_out(h * torch.sigmoid(1.702 * h)))


class Axial(nn.Module):
    """The row layer, then the column layer: every position sees the whole map."""

    def __init__(self, D: int, M: int = 16):
        super().__init__()
        self.row = Row(D, M)
        self.column = Column(D, M)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.column(self.row(x))
