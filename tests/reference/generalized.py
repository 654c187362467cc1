"""Generalized attention module (spatial attention with four energy terms).

Paper: Zhu, Cheng, Zhang, Lin, Dai, "An Empirical Study of Spatial Attention Mechanisms in
Deep Networks", ICCV 2019, arXiv:1904.05873 (§3, Eq. 2-3).
Official code: mmcv's GeneralizedAttention (mmcv/cnn/bricks/generalized_attention.py).
Per head m, the energy of query q and key k is the sum of the enabled terms (no 1/sqrt(d)):
  E1 = z_q^T W_m^Q^T W_m^K x_k       query content . key content
  E2 = z_q^T W_m^Q^T V_m^R R_{q,k}   query content . relative position
  E3 = u_m^T W_m^K x_k               key content only (saliency)
  E4 = v_m^T V_m^R R_{q,k}           relative position only
Keys/values come from x subsampled by kv_stride; queries are every input position.
R is a sinusoidal embedding of the y and x offsets, each axis projected separately and the
two axis energies summed; both geometric terms are divided by sqrt(2) as in mmcv.
Softmax over keys, values per head, 1x1 projection back to C, out = gamma * proj + x with
gamma starting at 0.

Differences from mmcv, all deliberate:
- mmcv has two Linears, appr_geom_fc_y and appr_geom_fc_x (position_dim/2 -> inner each),
  applied to the y and x embeddings. Here one Linear `appr_geom_fc` (position_dim -> inner)
  holds both: weight[:, :position_dim//2] is mmcv's fc_y (H axis), weight[:, position_dim//2:]
  is fc_x (W axis). It is the same map as a Linear on [emb_y, emb_x].
- spatial_range >= 0: a query at (qy, qx) sees the key of index (ky, kx) iff
  |qy - kv_stride*ky| <= spatial_range and |qx - kv_stride*kx| <= spatial_range, a symmetric
  window in input coordinates built for any H, W. mmcv's precomputed map is not reproduced:
  its slice end (iy + r + 1)//s + 1 admits one extra key row/column on the high side (and its
  floored start one more on the low side when kv_stride > 1), and it exists only for
  C in {256, 512} (max_len hard-coded to 84 / 42).
  spatial_range < kv_stride - 1 is rejected: some queries would see no key (NaN rows).
- Only term E3 on ("0010"): mmcv pools one context vector per sample (all queries share the
  energies) and broadcasts it onto x; that is reproduced. With spatial_range >= 0 the queries
  no longer share their keys, so this reference masks per query (mmcv would apply query
  (0, 0)'s window to the pooled vector).
- E2 without E4 ("x1x0"): mmcv reuses the (w, h)-permuted query for the y-axis energy, which
  fails for H != W and uses the transposed query position for H == W. This reference uses
  each query's own content for both axes, as in the "x1x1" branch and the paper.
- q_stride > 1 (mmcv's q_downsample, AvgPool2d(1, q_stride)): the queries are every
  q_stride-th position, their relative positions read at i·q_stride (mmcv's
  get_position_embedding), the result interpolated back bilinearly; with spatial_range the
  window is taken in input positions, |q_stride·q − kv_stride·k| ≤ r (mmcv's precomputed
  map indexes the subsampled query grid as if it were the input's).
- Parameter names: mmcv's appr_bias (u), geom_bias (v) and gamma are stored here as
  biases.appr_bias, biases.geom_bias and residual.gamma, so that the state_dict order is
  query_conv, key_conv, appr_geom_fc, u, v, value_conv, proj_conv, gamma.
"""

import math

import torch
from torch import nn


