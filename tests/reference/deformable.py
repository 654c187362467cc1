"""Deformable convolution (v1), written from the paper.

Paper: Dai, Qi, Xiong, Li, Zhang, Hu, Wei, "Deformable Convolutional Networks", ICCV 2017,
arXiv:1703.06211, Eq. (2)-(4): y(p0) = Σ_n w(p_n) · x(p0 + p_n + Δp_n), the offsets Δp_n
predicted by a convolution of the same kernel over the input (2N channels, zero-initialised,
§2.1), x read at fractional positions by bilinear interpolation G(q, p) = g(q_y, p_y) ·
g(q_x, p_x), g(a, b) = max(0, 1 − |a − b|), summed over the integer positions q of the map
(outside the map x is 0: the convolution's zero padding).
Layouts: the offsets are (Δy, Δx) per kernel position, row-major (as torchvision's
deform_conv2d); the kernel is stored [k, k, out, C], kernel position first, the order of
the spec's per-head value maps. No bias on the deformable convolution itself.
`modulation=True` is DCNv2 (Zhu, Hu, Lin, Dai, "Deformable ConvNets v2: More Deformable,
Better Results", CVPR 2019, arXiv:1811.11168, Eq. 3): y(p0) = Σ_n w(p_n) ·
x(p0 + p_n + Δp_n) · Δm_n, Δm_n the sigmoid of a zero-initialised convolution of the input,
as in the authors' ModulatedDeformConv2dPack (mmcv), whose one conv_offset of 3N channels
(offsets, then masks) is split here into conv_offset and conv_mask. `modulation_scale=2` is
the authors' own DCNv2 example (msracver/Deformable-ConvNets, DCNv2_op/example_symbol.py:
conv2_mask = 2 * sigmoid(...), so 1 at first, a plain deformable convolution).
`stride`, `dilation` and `deformable_groups` as the authors' DeformableConvolution
(msracver/Deformable-ConvNets: stride, dilate, num_deformable_group; mmcv's DeformConv2d):
output position p0 reads the input at s·p0 + d·p_n + Δp_n (padding d·(k − 1)/2, so
⌈n / s⌉ outputs per axis), the offset (and mask) convolutions strided and dilated alike;
with G deformable groups the channels split into G groups, group g sampled at its own
offsets, channels [2·(g·k² + n), +1] of the offset map (and channel g·k² + n of the mask):
torchvision's deform_conv2d layout. The kernel is stored [G, k, k, out, C / G].
"""

import torch
from torch import nn


class Deformable(nn.Module):
    """x: [B, C, H, W] -> [B, out, H, W]."""

    def __init__(self, C: int, out: int | None = None, kernel: int = 3, stride: int = 1,
                 dilation: int = 1, deformable_groups: int = 1, modulation: bool = False,
                 modulation_scale: float = 1.0):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"Deformable: the kernel must be odd, got {kernel}")
        if C % deformable_groups:
            raise ValueError(f"Deformable: {deformable_groups} groups do not divide C={C}")
        out = C if out is None else out
        self.kernel, self.modulation_scale = kernel, modulation_scale
        self.stride, self.dilation, self.groups = stride, dilation, deformable_groups
        points = deformable_groups * kernel * kernel
        same = dict(stride=stride, padding=dilation * (kernel // 2), dilation=dilation)
        self.conv_offset = nn.Conv2d(C, 2 * points, kernel, **same)
        nn.init.zeros_(self.conv_offset.weight)  # start as a plain convolution (§2.1)
        nn.init.zeros_(self.conv_offset.bias)
        self.conv_mask = None
        if modulation:  # DCNv2: a scalar in [0, 1] per kernel position, 0.5 at first
            self.conv_mask = nn.Conv2d(C, points, kernel, **same)
            nn.init.zeros_(self.conv_mask.weight)
            nn.init.zeros_(self.conv_mask.bias)
        # a submodule, so that the kernel follows the offset convolution in state_dict()
        self.kernel_maps = nn.ParameterDict({"weight": nn.Parameter(
            torch.randn(deformable_groups, kernel, kernel, out, C // deformable_groups)
            * C ** -0.5)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, r, s, d = self.kernel, self.kernel // 2, self.stride, self.dilation
        offset = self.conv_offset(x)  # [B, 2·G·k·k, H', W']
        mask = (self.modulation_scale * torch.sigmoid(self.conv_mask(x))
                if self.conv_mask is not None else None)
        h, w = offset.shape[2:]
        ys = s * torch.arange(h, dtype=x.dtype, device=x.device)[:, None]  # input rows
        xs = s * torch.arange(w, dtype=x.dtype, device=x.device)[None, :]
        y = 0
        for g, channels in enumerate(x.chunk(self.groups, dim=1)):
            for i, j in ((i, j) for i in range(k) for j in range(k)):
                n = g * k * k + i * k + j  # this group's kernel position (i, j)
                py = ys + d * (i - r) + offset[:, 2 * n]  # [B, H', W']
                px = xs + d * (j - r) + offset[:, 2 * n + 1]
                sampled = _bilinear(channels, py, px)
                if mask is not None:
                    sampled = sampled * mask[:, n, None]
                kernel = self.kernel_maps["weight"][g, i, j]  # [out, C / G]
                y = y + torch.einsum("oc,bchw->bohw", kernel, sampled)
        return y


def _bilinear(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] read at fractional (py, px) [B, H', W']: Σ over the four integer
    neighbours q of G(q, p) · x(q), neighbours outside the map contributing 0."""
    b, c, h, w = x.shape
    y0, x0 = py.floor(), px.floor()
    flat = x.flatten(2)  # [B, C, HW]
    total = 0
    for qy in (y0, y0 + 1):
        for qx in (x0, x0 + 1):
            g = (1 - (py - qy).abs()).clamp(min=0) * (1 - (px - qx).abs()).clamp(min=0)
            inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
            index = (qy.clamp(0, h - 1) * w + qx.clamp(0, w - 1)).long().flatten(1)
            values = flat.gather(2, index[:, None, :].expand(b, c, -1)).view(b, c, *py.shape[1:])
            total = total + values * (g * inside)[:, None]
    return total
