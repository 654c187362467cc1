"""Relative attention of CoAtNet (multi-head, 2-D, pre-normalization).

Paper: Dai, Liu, Le, Tan, "CoAtNet: Marrying Convolution and Attention for All Data Sizes",
NeurIPS 2021, arXiv:2106.04803 (§2.1, Eq. 3): a translation-invariant scalar w_{i-j} per
relative position is added to the attention logits before the softmax,
    y_i = sum_j softmax_j(x_i^T x_j + w_{i-j}) x_j,
in the Transformer blocks with the usual multi-head q, k, v and output projections and
heads of 32 features.
Official code: none released by the authors. google-research/maxvit (Google Research, other
authors) states that it is built on the CoAtNet code; this reference follows its
`Attention` (maxvit/models/maxvit.py) with rel_attn_type "2d_multi_head" (a table
[M, 2H-1, 2W-1]) or "2d_single_head" (one table [2H-1, 2W-1] for every head), and its
`reindex_2d_einsum_lookup` / `generate_lookup_tensor` (maxvit/models/attention_utils.py):
q, k, v = biased projections to M heads of head_size, q scaled by head_size^-0.5, logits
q . k plus the table entry at the key's offset from the query (row k_h - q_h + R_h, column
k_w - q_w + R_w), softmax over the keys, a biased output projection to `out`. The lookup
is written out as per-axis one-hot tensors, as there; offsets farther than the table's
radii get 0 (the helper's behaviour with a smaller max_relative_position).

Deviations:
- The table has a fixed size (2 max_h - 1) x (2 max_w - 1) and is read on any map up to
  max_h x max_w; maxvit's layer builds it for the exact map size (equal when
  H = max_h, W = max_w). Its scale_ratio resizing of the table is not reproduced.
- Channels-first [B, C, H, W] with 1x1 convs where maxvit's code is channels-last with
  dense layers over [B, H*W, C] (the same maps).
- Attention dropout (dropatt; 0 by default) on the weights while training, as maxvit's.
"""

import torch
from torch import nn

REL_ATTN = ("multi_head", "single_head")


def _lookup(length: int, radius: int, like: torch.Tensor) -> torch.Tensor:
    """[length, length, 2 radius + 1]: entry [i, x, v] is 1 iff x - i + radius = v."""
    i = torch.arange(length, device=like.device)
    delta = i[None, :] - i[:, None]  # key x minus query i
    v = torch.arange(2 * radius + 1, device=like.device)
    return (delta[..., None] + radius == v).to(like.dtype)  # zeros where |delta| > radius


class CoAtNet(nn.Module):
    """x: [B, C, H, W] -> [B, out, H, W]."""

    def __init__(self, C: int, out: int | None = None, head_size: int = 32,
                 M: int | None = None, max_h: int = 14, max_w: int | None = None,
                 rel_attn: str = "multi_head", dropatt: float = 0.0):
        super().__init__()
        out = C if out is None else out
        M = out // head_size if M is None else M
        max_w = max_h if max_w is None else max_w
        if rel_attn not in REL_ATTN:
            raise ValueError(f"CoAtNet: rel_attn must be one of {REL_ATTN}, got {rel_attn!r}")
        if M < 1:
            raise ValueError(f"CoAtNet: no heads (out={out}, head_size={head_size})")
        self.M, self.head_size, self.max_h, self.max_w = M, head_size, max_h, max_w
        self.dropatt = dropatt
        self.multi_head = rel_attn == "multi_head"
        inner = M * head_size
        init = dict(std=0.02)  # the official initialisers: normal(0.02) kernels, zero biases
        # Registered in the compiled spec's order: q, k, the table, v, o.
        self.q = nn.Conv2d(C, inner, 1)
        self.k = nn.Conv2d(C, inner, 1)
        shape = (M,) if self.multi_head else ()
        # in a submodule: a module's own parameters come before its children's in state_dict
        self.attention = nn.ParameterDict({"relative_bias": nn.Parameter(
            torch.empty(*shape, 2 * max_h - 1, 2 * max_w - 1))})
        self.v = nn.Conv2d(C, inner, 1)
        self.o = nn.Conv2d(inner, out, 1)
        for conv in (self.q, self.k, self.v, self.o):
            nn.init.normal_(conv.weight, **init)
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.attention.relative_bias, **init)

    def reindexed_bias(self, H: int, W: int) -> torch.Tensor:
        """[M or 1, H*W, H*W]: the table entry of each (query, key) pair's offset."""
        table = self.attention.relative_bias
        table = table if self.multi_head else table[None]
        lh = _lookup(H, self.max_h - 1, table)  # [i, x, h]
        lw = _lookup(W, self.max_w - 1, table)  # [j, y, w]
        bias = torch.einsum("mhw,ixh->mixw", table, lh)
        bias = torch.einsum("mixw,jyw->mijxy", bias, lw)
        return bias.reshape(table.shape[0], H * W, H * W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        M, d = self.M, self.head_size

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, M*d, H, W] -> [B, M, HW, d]
            return t.reshape(B, M, d, H * W).transpose(-1, -2)

        q = heads(self.q(x)) * d ** -0.5
        k, v = heads(self.k(x)), heads(self.v(x))
        logits = q @ k.transpose(-1, -2) + self.reindexed_bias(H, W)  # [B, M, HW, HW]
        attn = nn.functional.dropout(logits.softmax(dim=-1), self.dropatt, self.training)
        y = (attn @ v).transpose(-1, -2).reshape(B, M * d, H, W)  # heads concatenated
        return self.o(y)

