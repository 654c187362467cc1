"""Deformable multi-head attention of DAT (the Deformable Attention Transformer).

Paper: Xia, Pan, Song, Li, Huang, "Vision Transformer with Deformable Attention", CVPR
2022, arXiv:2201.00520 (§3.2, Fig. 2 and Eqs. 7-9). Follows the authors' code,
LeapLabTHU/DAT, models/dat_blocks.py, class DAttentionBaseline, at commit 42b489e (the
CVPR 2022 release: constructor (q_size, kv_size, n_heads, n_head_channels, n_groups,
attn_drop, proj_drop, stride, offset_range_factor, use_pe, dwc_pe, no_off, fixed_pe,
stage_idx), the offset kernel [9, 7, 5, 3][stage_idx], pixel-centre reference points divided
by n, offsets bounded by factor / n, a tanh of the points for a negative factor). The later
file (commits 2624e9c, 2f31405: `ksize`, `log_cpb`, points divided by n − 1, a clamp instead
of the tanh) belongs to the DAT++ follow-up and is not followed.

On x [B, C, H, W], C = n_heads · n_head_channels, G = n_groups:
- q = proj_q(x) (1×1 conv). The offset network, one set of weights for every group, reads
  each group's Gc = C / G channels of q: a depth-wise k × k conv of stride `stride`
  (padding k // 2; Hk × Wk = ⌈H / stride⌉ × ⌈W / stride⌉ outputs), LayerNorm over the Gc
  channels, GELU, a 1×1 conv to 2 channels without bias: offsets (Δy, Δx) per point.
- offset_range_factor s > 0: Δ = tanh(Δ) · s · (1 / Hk, 1 / Wk); s ≤ 0: Δ unbounded.
- reference points: the key grid's pixel centres, normalised, p = (i + ½) / n · 2 − 1.
  Sampling points: p + Δ (s ≥ 0) or tanh(p + Δ) (s < 0); no_off sets Δ = 0.
- each group's channels of x are sampled there (F.grid_sample, bilinear, zeros padding,
  align_corners=True, (y, x) flipped to grid_sample's (x, y)): x̃ [B, C, Hk·Wk].
- k = proj_k(x̃), v = proj_v(x̃) (1×1 convs); per head of n_head_channels:
  logits q·k · n_head_channels^−½.
- use_pe (the default): dwc_pe adds a depth-wise 3×3 conv of q to the attended values
  (before proj_out); fixed_pe adds a learned bias per head and (query, key) pair;
  otherwise (the paper's deformable relative position bias, §3.2) a learned table per head
  [2·q_h − 1, 2·q_w − 1] is sampled (bilinear, align_corners=True) at the displacement
  (query's pixel-centre coordinates − sampling point) · ½, heads split as (group, head in
  group): the bias added to the logits.
- softmax over the Hk·Wk keys, attn_drop, the weighted sum of v, proj_out (1×1 conv),
  proj_drop.
Parameters are registered in the order the spec (specs/dat.attn) creates them: proj_q,
conv_offset (depth-wise weight and bias, LayerNorm, 1×1), proj_k, proj_v, the position
table or conv (use_pe only), proj_out. The authors' __init__ has conv_offset first and
rpe_table last (as a bare Parameter it would even come before every submodule here): the
same tensors, another order.

Deviations from the authors' code, and why:
- forward returns y only; theirs also returns the sampling points and reference points
  (for their visualisation), [B, G, Hk, Wk, 2] each.
- device/dtype agnostic: their offset range torch.tensor([1 / Hk, 1 / Wk]) is float32 on
  any input (a float64 input gets 1/7 rounded to float32, ~1e-8 off); here it has x's
  dtype. No einops. Dropout is not in place (theirs is: the same values, but an in-place
  dropout of the softmax breaks its backward while training).
- no_off: their `offset = offset.fill(0.0)` raises AttributeError (torch has no
  Tensor.fill); here Δ is multiplied by 0 (the later file's intent, `fill_(0.0)`: the same
  points, the offset network's parameters still registered, their gradient zero).
- fixed_pe: their forward reads the undefined `self.n_sample` (AttributeError), and their
  table [n_heads, q_h·q_w, kv_h·kv_w] with kv_size = q_size (as DAT builds the module) fits
  the keys only at stride 1. Here the table is [n_heads, q_h·q_w, Hk·Wk] with Hk × Wk the
  key grid of a q_h × q_w map (the later file's kv_size = q_size // stride): the same at
  stride 1, and the evident intent otherwise. kv_size is not a parameter: the position
  table needs kv_size = q_size and the fixed table the key grid.
- the position tables need an input of q_h × q_w (their reshape fails otherwise, or for
  swapped sides silently reads the table in another shape): a ValueError here.
- n_groups defaults to n_heads // 4 and n_head_channels to 32 (every DAT model: groups
  [-, -, 3, 6] for heads [-, -, 12, 24], 32 channels per head); offset_range_factor 2,
  stride 1, use_pe true and stage_idx 2 are DAT-T's third stage (configs/dat_tiny.yaml).
"""

