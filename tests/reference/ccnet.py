"""Recurrent criss-cross attention (RCCA).

Paper: Huang, Wang, Huang, Huang, Wei, Liu, "CCNet: Criss-Cross Attention for Semantic
Segmentation", ICCV 2019, arXiv:1811.11721 (§3.2 criss-cross attention, §3.3 recurrence).
Official code: speedinghzl/CCNet, CrissCrossAttention in cc_attention/functions.py (the
pure-PyTorch version of the pure-python branch, adopted from
Serge-weihao/CCNet-Pure-Pytorch; master's CUDA op, ca_weight/ca_map, produces an
(H + W - 1)-long affinity per position: the same set, the query once) and RCCAModule
in networks/ccnet.py (`for i in range(recurrence): output = self.pc(output)`: one module
applied again with the same weights; run_local.sh trains and evaluates with
--recurrence 2, the paper's R = 2):
- query and key are 1x1 Conv2d(C, C // 8) with bias, value a 1x1 Conv2d(C, C) with bias,
  gamma = Parameter(zeros(1));
- energy_H: per column, query . key over the H positions of that column, with -inf on
  the diagonal so the query itself is not counted twice; energy_W: per row, over the W
  positions of that row (query included);
- one softmax over the concatenated H + W energies of each position; out_H + out_W are the
  value columns / rows weighted by their part of it; the result is gamma * out + x.
The RCCA head's 3x3 conv/BN layers before and after the recurrence are not part of the
attention module.
"""

import torch
from torch import nn


