"""CrossFormer block: long short distance attention (LSDA) with the dynamic position bias.

Paper: Wang, Yao, Chen, Lin, Cai, He, Liu, "CrossFormer: A Versatile Vision Transformer
Hinging on Cross-scale Attention", ICLR 2022, arXiv:2108.00154 (§3.2 LSDA, §3.3 DPB).
Follows the authors' code, cheerss/CrossFormer, models/crossformer.py of the first version
(commit f20000d; the `crossformer` branch): classes DynamicPosBias, Attention, Mlp and
CrossFormerBlock. On a map x [B, H, W, dim] (their tokens [B, L = H·W, dim], row-major):

    x = x + drop_path(LSDA(LayerNorm(x)))           (norm1)
    x = x + drop_path(Mlp(LayerNorm(x)))            (norm2; fc1, GELU, drop, fc2, drop)

LSDA cuts the map into groups of G × G positions (G = group_size) and runs multi-head
self-attention within each group. With h = row, w = column:
- SDA (lsda_flag 0), adjacent positions: group (h // G, w // G), place in the group
  (h % G, w % G); the code's reshape(B, H/G, G, W/G, G, C).permute(0, 1, 3, 2, 4, 5).
- LDA (lsda_flag != 0), positions sampled with the interval I = H / G (rows) and W / G
  (columns): group (h % (H/G), w % (W/G)), place in the group (h // (H/G), w // (W/G)); the
  code's reshape(B, G, H/G, G, W/G, C).permute(0, 2, 4, 1, 3, 5).
Within a group (their Attention): one Linear dim -> 3·dim (q | k | v, each head-major, heads
of dim // num_heads features), logits (q · qk_scale) · k plus the dynamic position bias,
softmax over the keys, attention dropout, heads concatenated, Linear dim -> dim (biased),
dropout (`drop`). Then the groups are put back in place.

Dynamic position bias (their DynamicPosBias(dim // 4, num_heads, residual=False), so the
hidden width is pos_dim = (dim // 4) // 4 = dim // 16): on the (2G-1)² offsets (Δh, Δw),
each from -(G-1) to G-1, row-major over (Δh, Δw), as 2 float features in that order,
    Linear(2, pos_dim) -> [LayerNorm, ReLU, Linear(pos_dim, pos_dim)] x 2
                       -> LayerNorm, ReLU, Linear(pos_dim, num_heads),
one bias per head and offset; the pair (query i, key j) of a group reads the row of
Δ = place(i) - place(j), the query's offset from the key, in group coordinates (for LDA
a step of 1 is I positions of the map). position_bias = False: none (their Attention's
switch; their blocks pass True).

Small maps, as the official block: when min(input_resolution) <= group_size it uses SDA
with groups of that size (the same DPB weights on the smaller offsets), decided once at
construction, as the official classification block does; `input_resolution` here is that
smaller side (0: not given, no rule), H and W coming from the input. H and W must be
multiples of the group size: the
official v1 block has no padding (its reshape fails), and this raises a ValueError naming
the axis.

The block of the authors' detection/segmentation backbone (models/crossformer_backbone.py,
commit 4d73aa9; CrossFormerBackboneBlock and LSDABackbone below) takes any H and W: a fixed
LDA interval I (`interval`, 8, 4, 2, 1 by stage; groups of ceil(H/I) × ceil(W/I)), the
normalised map padded with zeros at the bottom and right to a multiple of G (SDA) or I
(LDA), -1e6 added to the logits of the padded keys, the padded queries' outputs cropped,
and the DPB on the offsets of groups of any Gh × Gw.

Deviations:
- Input laid out [B, H, W, dim] instead of forward(x [B, L, dim]) with input_resolution.
- drop_path (stochastic depth) is written here as timm's drop_path the authors import.
- qk_scale=None means head_dim ** -0.5, as `qk_scale or head_dim ** -0.5` (a qk_scale of 0
  is used as given here, where the official code would replace it by the default).
- The DPB offsets are computed in forward in the input's dtype; the official code keeps
  them (and the pair index) as buffers, float32 and int64. Nothing but learned weights is
  registered here, so state_dict holds only the parameters.
- Parameters are registered in the order the spec creates them, not the official
  attribute order: norm1, attn.qkv, attn.pos (pos_proj, pos1, pos2, pos3), attn.proj,
  then norm2, mlp.fc1, mlp.fc2 (the official: norm1, attn.pos, attn.qkv, attn.proj, ...).
"""

import torch
from torch import nn
from torch.nn import functional as F

from ._stochastic_depth import drop_path


class _DynamicPosBias(nn.Module):
    """MLP from a relative offset (Δh, Δw) to one bias per head: [N, 2] -> [N, num_heads]."""

    def __init__(self, dim: int, num_heads: int, residual: bool = False):
        super().__init__()
        self.residual = residual
        pos_dim = dim // 4  # `dim` here is the block's dim // 4, as in the official call
        self.pos_proj = nn.Linear(2, pos_dim)
        self.pos1 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(), nn.Linear(pos_dim, pos_dim))
        self.pos2 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(), nn.Linear(pos_dim, pos_dim))
        self.pos3 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(),
                                  nn.Linear(pos_dim, num_heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))
        pos = self.pos_proj(offsets)
        pos = pos + self.pos1(pos)
        pos = pos + self.pos2(pos)
        return self.pos3(pos)