import torch
import torch.nn.functional as F
from torch import nn


class _LayerNormProxy(nn.Module):
    """LayerNorm over the channel axis of [N, C, H, W] (the authors' LayerNormProxy)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _Table(nn.Module):
    """A learned table as a submodule, so that it takes its place in state_dict's order."""

    def __init__(self, *shape: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(*shape))
        nn.init.trunc_normal_(self.weight, std=0.01)


def _pixel_centres(n_h: int, n_w: int, like: torch.Tensor) -> torch.Tensor:
    """[n_h, n_w, 2]: (y, x) of each pixel's centre, normalised to (−1, 1) (the authors'
    _get_ref_points: linspace(0.5, n − 0.5, n) / n · 2 − 1), in like's dtype."""
    ys = torch.linspace(0.5, n_h - 0.5, n_h, dtype=like.dtype, device=like.device)
    xs = torch.linspace(0.5, n_w - 0.5, n_w, dtype=like.dtype, device=like.device)
    ref_y, ref_x = torch.meshgrid(ys / n_h * 2 - 1, xs / n_w * 2 - 1, indexing="ij")
    return torch.stack((ref_y, ref_x), -1)


class DAttention(nn.Module):
    """x: [B, n_heads · n_head_channels, H, W] → the same shape."""

    def __init__(self, q_h: int, q_w: int, n_heads: int, n_head_channels: int = 32,
                 n_groups: int | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 stride: int = 1, offset_range_factor: float = 2.0, use_pe: bool = True,
                 dwc_pe: bool = False, no_off: bool = False, fixed_pe: bool = False,
                 stage_idx: int = 2):
        super().__init__()
        n_groups = n_heads // 4 if n_groups is None else n_groups
        if n_groups < 1 or n_heads % n_groups:
            raise ValueError(f"DAttention: n_groups={n_groups} must divide n_heads={n_heads}")
        if not 0 <= stage_idx <= 3:
            raise ValueError(f"DAttention: stage_idx must be 0 to 3, got {stage_idx}")
        self.q_h, self.q_w = q_h, q_w
        self.n_heads, self.n_head_channels, self.n_groups = n_heads, n_head_channels, n_groups
        self.nc = n_heads * n_head_channels
        self.n_group_channels = self.nc // n_groups
        self.n_group_heads = n_heads // n_groups
        self.scale = n_head_channels ** -0.5
        self.stride = stride
        self.offset_range_factor = offset_range_factor
        self.use_pe, self.dwc_pe, self.no_off, self.fixed_pe = use_pe, dwc_pe, no_off, fixed_pe
        self.attn_drop, self.proj_drop = attn_drop, proj_drop
        kk = (9, 7, 5, 3)[stage_idx]
        gc = self.n_group_channels

        self.proj_q = nn.Conv2d(self.nc, self.nc, 1)
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gc, gc, kk, stride, kk // 2, groups=gc),
            _LayerNormProxy(gc),
            nn.GELU(),
            nn.Conv2d(gc, 2, 1, bias=False),
        )
        self.proj_k = nn.Conv2d(self.nc, self.nc, 1)
        self.proj_v = nn.Conv2d(self.nc, self.nc, 1)
        # the key grid of a q_h × q_w map: ⌈q / stride⌉ (the offset conv's output size)
        self.kv_h, self.kv_w = (q_h - 1) // stride + 1, (q_w - 1) // stride + 1
        self.rpe_table: nn.Module | None = None
        if use_pe:
            if dwc_pe:
                self.rpe_table = nn.Conv2d(self.nc, self.nc, 3, 1, 1, groups=self.nc)
            elif fixed_pe:
                self.rpe_table = _Table(n_heads, q_h * q_w, self.kv_h * self.kv_w)
            else:
                self.rpe_table = _Table(n_heads, 2 * q_h - 1, 2 * q_w - 1)
        self.proj_out = nn.Conv2d(self.nc, self.nc, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if C != self.nc:
            raise ValueError(f"DAttention: x has {C} channels, expected "
                             f"n_heads · n_head_channels = {self.nc}")
        G, gc, M, c, gh = (self.n_groups, self.n_group_channels, self.n_heads,
                           self.n_head_channels, self.n_group_heads)
        table_pe = self.use_pe and not self.dwc_pe
        if table_pe and (H, W) != (self.q_h, self.q_w):
            raise ValueError(f"DAttention: the position table is built for a "
                             f"{self.q_h}×{self.q_w} map, got {H}×{W}")

        q = self.proj_q(x)
        offset = self.conv_offset(q.reshape(B * G, gc, H, W))  # [B·G, 2, Hk, Wk]
        Hk, Wk = offset.shape[2], offset.shape[3]
        ns = Hk * Wk
        if self.offset_range_factor > 0:
            rng = torch.tensor([1.0 / Hk, 1.0 / Wk], dtype=x.dtype, device=x.device)
            offset = offset.tanh().mul(rng.reshape(1, 2, 1, 1)).mul(self.offset_range_factor)
        offset = offset.permute(0, 2, 3, 1)  # [B·G, Hk, Wk, 2]: (Δy, Δx)
        reference = _pixel_centres(Hk, Wk, x)  # [Hk, Wk, 2]
        if self.no_off:
            offset = offset.mul(0.0)
        pos = offset + reference
        if self.offset_range_factor < 0:
            pos = pos.tanh()

        x_sampled = F.grid_sample(x.reshape(B * G, gc, H, W), pos.flip(-1), mode="bilinear",
                                  padding_mode="zeros", align_corners=True)  # [B·G, gc, Hk, Wk]
        x_sampled = x_sampled.reshape(B, C, 1, ns)

        q_h = q.reshape(B * M, c, H * W)
        k = self.proj_k(x_sampled).reshape(B * M, c, ns)
        v = self.proj_v(x_sampled).reshape(B * M, c, ns)
        attn = torch.einsum("bcm,bcn->bmn", q_h, k).mul(self.scale)  # [B·M, HW, Ns]

        lepe = None
        if self.use_pe:
            if self.dwc_pe:
                lepe = self.rpe_table(q).reshape(B * M, c, H * W)
            elif self.fixed_pe:
                table = self.rpe_table.weight  # [M, HW, Ns]
                if table.shape[2] != ns:
                    raise ValueError(f"DAttention: the fixed table has {table.shape[2]} keys, "
                                     f"the map {ns}")
                attn = attn + table.unsqueeze(0).expand(B, -1, -1, -1).reshape(B * M, H * W, ns)
            else:
                table = self.rpe_table.weight.unsqueeze(0).expand(B, -1, -1, -1)
                table = table.reshape(B * G, gh, 2 * H - 1, 2 * W - 1)  # heads as (g, gh)
                q_grid = _pixel_centres(H, W, x).reshape(1, H * W, 1, 2)
                displacement = (q_grid - pos.reshape(B * G, 1, ns, 2)).mul(0.5)  # [B·G, HW, Ns, 2]
                bias = F.grid_sample(table, displacement.flip(-1), mode="bilinear",
                                     padding_mode="zeros", align_corners=True)  # [B·G, gh, HW, Ns]
                attn = attn + bias.reshape(B * M, H * W, ns)

        attn = F.dropout(attn.softmax(dim=2), self.attn_drop, self.training)
        out = torch.einsum("bmn,bcn->bcm", attn, v)  # [B·M, c, HW]
        if lepe is not None:
            out = out + lepe
        out = out.reshape(B, C, H, W)
        return F.dropout(self.proj_out(out), self.proj_drop, self.training)
