"""Base object context (base-OC): self-attention over positions, concatenated and fused.

Paper: Yuan, Wang, "OCNet: Object Context Network for Scene Parsing", 2018,
arXiv:1809.00916 (§3 object context, base-OC).
Official code: openseg-group/OCNet.pytorch (formerly PkuRainBow/OCNet.pytorch),
oc_module/base_oc_block.py (_SelfAttentionBlock / SelfAttentionBlock2D, BaseOC_Module),
instantiated by network/resnet101_base_oc.py as BaseOC_Module(in_channels=512,
out_channels=512, key_channels=256, value_channels=256, dropout=0.05, sizes=[1]):
- f_key = Sequential(Conv2d(C, K, 1) with bias, InPlaceABNSync(K)) and f_query = f_key,
  the same module, applied twice (so in training its BatchNorm statistics are updated
  twice per forward); f_value = Conv2d(C, V, 1) with bias;
- sim = softmax(key_channels ** -0.5 * queryᵀ key) over the keys (last axis), the
  context is sim @ value, brought back to C channels by W = Conv2d(V, C, 1) whose weight
  and bias are both initialised to zero;
- scale = size = 1: no max-pooling of the input and no upsampling of the context;
- output = Sequential(Conv2d(2C, C, 1) (bias left at its default, True),
  InPlaceABNSync(C), Dropout2d(dropout)) applied to cat([context, feats], dim=1).
InPlaceABNSync (mapillary/inplace_abn, modules/bn.py, the version the repository bundles)
defaults to activation="leaky_relu", slope=0.01, eps=1e-5, momentum=0.1: here it is
BatchNorm2d followed by leaky_relu(0.01). The pyramid and ASPP variants are not included.
"""

import torch
import torch.nn.functional as F
from torch import nn


class BaseOC(nn.Module):
    """Base-OC module;  x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, C: int, K: int | None = None, V: int | None = None,
                 drop: float = 0.05, scale: int = 1):
        super().__init__()
        K = C // 2 if K is None else K  # official ResNet-101 setting: 512 -> 256
        V = C // 2 if V is None else V
        if K < 1 or V < 1:
            raise ValueError(f"BaseOC: K and V must be >= 1, got K={K}, V={V}")
        self.K, self.V, self.scale = K, V, scale
        # Registration order = state_dict order: f (conv, BN), value, W, fuse (conv, BN).
        self.f_conv = nn.Conv2d(C, K, kernel_size=1)  # f_key = f_query
        self.f_bn = nn.BatchNorm2d(K)
        self.f_value = nn.Conv2d(C, V, kernel_size=1)
        self.W = nn.Conv2d(V, C, kernel_size=1)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)
        self.fuse_conv = nn.Conv2d(2 * C, C, kernel_size=1)  # bias=True, as the official
        self.fuse_bn = nn.BatchNorm2d(C)
        self.dropout = nn.Dropout2d(drop)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.f_bn(self.f_conv(x)), 0.01)  # InPlaceABNSync(K)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        if self.scale > 1:  # _SelfAttentionBlock: MaxPool2d(kernel_size=(scale, scale))
            x = F.max_pool2d(x, self.scale)
        B, _, H, W = x.shape
        value = self.f_value(x).view(B, self.V, H * W).permute(0, 2, 1)  # [B, HW, V]
        query = self.f(x).view(B, self.K, H * W).permute(0, 2, 1)  # [B, HW, K]
        key = self.f(x).view(B, self.K, H * W)  # [B, K, HW]: f applied a second time
        sim = (self.K ** -0.5 * torch.matmul(query, key)).softmax(dim=-1)  # [B, HWq, HWk]
        ctx = self.W(torch.matmul(sim, value).permute(0, 2, 1).reshape(B, self.V, H, W))
        if self.scale > 1:
            ctx = F.interpolate(ctx, size=(h, w), mode="bilinear", align_corners=True)
        return ctx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = torch.cat([self.context(x), x], dim=1)  # [context, feats]
        fused = F.leaky_relu(self.fuse_bn(self.fuse_conv(fused)), 0.01)  # InPlaceABNSync(C)
        return self.dropout(fused)


class ObjectContext(nn.Module):
    """The authors' _SelfAttentionBlock / _PyramidSelfAttentionBlock: f (conv + ABN, one
    module for query and key, applied twice), f_value, softmax(K^-1/2 qᵀk) over the keys of
    the query's part (the map cut into `parts` × `parts`, n // parts wide, the last part
    taking the remainder), W (zero-initialised) to `out` channels."""

    def __init__(self, C: int, K: int, V: int, out: int, parts: int = 1):
        super().__init__()
        self.K, self.V, self.parts = K, V, parts
        self.f_conv = nn.Conv2d(C, K, kernel_size=1)
        self.f_bn = nn.BatchNorm2d(K)
        self.f_value = nn.Conv2d(C, V, kernel_size=1)
        self.W = nn.Conv2d(V, out, kernel_size=1)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)

    def f(self, x):
        return F.leaky_relu(self.f_bn(self.f_conv(x)), 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        value, query, key = self.f_value(x), self.f(x), self.f(x)
        s = self.parts
        rows = _bounds(H, s)
        cols = _bounds(W, s)
        out = torch.zeros(B, self.V, H, W, dtype=x.dtype, device=x.device)
        for r0, r1 in rows:  # the authors' loop over the parts, each attending alone
            for c0, c1 in cols:
                if r1 <= r0 or c1 <= c0:
                    continue
                q = query[:, :, r0:r1, c0:c1].flatten(2).transpose(1, 2)
                k = key[:, :, r0:r1, c0:c1].flatten(2)
                v = value[:, :, r0:r1, c0:c1].flatten(2).transpose(1, 2)
                sim = (self.K ** -0.5 * (q @ k)).softmax(dim=-1)
                out[:, :, r0:r1, c0:c1] = (sim @ v).transpose(1, 2).reshape(
                    B, self.V, r1 - r0, c1 - c0)
        return self.W(out)


def _bounds(n: int, s: int) -> list[tuple[int, int]]:
    """The authors' part boundaries: step n // s, the last part ending at n."""
    step = n // s
    return [(i * step, n if i == s - 1 else min(i * step + step, n)) for i in range(s)]


