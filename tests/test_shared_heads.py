"""`heads M, kv = G`: keys and values in G heads, each shared by M / G query heads
(multi-query and grouped-query attention), against the definition written out: the G key
and value heads repeated for the query heads that read them (docs/language.md §5)."""

import math

import pytest
import torch
from counting import flops_both_ways  # tests/counting.py
from torch.utils.flop_counter import FlopCounterMode

import attnspec
from attnspec import count
from attnspec.lower import lower
from attnspec.passes import fuse

SPECS = """
attention Tokens(D: int, M: int = 4, G: int = 2, causal: bool = false) {
    input  x: [B, N, D]
    input  pad: [B, N] bool optional
    over   positions(N)
    range  causal if causal else all
    mask   pad
    heads  M, kv = G
    weight softmax(E1(query = linear(D), key = linear(D / M * G)) / sqrt(D / M))
    value  linear(D / M * 3 * G)
    output linear(D)
}

attention Map(C: int, M: int = 4, G: int = 2) {
    input  x: [B, C, H, W]
    over   positions(H W)
    range  all
    heads  M, kv = G
    weight softmax(E1(query = conv1x1(C), key = conv1x1(C / M * G)) / sqrt(C / M))
    value  conv1x1(C / M * G)
    output conv1x1(C)
}

attention Linear(D: int, M: int = 4, G: int = 1) {
    input  x: [B, N, D]
    over   positions(N)
    range  all
    heads  M, kv = G
    weight identity(E1(query = linear(D), key = softmax(linear(x, D / M * G), over = N)))
    value  linear(D / M * G)
    output identity
}
"""

SETTINGS = [(4, 4), (4, 2), (4, 1), (6, 3)]


def shared(t: torch.Tensor, m: int) -> torch.Tensor:
    """[B, G, ...] → [B, M, ...]: key/value head g read by query heads g·M/G … ."""
    return t.repeat_interleave(m // t.shape[1], dim=1)


def by_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, F] → [B, heads, N, F / heads]."""
    return t.unflatten(-1, (heads, -1)).transpose(1, 2)


def attend(q, k, v, m: int, g: int, scale: float, fill=None) -> torch.Tensor:
    """The M heads, each with its group's key and value: [B, N, M·dv]."""
    q, k, v = by_heads(q, m), shared(by_heads(k, g), m), shared(by_heads(v, g), m)
    logits = q @ k.transpose(-1, -2) * scale
    if fill is not None:
        logits = logits.masked_fill(fill, -math.inf)
    return (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)


