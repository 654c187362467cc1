"""Point-wise spatial attention (PSA) module of PSANet.

Paper: Zhao, Zhang, Liu, Shi, Loy, Lin, Jia, "PSANet: Point-wise Spatial Attention Network
for Scene Parsing", ECCV 2018.
Official code: hszhao/semseg, model/psanet.py (class PSA) and the PSAMask op in lib/psa/
(functions/psamask.py; kernels src/cpu/psamask.cpp, src/gpu/psamask_cuda.cu).

Per branch: xr = reduce(x) (1x1 conv C -> mid, BN, ReLU); y = attention(xr) (1x1 conv, BN,
ReLU, 1x1 conv mid -> mask_h * mask_w): one logit per offset of a mask_h x mask_w window
centred on each position. PSAMask scatters y into a dense [HW, HW] matrix A (rows = source
positions k, columns = output positions q, entries outside the window 0), softmax over k
(dim 1), then out = xr @ A / normalization. With half_h = (mask_h - 1) / 2 (same for w):
  collect    (psa_type 0): A[k, q] = y[(k_h - q_h + half_h) * mask_w + (k_w - q_w + half_w), q]
  distribute (psa_type 1): A[k, q] = y[(q_h - k_h + half_h) * mask_w + (q_w - k_w + half_w), k]
i.e. the logit is always read at the position where it was predicted (q for collect, k for
distribute), its channel being the other position's offset from it, and A[k, q] = 0 unless
|k_h - q_h| <= half_h and |k_w - q_w| <= half_w. "both" (psa_type 2) runs one branch of each
type and concatenates them; proj (1x1 conv, BN, ReLU) maps back to C; returns cat(x, proj).

compact (the authors' option of the same name, PSA.forward's `if self.compact` branches):
no PSAMask; the attention's h*w output channels are read as absolute positions of the
(resized) h x w map, so mask_h * mask_w must equal h * w (the authors set mask_h =
(crop_h - 1) // (8 * shrink_factor) + 1, the resized map's rows). collect (type 0, and
y_col of type 2): y viewed as [HW (k, channel), HW (q, position)] is A itself;
distribute (type 1, and y_dis of type 2): A is its transpose, A[k, q] = y[q (channel),
k (position)]. Softmax over k and the product with xr as above.

Deliberate deviations / notes:
  - shrink (shrink_factor, 2 by default as the authors'): the reduced maps are resized to
    ((H - 1) // s + 1) × ((W - 1) // s + 1) bilinearly with aligned corners, and the
    projection back to ((h - 1) s + 1) × ...: the input's size when (H - 1) and (W - 1) are
    multiples of s, which the authors' concatenation with the input requires.
  - compact: as the authors (a view of y), so only mask_h * mask_w == h * w is needed here;
    the spec declares its compact branches' input mask_h x mask_w, i.e. the resized map
    must be exactly mask_h x mask_w there (the authors' setting).
  - normalization is a number; the official normalization_factor=None (meaning
    mask_h * mask_w) is not supported: pass that product explicitly.
  - PSAMask is pure PyTorch (index scatter), so it runs in any dtype; the official kernels
    are float32-only. As officially, the softmax runs over the full dense column, so the
    zeros outside the window take part in it (each contributes exp(0)) when the window does
    not cover the map.
"""

import torch
import torch.nn.functional as F
from torch import nn

DIRECTIONS = ("collect", "distribute", "both")


