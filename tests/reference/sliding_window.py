"""Longformer's sliding-window (local) self-attention.

Paper: Beltagy, Peters, Cohan, "Longformer: The Long-Document Transformer", 2020,
arXiv:2004.05150, §3.1 (sliding window, dilated sliding window).
Code followed: allenai/longformer, longformer/longformer.py, LongformerSelfAttention (and
its TVM kernel longformer/diagonaled_mm_tvm.py for the dilation), and HuggingFace's
LongformerSelfAttention (transformers, models/longformer), which the authors contributed:
query / key / value nn.Linear(D, D) with bias, the queries divided by sqrt(D / M) after
their bias, each query scored against the 2·(w/2) + 1 keys at offsets i·d_m,
|i| ≤ w/2 (w = attention_window; d_m head m's dilation, as the TVM kernel's per-head
`dilation` tensor: attention_dilation in the last dilated_heads heads, 1 in the others),
locations outside the sequence
set to -inf, padding keys given -10000 (the authors' additive mask), a softmax over the
window and the window's values summed. As the authors' kernels, the scores are computed in
the "diagonal" layout [B, N, M, 2·(w/2) + 1] (each query's window gathered), not as a
dense N × N map, so this is an independent check of the spec's dense window mask.

Deviations, each because the spec cannot express the authors' behaviour:
- `autoregressive` keeps the window's keys up to the
  query (allenai/longformer's autoregressive mode of its TVM kernel); with global tokens
  as well, no query sees a key after it, global or not (the range language's rule:
  causality holds over the whole range, global tokens included);
- attention_probs_dropout_prob drops the probabilities while training, as the authors'
  nn.functional.dropout does (on the window and global slots together, then on the global
  rows' own); its mask is this module's own draw, so two modules agree in eval mode only.
Global attention (attention_mask > 0; `glob` here) follows HuggingFace's
LongformerSelfAttention: a global key leaves every window and joins every row in one of G
slots per sample (G the most global tokens of a sample in the batch, a sample's unused
slots hidden), the softmax running over the slots and the window together; the global
tokens' rows are then computed apart, their queries gathered, against every key, and
written over their local rows. Longformer uses the separate query_global, key_global and
value_global there; SlidingWindow, given global tokens, its own three projections.
The output projection is not part of the module (it is LongformerSelfOutput's dense).
The authors pad the sequence to a multiple of the window before the layer; any N is
accepted here, which equals their result at the real tokens.
"""

import math

import torch
from torch import nn


