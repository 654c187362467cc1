"""Squeeze-and-Excitation block.

Paper: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507.
Official code: hujie-frank/SENet (Caffe prototxts): global average pool, 1x1 conv down
(with bias), ReLU, 1x1 conv up (with bias), sigmoid, then the map is rescaled channel-wise.
A 1x1 conv on a 1x1 map is a Linear layer, which is what this reference uses.
"""

import torch
from torch import nn


class SE(nn.Module):
    """y = x * sigmoid(fc2(relu(fc1(mean_HW(x))))), x: [B, C, H, W]."""

    def __init__(self, C: int, r: int = 16, bias: bool = True):
        super().__init__()
        hidden = C // r
        if hidden < 1:
            raise ValueError(f"SE: C // r must be >= 1, got C={C}, r={r}")
        self.fc1 = nn.Linear(C, hidden, bias=bias)  # squeeze: C -> C/r
        self.fc2 = nn.Linear(hidden, C, bias=bias)  # excite:  C/r -> C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(2, 3))  # [B, C], the "squeeze"
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))  # [B, C]
        return x * s[:, :, None, None]