class CCNet(nn.Module):
    """R applications of one criss-cross attention;  x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, C: int, r: int = 8, R: int = 2):
        super().__init__()
        inner = C // r  # official: in_dim // 8 (floor)
        if inner < 1:
            raise ValueError(f"CCNet: C // r must be >= 1, got C={C}, r={r}")
        if R < 1:
            raise ValueError(f"CCNet: the recurrence R must be >= 1, got {R}")
        self.R = R
        # state_dict order: query, key, value, gamma. A module's own parameters come
        # before its children's, so gamma lives in a ParameterDict registered last.
        self.query_conv = nn.Conv2d(C, inner, kernel_size=1)
        self.key_conv = nn.Conv2d(C, inner, kernel_size=1)
        self.value_conv = nn.Conv2d(C, C, kernel_size=1)
        self.residual = nn.ParameterDict({"gamma": nn.Parameter(torch.zeros(1))})

    def criss_cross(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.query_conv(x), self.key_conv(x), self.value_conv(x)

        # Columns: fold W into the batch, attend along H. [B*W, H, c] @ [B*W, c, H]
        def columns(t):  # [B, c, H, W] -> [B*W, c, H]
            return t.permute(0, 3, 1, 2).reshape(B * W, t.shape[1], H)

        # Rows: fold H into the batch, attend along W. [B*H, W, c] @ [B*H, c, W]
        def rows(t):  # [B, c, H, W] -> [B*H, c, W]
            return t.permute(0, 2, 1, 3).reshape(B * H, t.shape[1], W)

        energy_h = torch.bmm(columns(q).transpose(1, 2), columns(k))  # [B*W, H_q, H_k]
        # The query is in its row AND its column: drop it from the column part so it is
        # counted once (the official code adds a -inf diagonal).
        self_pos = torch.eye(H, dtype=torch.bool, device=x.device)
        energy_h = energy_h.masked_fill(self_pos, float("-inf"))
        energy_h = energy_h.view(B, W, H, H).permute(0, 2, 1, 3)  # [B, H_q, W_q, H_k]
        energy_w = torch.bmm(rows(q).transpose(1, 2), rows(k)).view(B, H, W, W)  # [.., W_k]

        # One softmax over the H + W keys of each query position.
        att = torch.cat([energy_h, energy_w], dim=3).softmax(dim=3)  # [B, H, W, H + W]
        att_h = att[..., :H].permute(0, 2, 1, 3).reshape(B * W, H, H)  # [B*W, H_q, H_k]
        att_w = att[..., H:].reshape(B * H, W, W)  # [B*H, W_q, W_k]

        out_h = torch.bmm(columns(v), att_h.transpose(1, 2))  # [B*W, C, H_q]
        out_h = out_h.view(B, W, C, H).permute(0, 2, 3, 1)  # [B, C, H, W]
        out_w = torch.bmm(rows(v), att_w.transpose(1, 2))  # [B*H, C, W_q]
        out_w = out_w.view(B, H, C, W).permute(0, 2, 1, 3)  # [B, C, H, W]
        return self.residual["gamma"] * (out_h + out_w) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.R):  # RCCA: the same weights every time
            x = self.criss_cross(x)
        return x


class CrissCross3D(nn.Module):
    """The authors' 3-D criss-cross attention (CCNet repository,
    cc_attention/functions3d.py, CrissCrossAttention3D, which they note is borrowed from
    Serge-weihao/CCNet-Pure-Pytorch), x [B, C, H, W, D] -> [B, C, H, W, D]: 1×1×1
    convolutions give q, k (C // r channels, their in_dim // 8) and v (C); each position's
    energies with the positions on its H, W and D lines, one softmax over the H + W + D of
    them, the values summed over the three lines, γ (from 0) times that plus x. Their
    code masks the query itself on the H line only, so it is counted on the W and the D
    lines (twice); the paper's criss-cross path holds it once, as their 2-D module does:
    here it is masked on the W line too. Parameters in the compiled spec's order."""

    def __init__(self, C: int, r: int = 8):
        super().__init__()
        inner = C // r
        self.query_conv = nn.Conv3d(C, inner, kernel_size=1)
        self.key_conv = nn.Conv3d(C, inner, kernel_size=1)
        self.value_conv = nn.Conv3d(C, C, kernel_size=1)
        self.residual = nn.ParameterDict({"gamma": nn.Parameter(torch.zeros(1))})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W, D = x.shape
        q, k, v = self.query_conv(x), self.key_conv(x), self.value_conv(x)

        def line(t, axis):  # [B, c, H, W, D] -> [B·(the other two), c, n along `axis`]
            order = {2: (0, 3, 4, 1, 2), 3: (0, 2, 4, 1, 3), 4: (0, 2, 3, 1, 4)}[axis]
            t = t.permute(*order).contiguous()
            return t.view(-1, t.shape[-2], t.shape[-1])

        inf = float("-inf")
        e_h = torch.bmm(line(q, 2).transpose(1, 2), line(k, 2))  # [B·W·D, H, H]
        e_h = e_h.masked_fill(torch.eye(H, dtype=torch.bool), inf)
        e_h = e_h.view(B, W, D, H, H).permute(0, 3, 1, 2, 4)      # [B, H, W, D, H]
        e_w = torch.bmm(line(q, 3).transpose(1, 2), line(k, 3))  # [B·H·D, W, W]
        e_w = e_w.masked_fill(torch.eye(W, dtype=torch.bool), inf)  # (theirs keeps it)
        e_w = e_w.view(B, H, D, W, W).permute(0, 1, 3, 2, 4)      # [B, H, W, D, W]
        e_d = torch.bmm(line(q, 4).transpose(1, 2), line(k, 4)).view(B, H, W, D, D)
        a = torch.softmax(torch.cat([e_h, e_w, e_d], dim=4), dim=4)
        a_h = a[..., :H].permute(0, 2, 3, 1, 4).reshape(B * W * D, H, H)
        a_w = a[..., H:H + W].permute(0, 1, 3, 2, 4).reshape(B * H * D, W, W)
        a_d = a[..., H + W:].reshape(B * H * W, D, D)
        out_h = torch.bmm(line(v, 2), a_h.transpose(1, 2)).view(B, W, D, -1, H)
        out_w = torch.bmm(line(v, 3), a_w.transpose(1, 2)).view(B, H, D, -1, W)
        out_d = torch.bmm(line(v, 4), a_d.transpose(1, 2)).view(B, H, W, -1, D)
        out = (out_h.permute(0, 3, 4, 1, 2) + out_w.permute(0, 3, 1, 4, 2)
               + out_d.permute(0, 3, 1, 2, 4))
        return self.residual["gamma"] * out + x
