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
                 drop: float = 0.05):
        super().__init__()
        K = C // 2 if K is None else K  # official ResNet-101 setting: 512 -> 256
        V = C // 2 if V is None else V
        if K < 1 or V < 1:
            raise ValueError(f"BaseOC: K and V must be >= 1, got K={K}, V={V}")
        self.K, self.V = K, V
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
        B, _, H, W = x.shape
        value = self.f_value(x).view(B, self.V, H * W).permute(0, 2, 1)  # [B, HW, V]
        query = self.f(x).view(B, self.K, H * W).permute(0, 2, 1)  # [B, HW, K]
        key = self.f(x).view(B, self.K, H * W)  # [B, K, HW]: f applied a second time
        sim = (self.K ** -0.5 * torch.matmul(query, key)).softmax(dim=-1)  # [B, HWq, HWk]
        ctx = torch.matmul(sim, value).permute(0, 2, 1).reshape(B, self.V, H, W)
        return self.W(ctx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = torch.cat([self.context(x), x], dim=1)  # [context, feats]
        fused = F.leaky_relu(self.fuse_bn(self.fuse_conv(fused)), 0.01)  # InPlaceABNSync(C)
        return self.dropout(fused)
