"""The checks test_every_spec.py runs on every file's main definition, run on the other
definitions the shipped files offer as variants (Longformer, LambdaIntraDepth, LSDA,
AFTConv, ...), each with the parameters and first input shape of its equivalence case,
and on variants a parameter or an extra input chooses (q_stride, input_resolution, global
tokens, a dilation per head),
the extra inputs (memory, padding, global tokens) included: torch.compile(fullgraph=True)
and torch.export agree with eager, float64 gradcheck passes, and it draws."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from test_equivalence import CASES, Case, _global_tokens, _pad_mask  # noqa: E402

import attnspec  # noqa: E402
from attnspec.draw import to_dot  # noqa: E402

VARIANTS = list({(c.spec, c.definition): c for c in reversed(CASES) if c.definition}.values())
# variants of main definitions chosen by a parameter or an extra input
VARIANTS += [
    Case("generalized", dict(C=16, M=4, q_stride=2, spatial_range=2), ((2, 16, 5, 6),)),
    Case("crossformer", dict(dim=32, num_heads=2, group_size=7, lsda_flag=1,
                             input_resolution=3), ((2, 3, 6, 32),)),
    Case("sliding_window", dict(D=16, M=2, attention_window=4, autoregressive=True),
         ((2, 9, 16),), pad=True, glob=True),
    Case("sliding_window", dict(D=16, M=4, attention_window=4, attention_dilation=2,
                                dilated_heads=2), ((2, 9, 16),), pad=True),
    Case("gcnet", dict(C=16, ratio=0.25, pooling="avg", fusion="both"), ((2, 16, 5, 6),)),
    Case("eca", dict(C=16, adaptive=False, kernel=5, shared=False), ((2, 16, 5, 6),)),
    Case("sk", dict(C=32, r=4, L=8, G=8, M=3), ((3, 32, 5, 6),)),
    Case("danet", dict(C=16, cam="paper"), ((2, 16, 5, 6),)),
    Case("mobilevit_attn", dict(in_channels=4, transformer_dim=8, ffn_dim=16, head_dim=4),
         ((2, 4, 5, 7),)),
    Case("axial", dict(D=12, M=3, masked=True), ((2, 5, 7, 12),), definition="Column"),
    Case("aft", dict(D=8, causal=True), ((2, 5, 8),)),
    Case("muse", dict(D=8, M=2, causal=True, weight_dropout=0.0), ((2, 5, 8),)),
    Case("attention_pool", dict(D=8, score="location", longest=4, align="local_p",
                                half_width=2), ((2, 5, 8),), definition="Luong", memory=5,
         pad=True),  # the padding mask is the first input's length: S = 5 > longest
]


def _inputs(case, dtype, batch: int | None = None) -> tuple:
    """x and the case's extra inputs, positionally (x, memory or pad, glob)."""
    gen = torch.Generator().manual_seed(0)
    shape = (batch or case.shapes[0][0], *case.shapes[0][1:])
    x = 0.5 * torch.randn(shape, generator=gen, dtype=dtype)
    extra = []
    if case.memory:
        width = case.memory_width or shape[-1]
        extra.append(torch.randn((shape[0], case.memory, width), generator=gen, dtype=dtype))
    pad = _pad_mask(shape[0], shape[1], gen) if case.pad else None
    if case.pad or case.glob:
        extra.append(pad)
    if case.glob:
        extra.append(_global_tokens(shape[0], shape[1], gen, pad))
    return (x, *extra)


@pytest.fixture(params=VARIANTS, ids=lambda c: c.id)
def variant(request):
    case = request.param
    torch.manual_seed(0)
    return case, attnspec.load(case.spec, case.definition, **case.params).eval()


def test_torch_compile_fullgraph_matches_eager(variant):
    case, m = variant
    inputs = _inputs(case, torch.float32)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), m(*inputs))


def test_torch_export_matches_eager(variant):
    case, m = variant
    inputs = _inputs(case, torch.float32)
    exported = torch.export.export(m, inputs)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(*inputs), m(*inputs))


def test_gradcheck_float64(variant):
    case, m = variant
    x, *extra = _inputs(case, torch.float64, batch=1)
    m = m.double()
    assert torch.autograd.gradcheck(lambda t: m(t, *extra), (x.requires_grad_(),), eps=1e-6,
                                   atol=1e-6)


def test_it_draws_one_box_per_attention(variant):
    case, _ = variant
    ir = attnspec.build_ir(attnspec.api.spec_path(case.spec), case.definition, **case.params)
    source = to_dot(ir).source
    assert all(a.name in source for a in ir.attentions)
    assert to_dot(ir).pipe(format="json0")  # graphviz lays it out