class _Attention(nn.Module):
    """Multi-head self-attention within groups: [B_, G·G, dim] -> [B_, G·G, dim]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, qk_scale: float | None,
                 attn_drop: float, proj_drop: float, position_bias: bool = True,
                 dpb_residual: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5 if qk_scale is None else qk_scale
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        # their Attention's position_bias switch (their blocks pass True); their
        # DynamicPosBias's residual (their Attention passes False)
        self.pos = _DynamicPosBias(dim // 4, num_heads, dpb_residual) if position_bias else None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self, Gh: int, Gw: int, like: torch.Tensor) -> torch.Tensor:
        """[num_heads, Gh·Gw, Gh·Gw]: entry [m, i, j] is head m's DPB at place(i) -
        place(j)."""
        rh = torch.arange(1 - Gh, Gh, device=like.device, dtype=like.dtype)
        rw = torch.arange(1 - Gw, Gw, device=like.device, dtype=like.dtype)
        table = torch.stack(torch.meshgrid(rh, rw, indexing="ij"), dim=-1).reshape(-1, 2)
        pos = self.pos(table)  # [(2Gh-1)(2Gw-1), num_heads], row-major over (Δh, Δw)
        ph = torch.arange(Gh, device=like.device).repeat_interleave(Gw)  # each member's
        pw = torch.arange(Gw, device=like.device).repeat(Gh)  # place, row-major
        dh = ph[:, None] - ph[None, :] + Gh - 1  # query minus key, shifted to 0 … 2Gh-2
        dw = pw[:, None] - pw[None, :] + Gw - 1
        return pos[dh * (2 * Gw - 1) + dw].permute(2, 0, 1)

    def forward(self, x: torch.Tensor, Gh: int, Gw: int,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` [nG, N, N], added to the logits of the nG groups of each sample."""
        B_, N, C = x.shape
        M = self.num_heads
        q, k, v = self.qkv(x).reshape(B_, N, 3, M, C // M).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B_, M, N, N]
        if self.pos is not None:
            attn = attn + self.position_bias(Gh, Gw, x)
        if mask is not None:
            nG = mask.shape[0]
            attn = (attn.view(B_ // nG, nG, M, N, N) + mask[None, :, None]).view(B_, M, N, N)
        attn = self.attn_drop(attn.softmax(dim=-1))
        y = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(y))


class GroupAttention(nn.Module):
    """Their Attention on groups laid out [B, nh, nw, gh, gw, dim] (the spec's
    GroupAttention): the gh·gw members of each group attend to each other."""

    def __init__(self, dim: int, num_heads: int | None = None, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0,
                 position_bias: bool = True, dpb_residual: bool = False):
        super().__init__()
        num_heads = dim // 32 if num_heads is None else num_heads
        self.attn = _Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop,
                               position_bias, dpb_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gh, gw, dim = x.shape[3:]
        return self.attn(x.reshape(-1, gh * gw, dim), gh, gw).view(x.shape)


class LSDA(nn.Module):
    """The block's attention sub-layer with its residual: x [B, H, W, dim] -> the same.

    x + ungroup(Attention(group(LayerNorm(x)))).
    """

    def __init__(self, dim: int, num_heads: int | None = None, group_size: int = 7,
                 lsda_flag: int = 0, qkv_bias: bool = True, qk_scale: float | None = None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 input_resolution: int = 0, position_bias: bool = True):
        super().__init__()
        self.drop_path = drop_path
        num_heads = dim // 32 if num_heads is None else num_heads  # the paper's models' 32
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{type(self).__name__}: dim {dim} is not a multiple of "
                             f"num_heads {num_heads}")
        if position_bias and dim // 16 < 1:
            raise ValueError(f"{type(self).__name__}: dim {dim} < 16 leaves the position "
                             f"bias no hidden features (dim // 16)")
        self.group_size, self.lsda_flag = group_size, lsda_flag
        if 0 < input_resolution <= group_size:  # the official small-map rule
            self.group_size, self.lsda_flag = input_resolution, 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop,
                               position_bias)

    def lsda(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        G, lda = self.group_size, self.lsda_flag != 0
        for axis, n in (("H", H), ("W", W)):
            if n % G:
                raise ValueError(f"{type(self).__name__}: axis {axis} of size {n} is not a "
                                 f"multiple of the group size {G}")
        if lda:  # h = (H/G)·gh + ih: group (ih, iw), place (gh, gw)
            t = x.reshape(B, G, H // G, G, W // G, C).permute(0, 2, 4, 1, 3, 5)
        else:  # h = G·ih + gh
            t = x.reshape(B, H // G, G, W // G, G, C).permute(0, 1, 3, 2, 4, 5)
        t = self.attn(t.reshape(B * H * W // G ** 2, G * G, C), G, G)
        t = t.reshape(B, H // G, W // G, G, G, C)
        if lda:
            return t.permute(0, 3, 1, 4, 2, 5).reshape(B, H, W, C)
        return t.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + drop_path(self.lsda(self.norm1(x)), self.drop_path, self.training)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class _WithMlp:
    """Mixed in before an LSDA sub-layer class: its forward (the sub-layer with its
    residual), then x + drop_path(Mlp(LayerNorm(x))), the authors' norm2 and mlp."""

    def add_mlp(self, dim: int, mlp_ratio: float, drop: float) -> None:
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class CrossFormerBlock(_WithMlp, LSDA):
    """x [B, H, W, dim] -> the same: the LSDA sub-layer, then the MLP, each with a residual."""

    def __init__(self, dim: int, num_heads: int | None = None, group_size: int = 7,
                 lsda_flag: int = 0, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, input_resolution: int = 0,
                 position_bias: bool = True):
        super().__init__(dim, num_heads, group_size, lsda_flag, qkv_bias, qk_scale, drop,
                         attn_drop, drop_path, input_resolution, position_bias)
        self.add_mlp(dim, mlp_ratio, drop)


NEG_INF = -1000000.0  # what the backbone adds to a padded key's logits


class LSDABackbone(LSDA):
    """The attention sub-layer of the authors' detection/segmentation backbone block, with its
    residual: x [B, H, W, dim] of any H and W -> the same (models/crossformer_backbone.py).

    LayerNorm, then the map padded with zeros at the bottom and right to a multiple of
    size_div (G for SDA, the fixed `interval` I for LDA); SDA groups G × G adjacent
    positions, LDA groups the positions of equal (h % I, w % I), Hp / I × Wp / I of them;
    -1e6 added to the logits of padded keys; the padded rows and columns cropped after the
    groups are put back. The small-map rule (SDA with groups of the smaller side when it is
    at most group_size) is decided at construction from `input_resolution`, as in LSDA; the
    backbone decides it on its first small map and keeps it, overwriting its group_size
    and lsda_flag.
    """

    def __init__(self, dim: int, num_heads: int | None = None, group_size: int = 7,
                 interval: int = 8, lsda_flag: int = 0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, input_resolution: int = 0,
                 position_bias: bool = True):
        super().__init__(dim, num_heads, group_size, lsda_flag, qkv_bias, qk_scale, drop,
                         attn_drop, drop_path, input_resolution, position_bias)
        self.interval = interval

    def lsda(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        lda = self.lsda_flag != 0
        size_div = self.interval if lda else self.group_size
        pad_r, pad_b = (-W) % size_div, (-H) % size_div
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        Hp, Wp = H + pad_b, W + pad_r
        padding = torch.zeros(Hp, Wp, dtype=torch.bool, device=x.device)
        padding[H:], padding[:, W:] = True, True
        if lda:  # h = step·gh + ih: group (ih, iw), place (gh, gw)
            step, Gh, Gw = self.interval, Hp // self.interval, Wp // self.interval
            t = x.reshape(B, Gh, step, Gw, step, C).permute(0, 2, 4, 1, 3, 5)
            groups = padding.reshape(Gh, step, Gw, step).permute(1, 3, 0, 2)
        else:  # h = G·ih + gh
            G = Gh = Gw = self.group_size
            t = x.reshape(B, Hp // G, G, Wp // G, G, C).permute(0, 1, 3, 2, 4, 5)
            groups = padding.reshape(Hp // G, G, Wp // G, G).permute(0, 2, 1, 3)
        nG = Hp * Wp // (Gh * Gw)
        keys = groups.reshape(nG, 1, Gh * Gw)
        mask = None
        if pad_r or pad_b:  # as the backbone: a mask only when something was padded
            mask = torch.zeros(nG, Gh * Gw, Gh * Gw, dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(keys, NEG_INF)
        t = self.attn(t.reshape(B * nG, Gh * Gw, C), Gh, Gw, mask)
        if lda:
            t = t.reshape(B, step, step, Gh, Gw, C).permute(0, 3, 1, 4, 2, 5)
        else:
            t = t.reshape(B, Hp // G, Wp // G, G, G, C).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(B, Hp, Wp, C)[:, :H, :W]


class CrossFormerBackboneBlock(_WithMlp, LSDABackbone):
    """x [B, H, W, dim] -> the same: the backbone's LSDA sub-layer, then the MLP, each with a
    residual (the authors' backbone CrossFormerBlock)."""

    def __init__(self, dim: int, num_heads: int | None = None, group_size: int = 7,
                 interval: int = 8, lsda_flag: int = 0, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, input_resolution: int = 0,
                 position_bias: bool = True):
        super().__init__(dim, num_heads, group_size, interval, lsda_flag, qkv_bias, qk_scale,
                         drop, attn_drop, drop_path, input_resolution, position_bias)
        self.add_mlp(dim, mlp_ratio, drop)