class Generalized(nn.Module):
    """x: [B, C, H, W] -> [B, C, H, W]; e1..e4 = mmcv's attention_type characters."""

    def __init__(self, C: int, M: int = 9, e1: bool = True, e2: bool = True, e3: bool = True,
                 e4: bool = True, spatial_range: int = -1, position_dim: int | None = None,
                 magnitude: int = 1, kv_stride: int = 2, q_stride: int = 1):
        super().__init__()
        if not (e1 or e2 or e3 or e4):
            raise ValueError("Generalized: at least one of e1..e4 must be on")
        d = C // M
        if d < 1:
            raise ValueError(f"Generalized: C // M must be >= 1, got C={C}, M={M}")
        P = C if position_dim is None else position_dim
        # sin and cos of P/4 frequencies per axis: each axis half is P/2 wide.
        if P < 4 or P % 4 != 0:
            raise ValueError(f"Generalized: position_dim must be a positive multiple of 4, "
                             f"got {P}")
        if kv_stride < 1 or q_stride < 1:
            raise ValueError(f"Generalized: strides must be >= 1, got {kv_stride}, {q_stride}")
        if 0 <= spatial_range < kv_stride - 1:
            raise ValueError(f"Generalized: spatial_range must be -1 or >= kv_stride - 1 "
                             f"(else some queries see no key), got {spatial_range}")
        inner = d * M  # mmcv's floor: C=16, M=3 gives 15
        self.M, self.d, self.inner, self.P = M, d, inner, P
        self.e1, self.e2, self.e3, self.e4 = e1, e2, e3, e4
        self.spatial_range, self.magnitude, self.kv_stride = spatial_range, magnitude, kv_stride
        self.q_stride = q_stride

        # state_dict order: query_conv, key_conv, appr_geom_fc, appr_bias, geom_bias,
        # value_conv, proj_conv, gamma; each created only when mmcv creates it. A module's own
        # parameters come before its children's, so u, v and gamma live in ParameterDicts.
        convs = []
        if e1 or e2:
            self.query_conv = nn.Conv2d(C, inner, kernel_size=1, bias=False)
            convs.append(self.query_conv)
        if e1 or e3:
            self.key_conv = nn.Conv2d(C, inner, kernel_size=1, bias=False)
            convs.append(self.key_conv)
        if e2 or e4:
            self.appr_geom_fc = nn.Linear(P, inner, bias=False)  # [fc_y | fc_x]
        stdv = 1.0 / math.sqrt(d * 2)
        if e3 or e4:
            self.biases = nn.ParameterDict()  # insertion-ordered: appr_bias then geom_bias
        if e3:
            self.biases["appr_bias"] = nn.Parameter(torch.empty(inner).uniform_(-stdv, stdv))
        if e4:
            self.biases["geom_bias"] = nn.Parameter(torch.empty(inner).uniform_(-stdv, stdv))
        self.value_conv = nn.Conv2d(C, inner, kernel_size=1, bias=False)
        self.proj_conv = nn.Conv2d(inner, C, kernel_size=1, bias=True)
        convs += [self.value_conv, self.proj_conv]
        # gamma starts at 0: the block starts as the identity.
        self.residual = nn.ParameterDict({"gamma": nn.Parameter(torch.zeros(1))})

        # mmcv init: kaiming_uniform(a=1, fan_in), zero bias; each fc half has fan_in P/2.
        with torch.no_grad():
            for conv in convs:
                nn.init.kaiming_uniform_(conv.weight, a=1, mode="fan_in",
                                         nonlinearity="leaky_relu")
            if e2 or e4:
                for half in self.appr_geom_fc.weight.split(P // 2, dim=1):
                    nn.init.kaiming_uniform_(half, a=1, mode="fan_in",
                                             nonlinearity="leaky_relu")
            nn.init.zeros_(self.proj_conv.bias)

    def _axis_geometry(self, n_q: int, n_k: int, weight: torch.Tensor) -> torch.Tensor:
        """V^R R for one axis, divided by sqrt(2): [M, n_q, n_k, d]."""
        dtype, device = weight.dtype, weight.device
        pos_q = torch.arange(n_q, dtype=dtype, device=device) * self.q_stride
        pos_k = torch.arange(n_k, dtype=dtype, device=device) * self.kv_stride
        diff = (pos_q[:, None] - pos_k[None, :]) * self.magnitude  # [n_q, n_k]
        feat_range = torch.arange(self.P // 4, dtype=dtype, device=device)
        dim_mat = torch.tensor(1000.0, dtype=dtype, device=device) ** ((4.0 / self.P) * feat_range)
        arg = diff[..., None] / dim_mat  # [n_q, n_k, P/4]
        emb = torch.cat((arg.sin(), arg.cos()), dim=-1)  # [n_q, n_k, P/2]
        geo = nn.functional.linear(emb, weight) / math.sqrt(2)  # [n_q, n_k, inner]
        return geo.view(n_q, n_k, self.M, self.d).permute(2, 0, 1, 3)

    def forward(self, x_input: torch.Tensor) -> torch.Tensor:
        x = x_input[:, :, ::self.q_stride, ::self.q_stride]  # mmcv's q_downsample
        B, C, H, W = x.shape
        M, d, s = self.M, self.d, self.kv_stride
        x_kv = x_input[:, :, ::s, ::s]  # = mmcv's AvgPool2d(kernel_size=1, stride=s)
        Hk, Wk = x_kv.shape[-2:]
        N = Hk * Wk
        # Only E3: every query has the same energies, so mmcv pools one vector per sample.
        # A spatial window breaks that sharing, hence per-query output there.
        pooled = self.e3 and not (self.e1 or self.e2 or self.e4) and self.spatial_range < 0
        Hq, Wq = (1, 1) if pooled else (H, W)

        energy = torch.zeros((), dtype=x.dtype, device=x.device)
        if self.e1 or self.e2:
            q = self.query_conv(x).view(B, M, d, H * W).transpose(2, 3)  # [B, M, HW, d]
        if self.e1 or self.e3:
            k = self.key_conv(x_kv).view(B, M, d, N)  # [B, M, d, N]
        if self.e1:
            energy = energy + q @ k  # [B, M, HW, N]
        if self.e3:
            u = self.biases["appr_bias"].view(1, M, 1, d)
            energy = energy + u @ k  # [B, M, 1, N]: the same for every query
        if self.e2 or self.e4:
            w_y, w_x = self.appr_geom_fc.weight.split(self.P // 2, dim=1)
            geo_y = self._axis_geometry(H, Hk, w_y)  # [M, H, Hk, d]
            geo_x = self._axis_geometry(W, Wk, w_x)  # [M, W, Wk, d]
            e_y = e_x = torch.zeros((), dtype=x.dtype, device=x.device)
            if self.e2:
                qg = q.reshape(B, M, H, W, d)
                e_y = e_y + torch.einsum("bmhwd,mhkd->bmhwk", qg, geo_y)  # [B, M, H, W, Hk]
                e_x = e_x + torch.einsum("bmhwd,mwld->bmhwl", qg, geo_x)  # [B, M, H, W, Wk]
            if self.e4:
                v = self.biases["geom_bias"].view(M, 1, 1, d)
                e_y = e_y + (geo_y * v).sum(-1)[None, :, :, None, :]  # [1, M, H, 1, Hk]
                e_x = e_x + (geo_x * v).sum(-1)[None, :, None, :, :]  # [1, M, 1, W, Wk]
            # y energy is shared along key columns, x energy along key rows.
            geo = e_y[..., :, None] + e_x[..., None, :]  # [., M, H, W, Hk, Wk]
            energy = energy + geo.reshape(geo.shape[0], M, H * W, N)
        energy = energy.expand(B, M, Hq * Wq, N)

        if self.spatial_range >= 0:
            r = self.spatial_range
            qs = self.q_stride
            ok_y = (qs * torch.arange(H, device=x.device)[:, None]
                    - s * torch.arange(Hk, device=x.device)[None, :]).abs() <= r  # [H, Hk]
            ok_x = (qs * torch.arange(W, device=x.device)[:, None]
                    - s * torch.arange(Wk, device=x.device)[None, :]).abs() <= r  # [W, Wk]
            allowed = (ok_y[:, None, :, None] & ok_x[None, :, None, :]).reshape(H * W, N)
            energy = energy.masked_fill(~allowed, float("-inf"))

        attn = energy.softmax(dim=-1)  # [B, M, Q, N]
        v = self.value_conv(x_kv).view(B, M, d, N)
        out = (attn @ v.transpose(2, 3)).transpose(2, 3)  # [B, M, d, Q]
        out = self.proj_conv(out.reshape(B, self.inner, Hq, Wq))  # channel = m * d + j
        if self.q_stride > 1:  # mmcv: back to the input's size, bilinear, corners false
            out = nn.functional.interpolate(out, size=x_input.shape[2:], mode="bilinear",
                                            align_corners=False)
        # the pooled case: [B, C, 1, 1] broadcast onto x
        return self.residual["gamma"] * out + x_input
