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


class Learned(nn.Module):
    """A tensor of a fixed shape (`learned(K)` in a spec): `init` everywhere at first, or
    drawn from N(0, std²) with init = "normal", and with init = "unit" then scaled to unit
    length along its first axis (EMANet's bases, vectors of C features); a parameter, or
    with trainable = False a buffer (EMANet's bases, moved by the training loop). Generated
    code reads `weight`."""

    def __init__(self, shape: tuple[int, ...], init: float | str = 0.0, std: float = 1.0,
                 trainable: bool = True):
        super().__init__()
        if init in ("normal", "unit"):
            value = torch.randn(shape) * std
            if init == "unit":
                value = value / value.norm(dim=0, keepdim=True)
        else:
            value = torch.full(shape, float(init))
        if trainable:
            self.weight = nn.Parameter(value)
        else:
            self.register_buffer("weight", value)


class DropPath(nn.Module):
    """Stochastic depth: while training, each sample (index of the first axis) is zeroed
    with probability p and the others scaled by 1 / (1 − p), as timm's drop_path (which
    the papers' code imports); the identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Bias(nn.Module):
    """A learned vector, zero at first: E3 on memory slots (a score per slot and head).
    Generated code reads `bias` directly."""

    def __init__(self, size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(size))


class GroupedLinear(nn.Module):
    """A linear map on the last axis whose features are split into `groups` blocks, each
    mapped on its own (a block-diagonal weight, stored as the blocks: [out, in / groups]).
    With one output per group it is a per-group dot product with a learned vector."""

    def __init__(self, in_features: int, out_features: int, groups: int, bias: bool = True):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_features, in_features // groups))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # as nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.groups
        blocks = self.weight.unflatten(0, (g, -1))  # [g, out/g, in/g]
        y = torch.einsum("...gi,goi->...go", x.unflatten(-1, (g, -1)), blocks).flatten(-2)
        return y if self.bias is None else y + self.bias
