"""Convolutional Block Attention Module: channel gate, then spatial gate.

Paper: Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
arXiv:1807.06521.
Official code: Jongchan/attention-module (MODELS/cbam.py, MODELS/model_resnet.py).
- Channel gate: one shared MLP Linear(C, C/r) -> ReLU -> Linear(C/r, C) (with biases)
  applied to the spatially average- and max-pooled vectors; the two outputs are summed
  before the sigmoid.
- Spatial gate: the channel-wise max map FIRST, then the mean map (ChannelPool), a k x k
  conv (k = 7, padding 3, no bias), BatchNorm2d(1, eps=1e-5, momentum=0.01), no ReLU,
  sigmoid. ResidualNet initialises this BN's weight to 0.
- The module returns the gated map; any residual belongs to the host block.
- pool, lp, lse: the channel gate's pool_types, ['avg', 'max'] ("both", their default),
  ['avg'] or ['max'] (the paper's Table 1) or none of the two, then 'lp' (their
  F.lp_pool2d(x, 2, (H, W)): the square root of the sum of squares) and 'lse' (their
  logsumexp_2d: the maximum taken out, log of the sum of exponentials, added back) if
  asked; no_spatial: their CBAM's channel gate alone.
- order: channel_first (their code, the paper's choice) or spatial_first, the paper's
  sequential spatial-then-channel arrangement (its §4.1 ablation of the arrangement): the
  spatial gate on x, the channel gate on the spatially gated map, its pooled descriptors
  taken from that map.
"""

import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.01  # official BasicConv: nn.BatchNorm2d(..., momentum=0.01)


class SpatialGate(nn.Module):
    """Their SpatialGate: [max, mean] over C (max first), k x k conv (no bias), BatchNorm
    (momentum 0.01, scale 0 at first: ResidualNet's init), no ReLU, sigmoid, x gated."""

    def __init__(self, k: int = 7, bn: bool = True):
        super().__init__()
        if k < 1 or k % 2 == 0:
            raise ValueError(f"CBAM: the spatial kernel k must be a positive odd integer, "
                             f"got {k}")
        self.conv = nn.Conv2d(2, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=BN_MOMENTUM) if bn else None
        if bn:
            nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        m = self.conv(pooled)  # [B, 1, H, W]
        return x * torch.sigmoid(self.bn(m) if self.bn is not None else m)


def logsumexp_2d(x: torch.Tensor) -> torch.Tensor:
    """Their logsumexp_2d: [B, C, H, W] -> [B, C], the maximum taken out first."""
    flat = x.flatten(2)
    s = flat.amax(dim=2, keepdim=True)
    return (s + (flat - s).exp().sum(dim=2, keepdim=True).log()).squeeze(2)


POOLS = {  # their pool types, each [B, C, H, W] -> [B, C]
    "avg": lambda x: F.avg_pool2d(x, x.shape[2:]).flatten(1),
    "max": lambda x: F.max_pool2d(x, x.shape[2:]).flatten(1),
    "lp": lambda x: F.lp_pool2d(x, 2, x.shape[2:]).flatten(1),
    "lse": logsumexp_2d,
}


class CBAM(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, C: int, r: int = 16, k: int = 7, bn: bool = True, pool: str = "both",
                 lp: bool = False, lse: bool = False, no_spatial: bool = False,
                 order: str = "channel_first"):
        super().__init__()
        if order not in ("channel_first", "spatial_first"):
            raise ValueError(f"CBAM: order is channel_first or spatial_first, not {order}")
        self.order = order
        self.pool_types = {"both": ["avg", "max"], "avg": ["avg"], "max": ["max"],
                           "none": []}[pool] + ["lp"] * lp + ["lse"] * lse
        hidden = C // r
        if hidden < 1:
            raise ValueError(f"CBAM: C // r must be >= 1, got C={C}, r={r}")
        # Registration order = state_dict order = the order the gates apply: fc1, fc2, the
        # spatial gate's conv and bn (spatial_first: the spatial gate's first).
        first = order == "spatial_first" and not no_spatial
        self.spatial = SpatialGate(k, bn) if first else None
        self.fc1 = nn.Linear(C, hidden)
        self.fc2 = nn.Linear(hidden, C)
        if not first and not no_spatial:
            self.spatial = SpatialGate(k, bn)  # registered now, after fc1 and fc2

    def shared_mlp(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(v)))

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """Each pooled descriptor through the SAME MLP, the outputs summed, x gated."""
        gate_c = None
        for pool_type in self.pool_types:  # in their order, summed as they go
            raw = self.shared_mlp(POOLS[pool_type](x))
            gate_c = raw if gate_c is None else gate_c + raw
        return x * torch.sigmoid(gate_c)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial is None:
            return self.channel_gate(x)
        if self.order == "spatial_first":
            return self.channel_gate(self.spatial(x))
        return self.spatial(self.channel_gate(x))  # the spatial gate on the channel-gated map


class ChannelGate(CBAM):
    """The channel gate alone (the spec's ChannelGate): their CBAM with no_spatial."""

    def __init__(self, C: int, r: int = 16, pool: str = "both", lp: bool = False,
                 lse: bool = False):
        super().__init__(C, r, pool=pool, lp=lp, lse=lse, no_spatial=True)