class SlidingWindow(nn.Module):
    """x: [B, N, D] -> [B, N, D]; forward(x, pad=None), pad: [B, N] bool, True = padding."""

    def __init__(self, D: int, M: int = 16, attention_window: int = 512,
                 attention_dilation: int = 1, dilated_heads: int | None = None,
                 autoregressive: bool = False, attention_probs_dropout_prob: float = 0.0):
        super().__init__()
        if M < 1 or D % M != 0:
            raise ValueError(f"SlidingWindow: D must be divisible by M, got D={D}, M={M}")
        if attention_window < 0 or attention_dilation < 1:
            raise ValueError("SlidingWindow: attention_window >= 0 and attention_dilation >= 1")
        dilated = M if dilated_heads is None else dilated_heads
        self.D, self.M = D, M
        self.one_sided = attention_window // 2
        # one dilation per head, as the authors' TVM kernel takes it
        self.register_buffer("dilation", torch.tensor([1] * (M - dilated)
                                                      + [attention_dilation] * dilated),
                             persistent=False)
        self.autoregressive = autoregressive  # only the window's keys up to the query
        self.dropout = attention_probs_dropout_prob
        # Registration order = state_dict order: query, key, value (weight, bias).
        self.query = nn.Linear(D, D)
        self.key = nn.Linear(D, D)
        self.value = nn.Linear(D, D)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None,
                glob: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(x, pad, glob, (self.query, self.key, self.value))

    @staticmethod
    def zero_padded(probs: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        """The authors zero a padded query's probabilities (is_index_masked): [B, N, M, .]."""
        return probs if pad is None else probs.masked_fill(pad[:, :, None, None], 0.0)

    def attend(self, x, pad, glob, global_projections) -> torch.Tensor:
        """Every row's window and the global keys; the global tokens' rows then replaced
        by their attention over every key through `global_projections`."""
        B, N, D = x.shape
        M, d = self.M, D // self.M
        q = (self.query(x) / math.sqrt(d)).view(B, N, M, d)
        k = self.key(x).view(B, N, M, d)
        v = self.value(x).view(B, N, M, d)

        # key index of diagonal j for query n in head m: n + dilation_m·(j − w), j = 0 … 2w
        w = self.one_sided
        steps = torch.arange(-w, w + 1, device=x.device) * self.dilation[:, None]  # [M, 2w+1]
        where = torch.arange(N, device=x.device)[:, None, None] + steps  # [N, M, 2w+1]
        inside = (where >= 0) & (where < N)
        if self.autoregressive:  # the authors' TVM kernel's one-sided, causal window
            inside = inside & (steps <= 0)
        where = where.clamp(0, N - 1)

        head = torch.arange(M, device=x.device)[:, None]
        k_win = k[:, where, head]  # [B, N, M, 2w+1, d]
        v_win = v[:, where, head]
        scores = torch.einsum("bnmc,bnmjc->bnmj", q, k_win)  # [B, N, M, 2w+1]
        scores = scores.masked_fill(~inside[None], float("-inf"))
        if pad is not None:  # the authors' additive -10000 on padding keys
            padded = pad[:, where]  # [B, N, M, 2w+1]
            scores = scores + padded.to(scores.dtype) * -10000.0
        if glob is None or not glob.any():
            probs = self.drop(self.zero_padded(scores.softmax(dim=-1), pad))  # the window
            return torch.einsum("bnmj,bnmjc->bnmc", probs, v_win).reshape(B, N, D)

        # HuggingFace's layout: a global key leaves the window (remove_from_windowed_
        # attention_mask) and joins every row in one of G slots per sample (G = the most
        # global tokens of a sample; a sample's unused slots hidden)
        scores = scores.masked_fill(glob[:, where], float("-inf"))
        slots, used, tokens = _global_slots(glob)
        position = torch.zeros(B, slots, dtype=torch.long, device=x.device).index_put(
            used, tokens[1])  # the token in each slot
        k_glob = k.new_zeros(B, slots, M, d).index_put(used, k[tokens])
        v_glob = v.new_zeros(B, slots, M, d).index_put(used, v[tokens])
        hidden = ~torch.arange(slots, device=x.device)[None, :].lt(glob.sum(1)[:, None])
        if pad is not None:
            hidden_pad = torch.zeros_like(hidden).index_put(used, pad[tokens])
            hidden = hidden | hidden_pad
        to_global = torch.einsum("bnmc,bgmc->bnmg", q, k_glob)
        hidden = hidden[:, None, None, :]
        if self.autoregressive:  # no query sees a key after it, global or not
            later = position[:, None, :] > torch.arange(N, device=x.device)[None, :, None]
            hidden = hidden | later[:, :, None, :]  # [B, N, 1, G]
        to_global = to_global.masked_fill(hidden, float("-inf"))
        probs = self.drop(self.zero_padded(torch.cat([to_global, scores], dim=-1)
                                           .softmax(dim=-1), pad))
        y = (torch.einsum("bnmg,bgmc->bnmc", probs[..., :slots], v_glob)
             + torch.einsum("bnmj,bnmjc->bnmc", probs[..., slots:], v_win)).reshape(B, N, D)

        # the global rows: each global token against every key (padding hidden)
        query, key, value = global_projections
        x_glob = x.new_zeros(B, slots, D).index_put(used, x[tokens])
        qg = (query(x_glob) / math.sqrt(d)).view(B, slots, M, d)
        kg, vg = key(x).view(B, N, M, d), value(x).view(B, N, M, d)
        rows = torch.einsum("bgmc,bnmc->bmgn", qg, kg)
        if pad is not None:
            rows = rows.masked_fill(pad[:, None, None, :], float("-inf"))
        if self.autoregressive:
            later = torch.arange(N, device=x.device)[None, None, :] > position[:, :, None]
            rows = rows.masked_fill(later[:, None], float("-inf"))  # [B, 1, G, N]
        out = torch.einsum("bmgn,bnmc->bgmc", self.drop(rows.softmax(dim=-1)), vg)
        out = out.reshape(B, slots, D)
        return y.index_put(tokens, out[used])


    def drop(self, probs: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(probs, self.dropout, self.training)


def _global_slots(glob: torch.Tensor):
    """HuggingFace's _get_global_attn_indices: G slots per sample, the (sample, slot)
    indices its global tokens fill, and those tokens' (sample, position) indices."""
    counts = glob.sum(1)
    slots = int(counts.max())
    used = torch.arange(slots, device=glob.device)[None, :] < counts[:, None]
    return slots, used.nonzero(as_tuple=True), glob.nonzero(as_tuple=True)


class Longformer(SlidingWindow):
    """SlidingWindow with the global tokens' rows through their own projections
    (query_global, key_global, value_global), as the authors' LongformerSelfAttention."""

    def __init__(self, D: int, M: int = 16, attention_window: int = 512,
                 attention_dilation: int = 1, dilated_heads: int | None = None,
                 attention_probs_dropout_prob: float = 0.0):
        super().__init__(D, M, attention_window, attention_dilation, dilated_heads, False,
                         attention_probs_dropout_prob)
        self.query_global = nn.Linear(D, D)
        self.key_global = nn.Linear(D, D)
        self.value_global = nn.Linear(D, D)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None,
                glob: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(x, pad, glob, (self.query_global, self.key_global,
                                          self.value_global))
