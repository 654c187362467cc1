"""ACmix: a mixed self-attention and convolution module.

Paper: Pan, Ge, Lu, Song, Chen, Huang, Huang, "On the Integration of Self-Attention and
Convolution", CVPR 2022, arXiv:2111.14556 (§3.3, Fig. 2c). Follows the authors' code,
LeapLabTHU/ACmix, ResNet/test_bottleneck.py, class ACmix (with its helpers position,
stride, init_rate_half, init_rate_0), the module the authors' ResNet (ResNet_ImageNet.py)
puts in place of each bottleneck's 3×3 convolution. On x [B, in_planes, H, W]:

Stage I: three 1×1 convolutions (with bias) give q, k, v, each [B, out_planes, H, W], and
each is read as `head` heads of head_dim = out_planes // head channels (head-major).

Stage II, attention path (stand-alone self-attention on a k_att × k_att window):
- pe = conv_p(loc), a 1×1 convolution (2 -> head_dim, with bias) of the normalised
  coordinates loc [1, 2, H, W]: channel 0 the w coordinate, channel 1 the h coordinate,
  each torch.linspace(-1, 1, n) along its axis;
- q is scaled by head_dim^-0.5; with stride s, q and the query's pe are taken at every
  s-th row and column (x[..., ::s, ::s]);
- k, v and pe are reflection-padded by k_att // 2 (nn.ReflectionPad2d) and cut into the
  k_att × k_att windows around every s-th position (nn.Unfold, stride s), j indexing the
  k_att² window positions row-major;
- logits a_j = Σ_c q_c · (k_{j,c} + pe_{q,c} − pe_{j,c}) per head, a softmax over the
  window, the output Σ_j softmax(a)_j · v_j, heads concatenated back ([B, out_planes, ...]);
Stage II, convolution path:
- the 3·head head maps (q's heads, then k's, then v's) are stacked as channels of
  [B, 3·head, head_dim, H·W] and mixed by fc, a bias-free 1×1 convolution to k_conv²
  channels: [B, k_conv², head_dim, H·W];
- permuted to [B, head_dim, k_conv², H, W] and flattened to head_dim·k_conv² channels
  (head_dim-major), then dep_conv: a k_conv × k_conv convolution with groups = head_dim,
  padding 1 and stride s, to out_planes channels, whose weight starts as shifts (input
  channel i of each group has a 1 at kernel position i, row-major, for every output
  channel): at initialisation it is the paper's shift-and-sum;
- y = rate1 · attention + rate2 · convolution, rate1 and rate2 learned scalars, 0.5 at
  first. (The two paths order their output channels differently, head-major vs
  head_dim-major, and are added as the authors add them.)

Constructor options mirrored: in_planes, out_planes, kernel_att = 7, head = 4,
kernel_conv = 3, stride = 1. reset_parameters is the authors'.

Deviations and limits (each where the authors' code fails or cannot run):
- `dilation` is left out: the authors pad by dilation·(kernel_att − 1) / 2 but never
  dilate their nn.Unfold, so any dilation > 1 gives a window grid of another size and
  their view(...) raises; dilation = 1 (their only working value) is what this computes.
- The coordinates are made in x's dtype and on x's device (the authors' position() calls
  .cuda() and makes float32: a float64 module fails there).
- The authors' reset_parameters ends with `dep_conv.bias = init_rate_0(dep_conv.bias)`;
  init_rate_0 returns None, so dep_conv has no bias at all after construction (it is
  absent from their state_dict and their forward adds nothing). This module has no bias
  there either (bias=False: the same function, the same state_dict).
- dep_conv pads by 1 whatever kernel_conv is, so only kernel_conv = 3 gives a map of the
  attention path's size (other values fail when the two paths are added): any other value
  is refused here with a ValueError. kernel_att must be odd (an even window gives a grid
  one larger, where the authors' view fails), head must divide out_planes, and with
  stride s the map's sides must be multiples of s (the authors' h // s; on other sides
  their view fails); reflection padding needs sides larger than kernel_att // 2.
- The authors' ResNet re-initialises every nn.Conv2d with kaiming_normal_ after building
  the blocks, dep_conv's shift kernel included; that belongs to the network, not to the
  module: here dep_conv keeps the module's own shift initialisation.

Parameters are registered as the authors' __init__ orders them, and the state_dict keys
are theirs: rate1, rate2, conv1, conv2, conv3, conv_p, fc, dep_conv (weight only).
"""

import torch
import torch.nn.functional as F
from torch import nn


