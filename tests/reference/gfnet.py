"""GFNet's global filter layer, and the GFNet block around it.

Paper: Rao, Zhao, Zhu, Lu, Zhou, "Global Filter Networks for Image Classification",
NeurIPS 2021, arXiv:2107.00645, §3.2: the token map X [H, W, D] is taken to the frequency
domain by a 2-D FFT over its two spatial axes, multiplied elementwise by a learnable complex
filter K [H, W/2 + 1, D] (one filter per channel; a real signal's spectrum is conjugate
symmetric, so only the rfft's half is kept), and brought back by the inverse 2-D FFT.
Follows the authors' code, raoyongming/GFNet, gfnet.py:

- GlobalFilter(dim, h=14, w=8): a parameter `complex_weight` [h, w, dim, 2] drawn as
  randn * 0.02, the last axis the real and imaginary parts (torch.view_as_complex);
  forward: rfft2 over the two spatial axes with norm="ortho", times the complex weight,
  irfft2 with s = the map's (H, W), norm="ortho". h is the map's height, w = W // 2 + 1.
- Block(dim, mlp_ratio=4., drop=0., drop_path=0., act_layer=GELU, norm_layer=LayerNorm,
  h=14, w=8): ONE residual around everything, x + drop_path(mlp(norm2(filter(norm1(x))))),
  mlp = fc1 (dim -> int(dim * mlp_ratio)), GELU, dropout, fc2, dropout.
- BlockLayerScale(..., init_values=1e-5): the same with a learned per-channel gamma
  (init_values everywhere at first) multiplying the mlp's output (GFNet-H's default block).

Deviations, each kept in the spec too:
- Input laid out [B, H, W, C] instead of the authors' forward(x [B, N, C], spatial_size):
  the same tokens (N = H·W, row-major), the map's size carried by the tensor (the authors
  take a = b = sqrt(N) when spatial_size is None, so a square map; here any H × W whose
  H = h and W // 2 + 1 = w, as their spatial_size=(a, b) allows).
- The authors cast the input to float32 before the FFT (`x.to(torch.float32)`, for
  mixed-precision training: cuFFT's half precision takes only power-of-two sizes) and return
  float32. Here the FFT runs in the input's dtype: the same for float32 input, and float64
  stays float64 (the equivalence tests compare float64 at 1e-10).
- Block: drop_path (stochastic depth) is timm's drop_path, as the authors' DropPath.
  act_layer is GELU and norm_layer is LayerNorm
  with eps = 1e-6, as every GFNet model passes (partial(nn.LayerNorm, eps=1e-6); the Block
  class's own default would be eps 1e-5).
Parameters are registered as in the authors' state_dict, which is also the spec's
evaluation order: GlobalFilter: complex_weight; Block: norm1, filter.complex_weight, norm2,
mlp.fc1, mlp.fc2; BlockLayerScale: gamma first (a parameter of the block itself, listed
before its submodules' by state_dict), then as Block.
"""

import torch
from torch import nn

from ._stochastic_depth import drop_path


class GlobalFilter(nn.Module):
    """x: [B, H, W, C] -> [B, H, W, C], with H = h and W // 2 + 1 = w."""

    def __init__(self, dim: int, h: int = 14, w: int = 8):
        super().__init__()
        self.h, self.w = h, w
        self.complex_weight = nn.Parameter(torch.randn(h, w, dim, 2) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, H, W, _ = x.shape
        if H != self.h or W // 2 + 1 != self.w:
            raise ValueError(f"GlobalFilter: a {H} × {W} map needs h = {H} and "
                             f"w = {W // 2 + 1}, got h = {self.h}, w = {self.w}")
        spectrum = torch.fft.rfft2(x, dim=(1, 2), norm="ortho")       # [B, h, w, C] complex
        spectrum = spectrum * torch.view_as_complex(self.complex_weight)
        return torch.fft.irfft2(spectrum, s=(H, W), dim=(1, 2), norm="ortho")


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class GFNetBlock(nn.Module):
    """x: [B, H, W, C] -> x + mlp(norm2(filter(norm1(x)))), C = dim."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 drop_path: float = 0.0, h: int = 14, w: int = 8):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.filter = GlobalFilter(dim, h=h, w=w)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio), drop)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm2(self.filter(self.norm1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + drop_path(self.branch(x), self.drop_path, self.training)


class GFNetBlockLayerScale(GFNetBlock):
    """x: [B, H, W, C] -> x + gamma * mlp(norm2(filter(norm1(x)))), gamma [C]."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 drop_path: float = 0.0, h: int = 14, w: int = 8, init_values: float = 1e-5):
        super().__init__(dim, mlp_ratio, drop, drop_path, h, w)
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + drop_path(self.gamma * self.branch(x), self.drop_path, self.training)
