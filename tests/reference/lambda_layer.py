"""Lambda layer (multi-query, content and position lambdas) of LambdaNetworks.

Paper: Irwan Bello, "LambdaNetworks: Modeling Long-Range Interactions Without Attention",
ICLR 2021, arXiv:2102.08602: §3.1 (content and position lambdas), §3.2 (multi-query
lambdas), Fig. 3 and Appendix B.1 (the layer's pseudo-code, with the lambda convolution).
Official code: none released (the paper's footnote promises code and checkpoints; no
repository by the author was found). This reference follows the paper's pseudo-code,
`lambda_layer(queries, keys, embeddings, values)` and `compute_position_lambdas`
(einsum over position embeddings E [n, m, k], or the lambda convolution), for images,
with the normalisations the paper describes (batch normalisation of the queries and the
values, a softmax of the keys over the context positions).

For an input x [B, C, H, W] (n = m = H·W positions), with |k| = k, |h| = h, |u| = 1 and
|v| = d / h:
  queries  Q = BN(conv1x1(x, h·k))           h heads of k (head-major channels, 'bhnk')
  keys     K = softmax_m(conv1x1(x, k))      one key of depth k, normalised over positions
  values   V = BN(conv1x1(x, v))             one value of depth v, shared by the h heads
  content lambda    λ^c   = Σ_m K_m V_mᵀ                         [k, v]     ('bmk,bmv->bkv')
  position lambdas  λ^p_n = Σ_m E_nm V_mᵀ                        [n, k, v]  ('nmk,bmv->bnkv')
  output            y_n   = concat_h( q_n^h (λ^c + λ^p_n) )      d = h·v    ('bnhv' -> [b, n, d])
The projections have no bias (the paper's linear maps W_Q, W_K, W_V).

Position embeddings E_nm, translation-equivariant: E_nm depends on the key's offset from
the query, (m_y − n_y, m_x − n_x), only (zero where no embedding is defined):
  - r > 0 (default 23: the paper's ImageNet scope |m| = 23×23): the lambda convolution, a
    conv3d of the values [B, 1, v, H, W] with an r×r kernel per key channel ([k, 1, 1, r,
    r]), stride 1, zero padding (r − 1) / 2 (torch's cross-correlation, as TF's SAME
    convolution the paper uses). Kernel entry [c, 0, 0, i, j] is E's channel c at the
    offset (i − R, j − R), R = (r − 1) / 2: the key's position minus the query's.
  - r = 0: global context with relative position embeddings, the einsum implementation:
    a table [k, 2·size_h − 1, 2·size_w − 1] of one vector per relative offset, entry
    [c, i, j] at the offset (i − (size_h − 1), j − (size_w − 1)), key minus query;
    E_nm is gathered from it for every pair of positions (no convolution). Every offset of
    a map up to size_h × size_w is in the table (global context); on a larger map the
    offsets beyond it have no embedding (E = 0 there).
Both parameters are laid out [k, rows, columns] with the offsets row-major, y then x, from
−R to R, so a table of one row per offset k − q in that order is the same numbers.

Deviations / notes:
  - LambdaLayer has |u| = 1 (the intra-depth of keys and values); LambdaIntraDepth below
    takes any |u|.
  - Channels-first [B, C, H, W] with 1×1 convs where the pseudo-code is channels-last with
    dense maps (the same maps). BatchNorm with torch's defaults (eps 1e-5, momentum 0.1).
  - Only odd r (a kernel centred on the query, so the scope is symmetric).
  - Initialisation: torch's for the projections, normal(0, k^-0.5) for the embeddings (not
    taken from the paper; the tests copy weights).
  - The parameter order is that of the draft spec (queries, keys, embeddings, values).
  - The BatchNorm outputs pass through an identity that makes their gradient contiguous: a
    workaround for a torch CPU bug (wrong BatchNorm input gradients at batch size 1 when the
    incoming gradient is channels-last strided); values and gradients are unchanged.
"""

