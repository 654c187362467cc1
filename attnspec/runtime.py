"""What generated code calls at run time besides torch: input checks and masked attention.

Kept tiny and free of Python state so torch.compile(fullgraph=True) and torch.export
trace through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class InputShapeError(ValueError):
    """A tensor given to a compiled module does not fit the spec's declared axes."""


def check_input(x: torch.Tensor | None, name: str, axes: tuple[tuple[str, int | None], ...]):
    """Raise, naming the axis, when `x` does not have the declared rank and sizes."""
    if x is None:  # an optional input left out
        return x
    if x.dim() != len(axes):
        names = ", ".join(a for a, _ in axes)
        raise InputShapeError(f"input {name} must have {len(axes)} axes [{names}], "
                              f"got shape {tuple(x.shape)}")
    for i, (axis, size) in enumerate(axes):
        if size is not None and x.shape[i] != size:
            raise InputShapeError(f"input {name}: axis {axis} (dim {i}) has size "
                                  f"{x.shape[i]}, expected {size}")
    return x


def restrict(logits: torch.Tensor, pad: torch.Tensor | None, causal: bool,
             grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Ω_q as a fill: keys a query may not see get -inf before the normaliser. `grid`
    (H, W): criss-cross, the keys in the query's row or column (the query itself once)."""
    if grid is not None:
        h, w = grid
        where = torch.arange(h * w, device=logits.device)
        row, col = where // w, where % w
        cross = (row[:, None] == row[None, :]) | (col[:, None] == col[None, :])
        logits = logits.masked_fill(~cross, float("-inf"))
    if causal:
        nq, nk = logits.shape[-2], logits.shape[-1]
        future = torch.ones(nq, nk, dtype=torch.bool, device=logits.device).triu(1)
        logits = logits.masked_fill(future, float("-inf"))
    if pad is not None:  # [B, K] against [B, M, Q, K], or [B, M, K] for E3
        keys = pad.view(pad.shape[0], *[1] * (logits.dim() - 2), pad.shape[-1])
        logits = logits.masked_fill(keys, float("-inf"))
    return logits


def standardise(x: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    """(x − mean) / (std + eps) over `dims`, the standard deviation unbiased."""
    centred = x - x.mean(dims, keepdim=True)
    return centred / (x.std(dims, keepdim=True) + eps)


def criss_cross(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
    """Criss-cross attention on [B, C, H, W] maps (CCNet): each position attends to its
    column and its row, itself once. Only those HW·(H + W) energies are computed."""
    h = q.shape[2]
    column = torch.einsum("bchw,bcgw->bhwg", q, k) * scale  # keys (g, w)
    row = torch.einsum("bchw,bchg->bhwg", q, k) * scale  # keys (h, g)
    itself = torch.eye(h, dtype=torch.bool, device=q.device)[:, None, :]  # [H, 1, H]
    column = column.masked_fill(itself, float("-inf"))  # counted in the row already
    weights = torch.softmax(torch.cat([column, row], dim=-1), dim=-1)
    a_column, a_row = weights[..., :h], weights[..., h:]
    return (torch.einsum("bhwg,bcgw->bchw", a_column, v)
            + torch.einsum("bhwg,bchg->bchw", a_row, v))


def masked_sdpa(q, k, v, pad: torch.Tensor | None, causal: bool, scale: float | None):
    """scaled_dot_product_attention with an optional key padding mask (True = ignore)."""
    if pad is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    keep = ~pad[:, None, None, :]
    if causal:
        nq, nk = q.shape[-2], k.shape[-2]
        keep = keep & torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=scale)
