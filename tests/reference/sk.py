"""Selective Kernel convolution (SK unit, M = 2 branches).

Paper: Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586 (§3.1,
Split, Fuse, Select). Official code: implus/SKNet (Caffe, models/sknet50.prototxt): the
branches are 3×3 grouped convolutions (group 32), the second dilated by 2, each followed by
BatchNorm and ReLU; fuse = sum → global average pool → 1×1 conv to d (no bias) → BatchNorm
→ ReLU; select = one 1×1 conv d → 2C (no bias), reshaped to [B, 2, C], softmax over the
branch axis; out = a₀·U₀ + a₁·U₁. Caffe's moving-average factor 0.95 is torch's momentum
0.05. d = max(C / r, L).
"""

import torch
from torch import nn


class SK(nn.Module):
    """x: [B, C, H, W] → the two branches mixed per channel."""

    def __init__(self, C: int, r: int = 16, L: int = 32, G: int = 32, stride: int = 1):
        super().__init__()
        d = max(C // r, L)
        self.C = C
        self.branch3 = nn.Sequential(nn.Conv2d(C, C, 3, stride, padding=1, groups=G, bias=False),
                                     nn.BatchNorm2d(C, momentum=0.05), nn.ReLU())
        self.branch5 = nn.Sequential(nn.Conv2d(C, C, 3, stride, padding=2, dilation=2,
                                               groups=G, bias=False),
                                     nn.BatchNorm2d(C, momentum=0.05), nn.ReLU())
        self.fc1 = nn.Conv2d(C, d, 1, bias=False)
        self.fc1_bn = nn.BatchNorm2d(d, momentum=0.05)
        self.fc2 = nn.Conv2d(d, 2 * C, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u0, u1 = self.branch3(x), self.branch5(x)
        s = (u0 + u1).mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
        z = torch.relu(self.fc1_bn(self.fc1(s)))  # [B, d, 1, 1]
        a = self.fc2(z).view(x.shape[0], 2, self.C, 1, 1).softmax(dim=1)  # over branches
        return a[:, 0] * u0 + a[:, 1] * u1