import torch
import torch.nn.functional as F
from torch import nn


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose backward makes the incoming gradient contiguous. Works around a
    torch CPU bug (seen in 2.13): BatchNorm's backward at batch size 1 returns a wrong input
    gradient when the gradient it receives is channels-last strided (as a matmul's or an
    einsum's backward gives it here). Changes no value."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class LambdaLayer(nn.Module):
    """x: [B, C, H, W] -> [B, d, H, W]."""

    def __init__(self, C: int, d: int | None = None, k: int = 16, h: int = 4, r: int = 23,
                 size_h: int = 0, size_w: int | None = None):
        super().__init__()
        d = C if d is None else d
        size_w = size_h if size_w is None else size_w
        if d % h:
            raise ValueError(f"LambdaLayer: d = {d} is not a multiple of h = {h}")
        if r < 0 or (r > 0 and r % 2 == 0):
            raise ValueError(f"LambdaLayer: r must be odd (or 0 for global context), got {r}")
        if r == 0 and (size_h < 1 or size_w < 1):
            raise ValueError("LambdaLayer: global context (r = 0) needs size_h, size_w >= 1")
        self.k, self.h, self.v, self.r = k, h, d // h, r
        self.size = (size_h, size_w)
        # Registered in the draft spec's order: queries (conv, BN), keys, the position
        # embeddings, values (conv, BN).
        self.to_q = nn.Conv2d(C, h * k, 1, bias=False)
        self.norm_q = nn.BatchNorm2d(h * k)
        self.to_k = nn.Conv2d(C, k, 1, bias=False)
        if r:  # the lambda convolution's kernel (a submodule: ordered after to_k)
            self.lambda_conv = nn.Conv3d(1, k, (1, r, r), padding=(0, r // 2, r // 2),
                                         bias=False)
            nn.init.normal_(self.lambda_conv.weight, std=k ** -0.5)
        else:  # relative embeddings for global context
            self.position = nn.ParameterDict({"relative": nn.Parameter(
                torch.randn(k, 2 * size_h - 1, 2 * size_w - 1) * k ** -0.5)})
        self.to_v = nn.Conv2d(C, self.v, 1, bias=False)
        self.norm_v = nn.BatchNorm2d(self.v)

    def embeddings(self, H: int, W: int) -> torch.Tensor:
        """Global context: E [n, m, k], E[n, m] = the table's vector at the offset m − n
        (zero beyond the table)."""
        table = self.position.relative
        Rh, Rw = self.size[0] - 1, self.size[1] - 1
        ys = torch.arange(H, device=table.device)
        xs = torch.arange(W, device=table.device)
        dy = (ys[None, :] - ys[:, None])[:, None, :, None]  # [n_y, 1, m_y, 1]: m_y − n_y
        dx = (xs[None, :] - xs[:, None])[None, :, None, :]  # [1, n_x, 1, m_x]: m_x − n_x
        inside = (dy.abs() <= Rh) & (dx.abs() <= Rw)  # [H, W, H, W]
        rows = (dy + Rh).clamp(0, 2 * Rh)
        cols = (dx + Rw).clamp(0, 2 * Rw)
        e = table[:, rows, cols] * inside  # [k, H, W, H, W]
        return e.reshape(self.k, H * W, H * W).permute(1, 2, 0)  # [n, m, k]

    def position_lambdas(self, values: torch.Tensor) -> torch.Tensor:
        """values [B, v, H, W] -> λ^p [B, n, k, v]."""
        B, v, H, W = values.shape
        if self.r:  # the lambda convolution: conv3d over (v, H, W), kernel (1, r, r)
            lam = self.lambda_conv(values.unsqueeze(1))  # [B, k, v, H, W]
            return lam.reshape(B, self.k, v, H * W).permute(0, 3, 1, 2)
        return torch.einsum("nmk,bvm->bnkv", self.embeddings(H, W), values.flatten(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        n = H * W
        queries = _ContiguousGrad.apply(self.norm_q(self.to_q(x)))
        queries = queries.reshape(B, self.h, self.k, n)  # 'bhkn'
        keys = F.softmax(self.to_k(x).reshape(B, self.k, n), dim=-1)  # over the positions m
        values = _ContiguousGrad.apply(self.norm_v(self.to_v(x)))  # [B, v, H, W]
        content_lambda = torch.einsum("bkm,bvm->bkv", keys, values.flatten(2))
        position_lambdas = self.position_lambdas(values)  # [B, n, k, v]
        content_output = torch.einsum("bhkn,bkv->bnhv", queries, content_lambda)
        position_output = torch.einsum("bhkn,bnkv->bnhv", queries, position_lambdas)
        out = (content_output + position_output).reshape(B, n, self.h * self.v)  # [b, n, d]
        return out.transpose(1, 2).reshape(B, self.h * self.v, H, W)


class LambdaIntraDepth(nn.Module):
    """x: [B, C, H, W] -> [B, d, H, W], with intra-depth |u| = u (§3.2; Appendix B.1).

    Keys and values come in u slices: the pseudo-code reshapes the key projection to
    [b, m, k, u] and the value projection to [b, m, v, u], so channel c·u + j holds depth c
    of slice j ('b (k u) h w'). The keys are normalised over the positions m for each
    (depth, slice); the lambdas sum over the slices with the positions:
        λ^c   = einsum('bkum,bvum->bkv', softmax_m(K), V)
        λ^p_n = Σ_{m,u} E_{m−n, k, u} V_{m, v, u}
    the position lambdas by the lambda convolution: a conv3d of the values laid out
    [B, u, v, H, W] (the slices as its input channels) with a kernel [k, u, 1, r, r],
    zero padding (r − 1) / 2. r = 0 is global context over maps up to size × size with
    relative embeddings, a table [k, u, 2·size − 1, 2·size − 1] gathered for every pair
    of positions, E_nm the entry at the offset m − n (zero beyond), as LambdaLayer's.
    Parameters: queries (conv, BN), keys, values (conv, BN), the embeddings, in the spec's
    order.
    """

    def __init__(self, C: int, d: int | None = None, k: int = 16, h: int = 4, u: int = 4,
                 r: int = 23, size: int = 0):
        super().__init__()
        d = C if d is None else d
        if d % h:
            raise ValueError(f"LambdaIntraDepth: d = {d} is not a multiple of h = {h}")
        if r < 0 or (r > 0 and r % 2 == 0) or (r == 0 and size < 1):
            raise ValueError("LambdaIntraDepth: r odd, or r = 0 with size >= 1")
        self.k, self.h, self.u, self.v, self.r, self.size = k, h, u, d // h, r, size
        self.to_q = nn.Conv2d(C, h * k, 1, bias=False)
        self.norm_q = nn.BatchNorm2d(h * k)
        self.to_k = nn.Conv2d(C, k * u, 1, bias=False)
        self.to_v = nn.Conv2d(C, self.v * u, 1, bias=False)
        self.norm_v = nn.BatchNorm2d(self.v * u)
        if r:
            self.lambda_conv = nn.Conv3d(u, k, (1, r, r), padding=(0, r // 2, r // 2),
                                         bias=False)
        else:
            self.position = nn.ParameterDict({"relative": nn.Parameter(  # a submodule,
                torch.randn(k, u, 2 * size - 1, 2 * size - 1))})  # registered after to_v

    def embeddings(self, H: int, W: int) -> torch.Tensor:
        """Global context: E [n, m, k, u], the table's entry at the offset m − n."""
        R = self.size - 1
        ys, xs = torch.arange(H), torch.arange(W)
        dy = (ys[None, :] - ys[:, None])[:, None, :, None]  # m_y − n_y
        dx = (xs[None, :] - xs[:, None])[None, :, None, :]  # m_x − n_x
        inside = (dy.abs() <= R) & (dx.abs() <= R)
        rows, cols = (dy + R).clamp(0, 2 * R), (dx + R).clamp(0, 2 * R)
        e = self.position.relative[:, :, rows, cols] * inside  # [k, u, H, W, H, W]
        return e.reshape(self.k, self.u, H * W, H * W).permute(2, 3, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        n, k, u, v = H * W, self.k, self.u, self.v
        queries = _ContiguousGrad.apply(self.norm_q(self.to_q(x))).reshape(B, self.h, k, n)
        keys = F.softmax(self.to_k(x).reshape(B, k, u, n), dim=-1)
        values = _ContiguousGrad.apply(self.norm_v(self.to_v(x))).reshape(B, v, u, n)
        content_lambda = torch.einsum("bkum,bvum->bkv", keys, values)
        if self.r:
            maps = values.reshape(B, v, u, H, W).transpose(1, 2)  # [B, u, v, H, W]
            position_lambdas = self.lambda_conv(maps).reshape(B, k, v, n)  # [B, k, v, n]
        else:
            position_lambdas = torch.einsum("nmku,bvum->bkvn", self.embeddings(H, W), values)
        out = (torch.einsum("bhkn,bkv->bnhv", queries, content_lambda)
               + torch.einsum("bhkn,bkvn->bnhv", queries, position_lambdas))
        return out.reshape(B, n, self.h * v).transpose(1, 2).reshape(B, self.h * v, H, W)
