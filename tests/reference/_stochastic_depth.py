"""Stochastic depth as the papers' code imports it (timm's drop_path), for the block
references (CrossFormer, GFNet, VOLO's Outlooker)."""

import torch


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """While training, each sample (index of the first axis) kept with probability 1 − p
    and scaled by 1 / (1 − p); the identity otherwise."""
    if not training or p == 0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep.div_(1 - p)
