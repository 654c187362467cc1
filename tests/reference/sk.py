"""Selective Kernel convolution (SK unit, M = 2 branches, or 3 as the paper's ablation).

Paper: Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586 (§3.1,
Split, Fuse, Select). Official code: implus/SKNet (Caffe, models/sknet50.prototxt): the
branches are 3×3 grouped convolutions (group 32), the second dilated by 2, each followed by
BatchNorm and ReLU; fuse = sum → global average pool → 1×1 conv to d (no bias) → BatchNorm
→ ReLU; select = one 1×1 conv d → 2C (no bias), reshaped to [B, 2, C], softmax over the
branch axis; out = a₀·U₀ + a₁·U₁. Caffe's moving-average factor 0.95 is torch's momentum
0.05. d = max(C / r, L). With M = 3 (SK[3, G, r], the paper's kernel ablation) a third
branch, the 3×3 dilated by 3 for a 7×7, and select gives [B, 3, C].
"""

import torch
from torch import nn


class SK(nn.Module):
    """x: [B, C, H, W] → the two branches mixed per channel."""

    def __init__(self, C: int, r: int = 16, L: int = 32, G: int = 32, stride: int = 1,
                 M: int = 2):
        super().__init__()
        if M not in (2, 3):
            raise ValueError(f"SK: M is 2 or 3 branches, got {M}")
        d = max(C // r, L)
        self.C, self.M = C, M
        # branch i: a 3×3 dilated by i (kernel 2i + 1), registered in that order
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(C, C, 3, stride, padding=i, dilation=i, groups=G,
                                    bias=False),
                          nn.BatchNorm2d(C, momentum=0.05), nn.ReLU())
            for i in range(1, M + 1))
        self.fc1 = nn.Conv2d(C, d, 1, bias=False)
        self.fc1_bn = nn.BatchNorm2d(d, momentum=0.05)
        self.fc2 = nn.Conv2d(d, M * C, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = [branch(x) for branch in self.branches]
        s = sum(u).mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
        z = torch.relu(self.fc1_bn(self.fc1(s)))  # [B, d, 1, 1]
        a = self.fc2(z).view(x.shape[0], self.M, self.C, 1, 1).softmax(dim=1)  # over branches
        return sum(a[:, i] * u[i] for i in range(self.M))
