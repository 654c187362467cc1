"""Linear attention (the "linear transformer").

Paper: Katharopoulos, Vyas, Pappas, Fleuret, "Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention", ICML 2020, arXiv:2006.16236 (Eqs. 4–7, 9–12).
Official code: idiap/fast-transformers, `AttentionLayer` (query/key/value projections
d_model → d_keys·n_heads and an output projection, all with bias) around `LinearAttention`
(φ = elu + 1; φ(K) multiplied by the key-length mask; KV = Σ_s φ(k_s) v_sᵀ;
Z = 1 / (φ(q)·Σ_s φ(k_s) + eps), eps = 1e-6) and `CausalLinearAttention` (the same sums over
s ≤ i: their causal_product kernel, written here as cumulative sums).
"""

import torch
import torch.nn.functional as F
from torch import nn


class LinearAttention(nn.Module):
    """x: [B, N, D] -> [B, N, D]; pad: [B, N] bool, True marks a key to ignore."""

    def __init__(self, D: int, M: int = 8, causal: bool = False, eps: float = 1e-6,
                 d_keys: int | None = None, d_values: int | None = None):
        super().__init__()
        self.M, self.causal, self.eps = M, causal, eps
        d_keys, d_values = d_keys or D // M, d_values or D // M  # AttentionLayer's defaults
        self.query_projection = nn.Linear(D, d_keys * M)
        self.key_projection = nn.Linear(D, d_keys * M)
        self.value_projection = nn.Linear(D, d_values * M)
        self.out_projection = nn.Linear(d_values * M, D)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        heads = (B, N, self.M, -1)
        q = F.elu(self.query_projection(x).view(heads)) + 1  # [B, N, M, d_keys]
        k = F.elu(self.key_projection(x).view(heads)) + 1
        v = self.value_projection(x).view(heads)  # [B, N, M, d_values]
        if pad is not None:
            k = k * (~pad)[:, :, None, None].to(k.dtype)
        if self.causal:  # running sums over s <= i
            kv = torch.einsum("nshd,nshm->nshdm", k, v).cumsum(dim=1)
            z = 1 / (torch.einsum("nlhd,nlhd->nlh", q, k.cumsum(dim=1)) + self.eps)
            y = torch.einsum("nlhd,nlhdm,nlh->nlhm", q, kv, z)
        else:
            kv = torch.einsum("nshd,nshm->nhdm", k, v)
            z = 1 / (torch.einsum("nlhd,nhd->nlh", q, k.sum(dim=1)) + self.eps)
            y = torch.einsum("nlhd,nhdm,nlh->nlhm", q, kv, z)
        return self.out_projection(y.reshape(B, N, -1))
