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
"""

import torch
from torch import nn


class Deformable(nn.Module):
    """x: [B, C, H, W] -> [B, out, H, W]."""

    def __init__(self, C: int, out: int | None = None, kernel: int = 3,
                 modulation: bool = False, modulation_scale: float = 1.0):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"Deformable: the kernel must be odd, got {kernel}")
        out = C if out is None else out
        self.kernel, self.modulation_scale = kernel, modulation_scale
        self.conv_offset = nn.Conv2d(C, 2 * kernel * kernel, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv_offset.weight)  # start as a plain convolution (§2.1)
        nn.init.zeros_(self.conv_offset.bias)
        self.conv_mask = None
        if modulation:  # DCNv2: a scalar in [0, 1] per kernel position, 0.5 at first
            self.conv_mask = nn.Conv2d(C, kernel * kernel, kernel, padding=kernel // 2)
            nn.init.zeros_(self.conv_mask.weight)
            nn.init.zeros_(self.conv_mask.bias)
        # a submodule, so that the kernel follows the offset convolution in state_dict()
        self.kernel_maps = nn.ParameterDict(
            {"weight": nn.Parameter(torch.randn(kernel, kernel, out, C) * C ** -0.5)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k, r = self.kernel, self.kernel // 2
        offset = self.conv_offset(x)  # [B, 2·k·k, H, W]
        mask = (self.modulation_scale * torch.sigmoid(self.conv_mask(x))
                if self.conv_mask is not None else None)
        ys = torch.arange(h, dtype=x.dtype, device=x.device)[:, None]
        xs = torch.arange(w, dtype=x.dtype, device=x.device)[None, :]
        y = 0
        for n in range(k * k):
            i, j = divmod(n, k)
            py = ys + (i - r) + offset[:, 2 * n]  # [B, H, W]
            px = xs + (j - r) + offset[:, 2 * n + 1]
            kernel = self.kernel_maps["weight"][i, j]  # [out, C] at kernel position (i, j)
            sampled = _bilinear(x, py, px)
            if mask is not None:
                sampled = sampled * mask[:, n, None]
            y = y + torch.einsum("oc,bchw->bohw", kernel, sampled)
        return y


def _bilinear(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] read at fractional (py, px) [B, H, W]: Σ over the four integer
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
            values = flat.gather(2, index[:, None, :].expand(b, c, -1)).view(b, c, h, w)
            total = total + values * (g * inside)[:, None]
    return total
