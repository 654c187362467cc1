"""Pyramid squeeze attention: the PSA module of EPSANet.

Paper: Zhang, Zu, Lu, Zou, Meng, "EPSANet: An Efficient Pyramid Squeeze Attention Block on
Convolutional Neural Network", ACCV 2022, arXiv:2105.14447 (§3, the SPC module, SEWeight,
the softmax across scales, the weighted concatenation).
Official code: murufeng/EPSANet, models/epsanet.py (`PSAModule`) and
models/SE_weight_module.py (`SEWeightModule`):
- four bias-free Conv2d(inplans, planes // 4) on the whole input, kernels conv_kernels
  (3, 5, 7, 9) with padding k // 2, groups conv_groups (1, 4, 8, 16), each with the
  module's stride (2 in the first block of a stage);
- ONE SEWeightModule(planes // 4), reduction 16, stored as `self.se` and applied to each of
  the four branches (the branches share its weights; there are not four SE modules):
  AdaptiveAvgPool2d(1) -> Conv2d 1x1 (with bias) to c // reduction -> ReLU -> Conv2d 1x1
  (with bias) back to c -> sigmoid;
- the four sigmoid gates viewed as [B, 4, c, 1, 1] and softmaxed over the branch axis (so the
  softmax acts on sigmoid outputs, as in the code);
- each branch times its weights, and the weighted branches concatenated by a loop that
  prepends each new one: the output's channels are branch 4, 3, 2, 1 in that order.
Deviations: kernels must be odd (with an even kernel the authors' padding k // 2 makes the
branch one pixel larger than the input). Written without in-place operations and with every
layer registered.
"""

import torch
from torch import nn


class SEWeight(nn.Module):
    """The authors' SEWeightModule: sigmoid(fc2(relu(fc1(avgpool(x))))), [B, c, 1, 1]."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class EPSA(nn.Module):
    """x: [B, C, H, W] -> [B, 4 * (planes // 4), H, W]."""

    def __init__(self, C: int, planes: int | None = None, k1: int = 3, k2: int = 5,
                 k3: int = 7, k4: int = 9, g1: int = 1, g2: int = 4, g3: int = 8,
                 g4: int = 16, stride: int = 1, reduction: int = 16):
        super().__init__()
        planes = C if planes is None else planes
        c = planes // 4
        self.split_channel = c

        def branch(k: int, g: int) -> nn.Conv2d:
            return nn.Conv2d(C, c, kernel_size=k, stride=stride, padding=k // 2, groups=g,
                             bias=False)

        self.conv_1 = branch(k1, g1)
        self.conv_2 = branch(k2, g2)
        self.conv_3 = branch(k3, g3)
        self.conv_4 = branch(k4, g4)
        self.se = SEWeight(c, reduction)  # one module, shared by the four branches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, c = x.shape[0], self.split_channel
        branches = [self.conv_1(x), self.conv_2(x), self.conv_3(x), self.conv_4(x)]
        H, W = branches[0].shape[2:]
        feats = torch.cat(branches, dim=1).view(B, 4, c, H, W)
        gates = torch.cat([self.se(f) for f in branches], dim=1).view(B, 4, c, 1, 1)
        weighted = feats * gates.softmax(dim=1)  # softmax across the 4 branches
        out = weighted[:, 0]
        for i in range(1, 4):  # the authors' loop: each new branch goes in front
            out = torch.cat((weighted[:, i], out), dim=1)
        return out