def _reduce(C: int, mid: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(C, mid, kernel_size=1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(),
    )


def _attention(mid: int, n_mask: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(mid, mid, kernel_size=1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(),
        nn.Conv2d(mid, n_mask, kernel_size=1, bias=False),
    )


def psa_mask(y: torch.Tensor, kind: str, mask_h: int, mask_w: int) -> torch.Tensor:
    """PSAMask: y [B, mask_h*mask_w, H, W] -> dense A [B, HW (source k), HW (output q)].

    kind "collect" (type 0) or "distribute" (type 1); see the module docstring.
    """
    B, M, H, W = y.shape
    if M != mask_h * mask_w:
        raise ValueError(f"psa_mask: expected {mask_h * mask_w} channels, got {M}")
    half_h, half_w = (mask_h - 1) // 2, (mask_w - 1) // 2
    dev = y.device
    # Window index (i, j) of every channel and position (h, w) where y was predicted.
    i = torch.arange(mask_h, device=dev).view(mask_h, 1, 1, 1)
    j = torch.arange(mask_w, device=dev).view(1, mask_w, 1, 1)
    h = torch.arange(H, device=dev).view(1, 1, H, 1)
    w = torch.arange(W, device=dev).view(1, 1, 1, W)
    # The other end of the pair: (h, w) displaced by the window offset (i - half_h, j - half_w).
    oh, ow = h + i - half_h, w + j - half_w  # [mask_h, 1, H, 1], [1, mask_w, 1, W]
    valid = ((oh >= 0) & (oh < H) & (ow >= 0) & (ow < W)).expand(mask_h, mask_w, H, W)
    chan = (i * mask_w + j).expand(mask_h, mask_w, H, W)[valid]
    pos = (h * W + w).expand(mask_h, mask_w, H, W)[valid]  # where the logit lives
    other = (oh * W + ow).expand(mask_h, mask_w, H, W)[valid]
    HW = H * W
    if kind == "collect":  # predicted at the output q = pos, for the source k = other
        flat = other * HW + pos
    elif kind == "distribute":  # predicted at the source k = pos, for the output q = other
        flat = pos * HW + other
    else:
        raise ValueError(f"psa_mask: kind must be 'collect' or 'distribute', got {kind!r}")
    vals = y.reshape(B, M, HW)[:, chan, pos]  # [B, n_valid]
    return y.new_zeros(B, HW * HW).index_copy(1, flat, vals).view(B, HW, HW)


class PSANet(nn.Module):
    """x: [B, C, H, W] -> [B, 2C, H, W] (cat of x and the PSA features)."""

    def __init__(
        self,
        C: int,
        mid: int | None = None,
        mask_h: int = 59,
        mask_w: int = 59,
        direction: str = "both",
        normalise: bool = True,
        normalization: float = 1.0,
        shrink: int = 2,
        compact: bool = False,
    ):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"PSANet: direction must be one of {DIRECTIONS}, got {direction!r}")
        for name, m in (("mask_h", mask_h), ("mask_w", mask_w)):
            if compact and m < 1:  # compact: the resized map's size, any
                raise ValueError(f"PSANet: {name} must be >= 1, got {m}")
            if not compact and (m < 3 or m % 2 == 0):
                raise ValueError(f"PSANet: {name} must be odd and >= 3, got {m}")
        if mid is None:
            mid = C // 4  # official: 512 for in_channels 2048
        if mid < 1:
            raise ValueError(f"PSANet: mid must be >= 1, got {mid} (C={C})")
        self.mask_h, self.mask_w = mask_h, mask_w
        self.direction = direction
        self.normalise = normalise  # psa_softmax
        self.normalization = normalization
        self.shrink = shrink  # shrink_factor: the attention at ((H - 1) // s + 1) rows
        self.compact = compact  # maps over the whole resized map's absolute positions
        n_mask = mask_h * mask_w
        # Attribute order = state_dict order. For "both" the official names are reduce /
        # attention (collect) and reduce_p / attention_p (distribute).
        self.reduce = _reduce(C, mid)
        self.attention = _attention(mid, n_mask)
        if direction == "both":
            self.reduce_p = _reduce(C, mid)
            self.attention_p = _attention(mid, n_mask)
        n_branch = 2 if direction == "both" else 1
        self.proj = nn.Sequential(
            nn.Conv2d(n_branch * mid, C, kernel_size=1, bias=False),
            nn.BatchNorm2d(C),
            nn.ReLU(),
        )

    def _branch(self, x, reduce: nn.Module, attention: nn.Module, kind: str) -> torch.Tensor:
        xr = reduce(x)
        if self.shrink != 1:  # the authors' resizing, bilinear with aligned corners
            size = ((xr.shape[2] - 1) // self.shrink + 1, (xr.shape[3] - 1) // self.shrink + 1)
            xr = F.interpolate(xr, size=size, mode="bilinear", align_corners=True)
        B, c, H, W = xr.shape
        y = attention(xr)
        if self.compact:  # y's channels are absolute positions: [B, HW, HW], no PSAMask
            if y.shape[1] != H * W:
                raise ValueError(f"PSANet (compact): {y.shape[1]} maps for a {H}x{W} map")
            a = y.reshape(B, H * W, H * W)  # collect: [k (channel), q (position)]
            if kind == "distribute":  # [q (channel), k (position)], transposed
                a = a.transpose(1, 2)
        else:
            a = psa_mask(y, kind, self.mask_h, self.mask_w)  # [B, HW (k), HW (q)]
        if self.normalise:
            a = a.softmax(dim=1)  # over sources k, for each output q
        return torch.bmm(xr.view(B, c, H * W), a).view(B, c, H, W) * (1.0 / self.normalization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.direction == "both":
            out = torch.cat(
                [
                    self._branch(x, self.reduce, self.attention, "collect"),
                    self._branch(x, self.reduce_p, self.attention_p, "distribute"),
                ],
                dim=1,
            )
        else:
            out = self._branch(x, self.reduce, self.attention, self.direction)
        out = self.proj(out)
        if self.shrink != 1:  # back to ((h - 1) * s + 1) rows: the input's size when
            # (H - 1) is a multiple of s, as the authors' concatenation requires
            size = ((out.shape[2] - 1) * self.shrink + 1, (out.shape[3] - 1) * self.shrink + 1)
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        return torch.cat([x, out], dim=1)
