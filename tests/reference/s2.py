"""S²-Attention: the spatial-shift and split-attention block of S²-MLPv2.

Paper: Yu, Li, Cai, Sun, Li, "S²-MLPv2: Improved Spatial-Shift MLP Architecture for Vision",
arXiv 2021, arXiv:2108.01072 (§3: feature expansion, the two spatial shifts, split attention,
and the paper's pseudocode of spatial_shift1 / spatial_shift2 / split attention).
Official code: none released by the authors. The constructor mirrors the zoos'
re-implementation (xmu-xiaoma666/External-Attention-pytorch, model/attention/S2Attention.py,
class `S2Attention(channels=512)`), which follows the paper's pseudocode.

Computation, on a channels-last map x [B, H, W, C]:
- mlp1 = Linear(C, 3C); the result is cut into three parts of C channels, in order;
- part 1 through spatial_shift1: channel quarters [0, C/4) moved +1 along axis 1 (H),
  [C/4, C/2) moved -1 along H, [C/2, 3C/4) +1 along axis 2 (W), [3C/4, C) -1 along W;
  the first (last) row or column keeps its own values, as the paper's in-place copy
  x[:, 1:] = x[:, :-1] leaves it; the paper calls axis 1 "w", the zoo feeds it H (it
  permutes [B, C, H, W] to [B, H, W, C]), as we do: the operation is the same by position.
  A shift by one place, as the paper's text says, i.e. the pseudocode with its right-hand
  sides read before writing. Run literally in eager PyTorch (the zoo's code), the +1
  copies overlap their source and cascade: every row (column) gets the first one's values;
  that is an artefact of torch's in-place copy, not the paper's operation, and not followed;
- part 2 through spatial_shift2: the same with the axes swapped (W first, then H);
- part 3 unchanged;
- split attention: a = sum over the parts and over all H·W positions (the paper's 1ᵀX_k,
  and the pseudocode's sum; not a mean), hat_a = Linear(C, 3C)(GELU(Linear(C, C)(a))),
  both without bias (the zoo's SplitAttention), reshaped [B, 3, C] (part-major), softmax
  over the 3 parts, the parts' weighted sum;
- mlp2 = Linear(C, C).
Deviations: the input is channels-last [B, H, W, C] (the zoo takes [B, C, H, W] and
permutes it in and out); `channels` is required (the zoo defaults it to 512,
the paper sets it per stage); the zoo builds its SplitAttention with its default 512 channels
whatever `channels` is (a bug), here it has `channels`; the shifts are written out of place
(same values); parameters are registered mlp1, split attention, mlp2 (the order of use, the
compiled spec's), not the zoo's mlp1, mlp2, split attention. C must be a multiple of 4.
"""

import torch
from torch import nn


def _shift(t: torch.Tensor, dim: int, by: int) -> torch.Tensor:
    """t moved one place along dim (by = +1: out[i] = t[i - 1]); the edge keeps its values."""
    n = t.shape[dim]
    if by > 0:
        return torch.cat([t.narrow(dim, 0, 1), t.narrow(dim, 0, n - 1)], dim)
    return torch.cat([t.narrow(dim, 1, n - 1), t.narrow(dim, n - 1, 1)], dim)


def spatial_shift(x: torch.Tensor, first: int, second: int) -> torch.Tensor:
    """Quarters of the last axis shifted +1 / -1 along `first`, then +1 / -1 along `second`."""
    q = x.shape[-1] // 4
    a, b, c, d = x[..., :q], x[..., q:2 * q], x[..., 2 * q:3 * q], x[..., 3 * q:]
    return torch.cat([_shift(a, first, 1), _shift(b, first, -1),
                      _shift(c, second, 1), _shift(d, second, -1)], dim=-1)


class SplitAttention(nn.Module):
    def __init__(self, channels: int, k: int = 3):
        super().__init__()
        self.k = k
        self.mlp1 = nn.Linear(channels, channels, bias=False)
        self.gelu = nn.GELU()
        self.mlp2 = nn.Linear(channels, channels * k, bias=False)

    def forward(self, x_all: torch.Tensor) -> torch.Tensor:
        """x_all: [B, K, H, W, C] -> [B, H, W, C]."""
        B, K, H, W, C = x_all.shape
        a = x_all.sum(dim=(1, 2, 3))  # [B, C]
        hat_a = self.mlp2(self.gelu(self.mlp1(a))).reshape(B, self.k, C)
        bar_a = hat_a.softmax(dim=1)  # across the parts
        return (bar_a[:, :, None, None, :] * x_all).sum(dim=1)


class S2Attention(nn.Module):
    """x: [B, H, W, channels] -> the same shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp1 = nn.Linear(channels, channels * 3)
        self.split_attention = SplitAttention(channels)
        self.mlp2 = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[-1]
        u = self.mlp1(x)
        x1 = spatial_shift(u[..., :C], 1, 2)  # spatial_shift1: H, then W
        x2 = spatial_shift(u[..., C:2 * C], 2, 1)  # spatial_shift2: W, then H
        x3 = u[..., 2 * C:]
        return self.mlp2(self.split_attention(torch.stack([x1, x2, x3], dim=1)))
