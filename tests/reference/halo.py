"""Blocked local self-attention with haloes (HaloNet's attention layer).

Paper: Vaswani, Ramachandran, Srinivas, Parmar, Hechtman, Shlens, "Scaling Local
Self-Attention for Parameter Efficient Visual Backbones", CVPR 2021, arXiv:2103.12731
(§2, Fig. 1: "The image is first blocked into non-overlapping [b, b, c] images from which
the queries are computed. The subsequent haloing step then extracts a [b + 2h, b + 2h, c]
memory around each of the blocks which linearly transform to keys and values. The
spatial dimensions after attention are the same as the queries."; relative position
embeddings in the logits).
Official code: none released. What the paper's readable text leaves open is settled as
the authors' own related code settles it:
- The relative logits: q · r_h(Δh) + q · r_w(Δw) for the key's offset (Δh, Δw) from the
  query, one table of head-width vectors per axis shared by the heads, q scaled by
  d^-0.5 before both products: the relative-position attention of BoTNet (Srinivas,
  Lin, Parmar, Shlens, Abbeel, Vaswani 2021, its Fig. 4: R_h + R_w) and Attention
  Augmented Convolutional Networks (Bello, Zoph, Vaswani, Shlens, Le 2019), the same
  authors' group. The tables hold every offset a window holds, |Δ| <= b + h - 1.
- The window's positions beyond the image: `edge="zeros"` (default) pads the projected
  keys and values with zeros and attends them (their logit is the relative term alone);
  `edge="mask"` leaves them out, as tensor2tensor's local_attention_2d (Vaswani, Parmar
  et al.'s blocked local attention of the Image Transformer) masks its zero-padded keys.
  The padding follows the projections, so with qkv_bias the padded keys are zeros, not
  the bias.
- Maps whose sides are not multiples of b are padded to whole blocks at the end (as
  local_attention_2d pads its queries), the result cut back.
Written as Fig. 1 describes it: the queries blocked by a reshape, each block's memory
cut out by F.unfold (kernel b + 2h, stride b, padding h), one attention per block. No
output projection: the heads are concatenated (the layer sits in a bottleneck block whose
next 1x1 convolution mixes them).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

EDGES = ("zeros", "mask")


class HaloAttention(nn.Module):
    """x: [B, C, H, W] -> [B, out, H, W]."""

    def __init__(self, C: int, out: int | None = None, block_size: int = 8,
                 halo_size: int = 3, M: int = 8, dim_head: int | None = None,
                 qkv_bias: bool = False, edge: str = "zeros", relative: bool = True):
        super().__init__()
        out = C if out is None else out
        if edge not in EDGES:
            raise ValueError(f"HaloAttention: edge must be one of {EDGES}, got {edge!r}")
        self.M, self.dv = M, out // M
        self.dk = self.dv if dim_head is None else dim_head
        self.b, self.h, self.edge = block_size, halo_size, edge
        self.radius = block_size + halo_size - 1  # the farthest offset a window holds
        # Registered in the compiled spec's order: q, k, the relative tables, v.
        self.q = nn.Conv2d(C, M * self.dk, 1, bias=qkv_bias)
        self.k = nn.Conv2d(C, M * self.dk, 1, bias=qkv_bias)
        # [d, axis (height, width), offset + radius]: the spec's linear weight, reshaped;
        # in a submodule, as a module's own parameters come before its children's
        self.embeddings = nn.ParameterDict({"relative": nn.Parameter(
            torch.randn(self.dk, 2, 2 * self.radius + 1) * self.dk ** -0.5)} if relative else {})
        self.v = nn.Conv2d(C, M * self.dv, 1, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        M, b, h = self.M, self.b, self.h
        s = b + 2 * h
        nh, nw = math.ceil(H / b), math.ceil(W / b)
        whole = (0, nw * b - W, 0, nh * b - H)  # to whole blocks, at the end

        q = F.pad(self.q(x) * self.dk ** -0.5, whole)
        q = q.view(B, M, self.dk, nh, b, nw, b).permute(0, 1, 3, 5, 4, 6, 2)
        q = q.reshape(B, M, nh * nw, b * b, self.dk)  # [B, M, blocks, b*b, d]

        def memory(t: torch.Tensor, d: int) -> torch.Tensor:  # the haloing step
            cols = F.unfold(F.pad(t, whole), kernel_size=s, stride=b, padding=h)
            return cols.view(t.shape[0], -1, d, s * s, nh * nw).permute(0, 1, 4, 3, 2)

        k, v = memory(self.k(x), self.dk), memory(self.v(x), self.dv)  # [B, M, blocks, s*s, d]
        logits = q @ k.transpose(-1, -2)  # [B, M, blocks, b*b, s*s]
        if "relative" in self.embeddings:
            table = self.embeddings["relative"]
            i, j = torch.arange(b), torch.arange(s)
            offset = j[None, :] - h - i[:, None] + self.radius  # key j's from query i: [b, s]
            r_h, r_w = table[:, 0][:, offset], table[:, 1][:, offset]
            grid = q.view(B, M, nh * nw, b, b, self.dk)
            l_h = torch.einsum("bmnxyd,dxk->bmnxyk", grid, r_h)  # [.., b, b, s]: by key row
            l_w = torch.einsum("bmnxyd,dyl->bmnxyl", grid, r_w)  # by key column
            logits = logits + (l_h[..., :, None] + l_w[..., None, :]).flatten(-2).flatten(3, 4)
        if self.edge == "mask":
            on_map = memory(x.new_ones(1, 1, H, W), 1)[0, 0, :, :, 0]  # [blocks, s*s]
            logits = logits.masked_fill(on_map[:, None, :] == 0, float("-inf"))
        y = logits.softmax(dim=-1) @ v  # [B, M, blocks, b*b, dv]
        y = y.view(B, M, nh, nw, b, b, self.dv).permute(0, 1, 6, 2, 4, 3, 5)
        return y.reshape(B, M * self.dv, nh * b, nw * b)[:, :, :H, :W]