def position(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """The normalised coordinates [1, 2, h, w] (channel 0: w, channel 1: h), each
    linspace(-1, 1, n), in `like`'s dtype and on its device."""
    kw = {"dtype": like.dtype, "device": like.device}
    along_w = torch.linspace(-1.0, 1.0, w, **kw).view(1, w).expand(h, w)
    along_h = torch.linspace(-1.0, 1.0, h, **kw).view(h, 1).expand(h, w)
    return torch.stack((along_w, along_h)).unsqueeze(0)


def shift_kernel(out_channels: int, k: int) -> torch.Tensor:
    """[out_channels, k², k, k]: input channel i has a 1 at kernel position i (row-major)."""
    kernel = torch.eye(k * k).view(k * k, k, k)
    return kernel.unsqueeze(0).repeat(out_channels, 1, 1, 1)


class ACmix(nn.Module):
    """x: [B, in_planes, H, W] -> [B, out_planes, H // stride, W // stride]."""

    def __init__(self, in_planes: int, out_planes: int, kernel_att: int = 7, head: int = 4,
                 kernel_conv: int = 3, stride: int = 1):
        super().__init__()
        if head < 1 or out_planes % head:
            raise ValueError(f"ACmix: head must divide out_planes, got head={head}, "
                             f"out_planes={out_planes}")
        if kernel_att < 1 or kernel_att % 2 == 0:
            raise ValueError(f"ACmix: kernel_att must be odd, got {kernel_att}")
        if kernel_conv != 3:
            raise ValueError(f"ACmix: the authors' dep_conv pads by 1, so only "
                             f"kernel_conv=3 keeps the attention path's map size; "
                             f"got {kernel_conv}")
        if stride < 1:
            raise ValueError(f"ACmix: stride must be positive, got {stride}")
        self.in_planes, self.out_planes = in_planes, out_planes
        self.head, self.head_dim = head, out_planes // head
        self.kernel_att, self.kernel_conv, self.stride = kernel_att, kernel_conv, stride
        self.padding_att = kernel_att // 2

        self.rate1 = nn.Parameter(torch.empty(1))
        self.rate2 = nn.Parameter(torch.empty(1))
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1)  # q
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1)  # k
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)  # v
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1)      # positional encoding
        kk = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * head, kk, kernel_size=1, bias=False)
        self.dep_conv = nn.Conv2d(kk * self.head_dim, out_planes, kernel_size=kernel_conv,
                                  padding=1, stride=stride, groups=self.head_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.rate1.fill_(0.5)
            self.rate2.fill_(0.5)
            self.dep_conv.weight.copy_(shift_kernel(self.out_planes, self.kernel_conv))

    def _windows(self, t: torch.Tensor) -> torch.Tensor:
        """[n, c, H, W] -> [n, c, k_att², H / s, W / s]: reflection-padded windows."""
        n, c, h, w = t.shape
        p, k, s = self.padding_att, self.kernel_att, self.stride
        cols = F.unfold(F.pad(t, (p, p, p, p), mode="reflect"), k, stride=s)
        return cols.view(n, c, k * k, h // s, w // s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        s, M, d = self.stride, self.head, self.head_dim
        if h % s or w % s:
            raise ValueError(f"ACmix: with stride {s} the map's sides must be multiples of "
                             f"it, got {h}×{w}")
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)  # [b, out_planes, h, w]

        # attention path
        pe = self.conv_p(position(h, w, x))                    # [1, d, h, w]
        q_att = (q * d ** -0.5).view(b, M, d, h, w)[..., ::s, ::s]
        pe_q = pe[..., ::s, ::s].unsqueeze(2)                  # [1, d, 1, h/s, w/s]
        k_win = self._windows(k).unflatten(1, (M, d))          # [b, M, d, kk, h/s, w/s]
        v_win = self._windows(v).unflatten(1, (M, d))
        rel = pe_q - self._windows(pe)                         # [1, d, kk, h/s, w/s]
        logits = torch.einsum("bmdyx,bmdjyx->bmjyx", q_att, k_win + rel)
        weights = logits.softmax(dim=2)
        out_att = torch.einsum("bmjyx,bmdjyx->bmdyx", weights, v_win)
        out_att = out_att.reshape(b, self.out_planes, h // s, w // s)

        # convolution path
        heads = torch.stack((q, k, v), dim=1).reshape(b, 3 * M, d, h * w)
        f = self.fc(heads)                                     # [b, kk, d, h·w]
        f = f.transpose(1, 2).reshape(b, d * self.kernel_conv ** 2, h, w)
        out_conv = self.dep_conv(f)                            # [b, out_planes, h/s, w/s]

        return self.rate1 * out_att + self.rate2 * out_conv


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """Swin's window_partition: [B, H, W, C] -> [nW·B, ws, ws, C]."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, C)


def window_reverse(windows: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    """Swin's window_reverse: [nW·B, ws, ws, C] -> [B, H, W, C]."""
    B = windows.shape[0] // (H * W // ws // ws)
    x = windows.view(B, H // ws, W // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, -1)


def region_mask(H: int, W: int, ws: int, shift: int) -> torch.Tensor:
    """Their SwinTransformerBlock's attn_mask for SW-MSA: the rolled map labelled by the
    nine regions the roll joins (slices 0:−ws, −ws:−shift, −shift: on each axis), cut into
    windows; pairs of a window in different regions get −100, the rest 0: [nW, N, N]."""
    img = torch.zeros(1, H, W, 1)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for label, (h, w) in enumerate((h, w) for h in cuts for w in cuts):
        img[:, h, w, :] = label
    windows = window_partition(img, ws).reshape(-1, ws * ws)
    apart = windows.unsqueeze(1) - windows.unsqueeze(2)
    return apart.masked_fill(apart != 0, -100.0).masked_fill(apart == 0, 0.0)


class WindowAttentionACmix(nn.Module):
    """The authors' WindowAttention_acmix (Swin-Transformer/models/swin_transformer_acmix.py)
    inside their SwinTransformerBlock's cyclic shift, x [B, H, W, dim] -> [B, H, W, dim]:
    with shift_size s > 0 (their SW-MSA blocks) x is rolled by (−s, −s) first, the module
    gets the block's attn_mask (region_mask), and its output is rolled back by (s, s); with
    s = 0 (W-MSA) the mask is None. The module: qkv = Linear(dim, 3·dim); the convolution
    path fc (Conv2d(3·heads, 9, 1), with bias) on the head maps [B, 3·heads, H·W,
    head_dim], then dep_conv (9·head_dim -> dim, 3x3, groups head_dim, shift-initialised,
    no bias: their reset_parameters leaves it None); the attention in windows with the
    relative position bias table read at Swin's relative_position_index (q − k), plus the
    mask; rate1 · attention + rate2 · convolution, proj_drop. Parameters in the compiled
    spec's order; the table is held [heads, (2ws − 1)²], the transpose of theirs (the
    spec's bias-free linear weight)."""

    def __init__(self, dim: int, window_size: int = 7, num_heads: int | None = None,
                 qkv_bias: bool = True, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, shift_size: int = 0):
        super().__init__()
        num_heads = dim // 32 if num_heads is None else num_heads
        self.dim, self.ws, self.num_heads, self.shift = dim, window_size, num_heads, shift_size
        head_dim = dim // num_heads
        self.scale = qk_scale if qk_scale is not None else head_dim ** -0.5
        self.rates = nn.ParameterList([nn.Parameter(torch.full((1,), 0.5)) for _ in range(2)])
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.fc = nn.Conv2d(3 * num_heads, 9, kernel_size=1, bias=True)
        self.dep_conv = nn.Conv2d(9 * head_dim, dim, kernel_size=3, bias=False,
                                  groups=head_dim, padding=1)
        with torch.no_grad():
            self.dep_conv.weight.copy_(shift_kernel(dim, 3))
        n = (2 * window_size - 1) ** 2
        self.table = nn.ParameterDict({"weight": nn.Parameter(torch.zeros(num_heads, n))})
        self.proj = nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = nn.Dropout(attn_drop), nn.Dropout(proj_drop)
        coords = torch.stack(torch.meshgrid(torch.arange(window_size),
                                            torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)  # [2, ws²]
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window_size - 1
        self.register_buffer("index", rel[..., 0] * (2 * window_size - 1) + rel[..., 1],
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shift
        if s == 0:
            return self.attention(x, None)
        mask = region_mask(x.shape[1], x.shape[2], self.ws, s).to(x)
        y = self.attention(torch.roll(x, shifts=(-s, -s), dims=(1, 2)), mask)
        return torch.roll(y, shifts=(s, s), dims=(1, 2))

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Their WindowAttention_acmix.forward(x, H, W, mask)."""
        B, H, W, C = x.shape
        M, ws = self.num_heads, self.ws
        qkv = self.qkv(x)
        f_all = qkv.reshape(B, H * W, 3 * M, -1).permute(0, 2, 1, 3)  # [B, 3M, HW, d]
        f_conv = self.fc(f_all).permute(0, 3, 1, 2).reshape(B, 9 * C // M, H, W)
        out_conv = self.dep_conv(f_conv).permute(0, 2, 3, 1)  # [B, H, W, C]
        windows = window_partition(qkv, ws).view(-1, ws * ws, 3 * C)  # [nW·B, N, 3C]
        N = ws * ws
        qkv = windows.reshape(-1, N, 3, M, C // M).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.table["weight"].t()[self.index.view(-1)].view(N, N, -1)  # [N, N, M]
        attn = attn + bias.permute(2, 0, 1)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(-1, nW, M, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, M, N, N)
        attn = self.attn_drop(attn.softmax(dim=-1))
        y = self.proj((attn @ v).transpose(1, 2).reshape(-1, N, C))
        y = window_reverse(y.view(-1, ws, ws, C), ws, H, W)
        return self.proj_drop(self.rates[0] * y + self.rates[1] * out_conv)