def _abn(C: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(C), nn.LeakyReLU(0.01))  # InPlaceABNSync


class PyramidOC(nn.Module):
    """Pyramid-OC (oc_module/pyramid_oc_block.py, Pyramid_OC_Module with the sizes
    (1, 2, 3, 6) of network/resnet101_pyramid_oc.py, out = in): four object-context stages
    on 1×1, 2×2, 3×3 and 6×6 parts, key channels C/2, value channels C; up_dr (1×1 conv to
    4C + ABN); the concatenation [up_dr(x), stages...] fused by a 1×1 conv (bias), ABN and
    Dropout2d. Registered in the compiled spec's order: the stages, up_dr, then the fusion
    (the authors register the fusion before up_dr; the order does not change the module)."""

    def __init__(self, C: int, drop: float = 0.05):
        super().__init__()
        self.stages = nn.ModuleList([ObjectContext(C, C // 2, C, C, s) for s in (1, 2, 3, 6)])
        self.up_dr = nn.Sequential(nn.Conv2d(C, 4 * C, kernel_size=1), *_abn(4 * C))
        self.fuse = nn.Sequential(nn.Conv2d(8 * C, C, kernel_size=1), *_abn(C),
                                  nn.Dropout2d(drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        priors = [stage(x) for stage in self.stages]
        return self.fuse(torch.cat([self.up_dr(x), *priors], dim=1))


class ASPOC(nn.Module):
    """ASP-OC (oc_module/asp_oc_block.py, ASP_OC_Module): a context branch (3×3 conv with
    bias, ABN, then BaseOC_Context_Module at scale 2: the object context on the 2×2
    max-pooled map, key channels out/2, value channels out, upsampled back bilinearly with
    align_corners=True, then 1×1 conv with bias and ABN) beside a 1×1 conv and three 3×3
    convs dilated d1, d2, d3 (no bias, ABN each); the five concatenated, fused by a 1×1 conv
    to 2·out (no bias), ABN and Dropout2d(drop) (the authors' 0.1)."""

    def __init__(self, C: int, out: int | None = None, d1: int = 12, d2: int = 24,
                 d3: int = 36, drop: float = 0.1):
        super().__init__()
        out = C // 2 if out is None else out
        self.context_conv = nn.Sequential(nn.Conv2d(C, out, 3, padding=1), *_abn(out))
        self.context = ObjectContext(out, out // 2, out, out)
        self.context_out = nn.Sequential(nn.Conv2d(out, out, 1), *_abn(out))
        self.conv2 = nn.Sequential(nn.Conv2d(C, out, 1, bias=False), *_abn(out))
        self.convs = nn.ModuleList([
            nn.Sequential(nn.Conv2d(C, out, 3, padding=d, dilation=d, bias=False), *_abn(out))
            for d in (d1, d2, d3)])
        self.fuse = nn.Sequential(nn.Conv2d(5 * out, 2 * out, 1, bias=False), *_abn(2 * out),
                                  nn.Dropout2d(drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.context_conv(x)
        a = self.context(F.max_pool2d(c, 2))
        a = F.interpolate(a, size=c.shape[2:], mode="bilinear", align_corners=True)
        feats = [self.context_out(a), self.conv2(x), *(conv(x) for conv in self.convs)]
        return self.fuse(torch.cat(feats, dim=1))