@pytest.mark.parametrize("m, g", SETTINGS)
@pytest.mark.parametrize("causal", [False, True])
def test_tokens_with_shared_keys_and_values(m, g, causal):
    torch.manual_seed(0)
    mod = attnspec.compile_text(SPECS, "Tokens", D=12, M=m, G=g, causal=causal).double()
    wq, bq, wk, bk, wv, bv, wo, bo = mod.parameters()
    assert wk.shape == (12 // m * g, 12) and wv.shape == (12 // m * 3 * g, 12)
    x = torch.randn(2, 5, 12, dtype=torch.float64, requires_grad=True)
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    fill = pad[:, None, None, :]
    if causal:
        fill = fill | torch.ones(5, 5, dtype=torch.bool).triu(1)
    y = attend(x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv, m, g, (12 / m) ** -0.5, fill)
    expected = y @ wo.T + bo
    got = mod(x, pad)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(got.sum(), [x, wk, wv])
    torch.testing.assert_close(grads, torch.autograd.grad(expected.sum(), [x, wk, wv]),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("m, g", SETTINGS)
def test_a_map_with_shared_keys_and_values(m, g):
    torch.manual_seed(0)
    mod = attnspec.compile_text(SPECS, "Map", C=12, M=m, G=g).double()
    x = torch.randn(2, 12, 3, 4, dtype=torch.float64)
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = zip(*[iter(mod.parameters())] * 2)
    tokens = x.flatten(2).transpose(1, 2)  # [B, N, C]
    y = attend(tokens @ wq.flatten(1).T + bq, tokens @ wk.flatten(1).T + bk,
               tokens @ wv.flatten(1).T + bv, m, g, (12 / m) ** -0.5)
    expected = (y @ wo.flatten(1).T + bo).transpose(1, 2).reshape(2, 12, 3, 4)
    torch.testing.assert_close(mod(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m, g", SETTINGS)
def test_unnormalised_weights_sum_the_shared_keys_first(m, g):
    """identity(E1) lowers to q (Kᵀ V): with kv = G the state is computed per key head."""
    torch.manual_seed(0)
    mod = attnspec.compile_text(SPECS, "Linear", D=12, M=m, G=g).double()
    assert "linear_attention" in {n.op for n in fuse(attnspec.build_ir(
        SPECS, "Linear", D=12, M=m, G=g)).nodes()}
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    wq, bq, wk, bk, wv, bv = mod.parameters()
    q, k, v = by_heads(x @ wq.T + bq, m), by_heads((x @ wk.T + bk).softmax(1), g), \
        by_heads(x @ wv.T + bv, g)
    expected = (q @ shared(k, m).transpose(-1, -2) @ shared(v, m)).transpose(1, 2).flatten(2)
    torch.testing.assert_close(mod(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name, params, shape", [
    ("Tokens", dict(D=12, M=4, G=2), (2, 5, 12)), ("Tokens", dict(D=12, M=6, G=3), (2, 5, 12)),
    ("Map", dict(C=12, M=4, G=1), (2, 12, 3, 4)), ("Linear", dict(D=12, M=4, G=2), (2, 5, 12))])
def test_flops_with_shared_heads_are_torch_s(name, params, shape):
    ir = attnspec.build_ir(SPECS, name, **params)
    x = torch.randn(shape)
    ours, torchs = flops_both_ways(ir, x)
    assert ours == torchs
    fused = fuse(attnspec.build_ir(SPECS, name, **params))
    counted = count.flops(fused, count.bindings_for(ir, shape))
    if "sdpa" in {n.op for n in fused.nodes()}:  # the same products, in torch's kernel
        assert counted == ours
    else:  # what the generated code multiplies (q (Kᵀ V) for Linear)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            lower(fused)(x)
        assert counted == counter.get_total_flops()


@pytest.mark.parametrize("change, code, where", [
    ("heads  M, kv = G", "heads", dict(G=3)),          # 3 does not divide 4 heads
    ("heads  M, kv = G", "heads", dict(G=0)),
    ("heads  M, kv = G, kv = G", "duplicate-argument", {}),
    ("heads  M, groups = G", "wrong-arity", {}),
    ("range  all, kv = G", "wrong-arity", {}),
])
def test_kv_is_checked(change, code, where):
    text = SPECS.split("attention Map")[0].replace("heads  M, kv = G", change, 1)
    if change.startswith("range"):
        text = text.replace("range  causal if causal else all", change)
    with pytest.raises(attnspec.SpecError) as err:
        attnspec.compile_text(text, "Tokens", D=12, **where)
    assert err.value.diagnostics[0].code == code


def test_keys_must_have_the_shared_width():
    text = SPECS.split("attention Map")[0].replace("key = linear(D / M * G)", "key = linear(D)")
    with pytest.raises(attnspec.SpecError) as err:
        attnspec.compile_text(text, "Tokens", D=12, G=2)
    assert err.value.diagnostics[0].code == "axis-mismatch"
    assert "with kv = 2, the key's width is 6" in str(err.value)


def test_per_head_key_scores_are_not_shared():
    text = """
attention Pool(D: int) {
    input  x: [B, N, D]
    over   positions(N)
    range  all
    heads  4, kv = 2
    weight softmax(E3(key = linear(4)))
    value  linear(D)
    output identity
}
"""
    with pytest.raises(attnspec.SpecError) as err:
        attnspec.compile_text(text, D=8)
    assert err.value.diagnostics[0].code == "unsupported"
