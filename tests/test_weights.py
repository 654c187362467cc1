"""Layers applied to logits and normalised weights ([B, M, Q, K], the heads as channels):
talking-heads attention and ResT's transform; and a layer of each query-key pair, the
additive score; against the definitions written out (docs/language.md §5)."""

import math

import pytest
import torch
import torch.nn.functional as F

import attnspec

TALKING = """
attention Talking(D: int, M: int = 4) {
    input  x: [B, N, D]
    over   positions(N)
    range  all
    heads  M
    weight conv1x1(softmax(conv1x1(E1(query = linear(D), key = linear(D)) / sqrt(D / M), M,
                                   bias = false)), M, bias = false)
    value  linear(D)
    output identity
}
"""


def heads(t: torch.Tensor, m: int) -> torch.Tensor:
    return t.unflatten(-1, (m, -1)).transpose(1, 2)  # [B, M, N, d]


def test_talking_heads_mix_the_heads_before_and_after_the_softmax():
    torch.manual_seed(0)
    m = attnspec.compile_text(TALKING, D=8).double()
    wq, bq, wk, bk, mix_logits, mix_weights, wv, bv = m.parameters()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    q, k, v = heads(x @ wq.T + bq, 4), heads(x @ wk.T + bk, 4), heads(x @ wv.T + bv, 4)
    logits = torch.einsum("nm,bmqk->bnqk", mix_logits[..., 0, 0], q @ k.transpose(-1, -2)
                          / math.sqrt(2))
    weights = torch.einsum("nm,bmqk->bnqk", mix_weights[..., 0, 0], logits.softmax(-1))
    expected = (weights @ v).transpose(1, 2).flatten(2)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


def test_rest_s_transform_is_a_conv_across_heads_then_an_instance_norm_of_the_weights():
    torch.manual_seed(0)
    m = attnspec.load("emsa", C=16, M=4, apply_transform=True).double()
    p = dict(m.named_parameters())
    x = torch.randn(2, 3, 5, 16, dtype=torch.float64)
    tokens = x.flatten(1, 2)
    q = heads(tokens @ p["q_linear.weight"].T, 4)
    k, v = (tokens @ p["kv_linear.weight"].T).chunk(2, dim=-1)
    logits = q @ heads(k, 4).transpose(-1, -2) / math.sqrt(4)
    conv = [t for n, t in p.items() if "conv1x1" in n]  # the transform's weight and bias
    a = F.instance_norm(F.conv2d(logits, *conv).softmax(-1))
    y = (a @ heads(v, 4)).transpose(1, 2).flatten(2)
    expected = (y @ p["output_linear.weight"].T + p["output_linear.bias"]).view(2, 3, 5, 16)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layer", ["conv1x1(E1(query = linear(D), key = linear(D)), 3)",
                                   "mean(E1(query = linear(D), key = linear(D)), N)"])
def test_a_layer_of_weights_must_keep_their_axes(layer):
    text = TALKING.replace("weight conv1x1(softmax(conv1x1(E1(query = linear(D), key = "
                           "linear(D)) / sqrt(D / M), M,\n                                   "
                           "bias = false)), M, bias = false)", f"weight softmax({layer})")
    assert text != TALKING
    with pytest.raises(attnspec.SpecError) as info:
        attnspec.compile_text(text, D=8)
    assert info.value.diagnostics[0].code in ("axis-mismatch", "wrong-type")


ADDITIVE = """
attention Additive(D: int, M: int = 2, causal: bool = false) {{
    input  x: [B, N, D]
    over   positions(N)
    range  causal if causal else all
    heads  M
    weight softmax(E1(query = linear(D, bias = false), key = linear(D, bias = false),
                      combine = {combine}))
    value  identity
    output identity
}}
"""


@pytest.mark.parametrize("causal", [False, True])
def test_an_additive_score_is_a_layer_of_query_plus_key_per_head(causal):
    torch.manual_seed(0)
    spec = ADDITIVE.format(combine="tanh >> linear(1, bias = false)")
    m = attnspec.compile_text(spec, D=8, causal=causal).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    wq, wk, v = m.parameters()  # query, key, then the combining layer (v: [1, D / M])
    heads = lambda t: t.view(3, 5, 2, 4).transpose(1, 2)  # noqa: E731
    q, k = heads(x @ wq.T), heads(x @ wk.T)
    scores = (torch.tanh(q[:, :, :, None] + k[:, :, None]) @ v.T)[..., 0]  # [B, M, N, N]
    if causal:
        scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(-1) @ heads(x)).transpose(1, 2).reshape(3, 5, 8)
    torch.testing.assert_close(m(x), y)
    assert torch.autograd.gradcheck(m, (x[:1, :3].requires_grad_(),))


@pytest.mark.parametrize("combine, code", [
    ("tanh", "wrong-type"),  # no single score: [B, M, N, N', d]
    ("tanh >> linear(2)", "wrong-type"),
    ("3", "wrong-type"),
])
def test_an_additive_score_must_give_one_number_per_pair(combine, code):
    with pytest.raises(attnspec.SpecError) as info:
        attnspec.compile_text(ADDITIVE.format(combine=combine), D=8)
    assert info.value.diagnostics[0].code == code


DRAWN = """
attention Drawn(C: int) {
    input  x: [B, C, H, W]
    over   positions(H W)
    range  all
    weight softmax(E1(query = conv1x1(C, init = normal, std = 0.01),
                      key = conv(C, kernel = 3, groups = 2, init = kaiming, mode = fan_out)))
    value  conv1x1(C, init = uniform, bound = 0.5)
    output linear(permute(y, B H W C), C, init = kaiming)
}
"""


def test_layers_draw_their_weights_as_init_says_and_zero_their_biases():
    torch.manual_seed(0)
    m = attnspec.compile_text(DRAWN, C=64)
    p = dict(m.named_parameters())
    q, k = p["query_conv1x1.weight"], p["key_conv.weight"]
    v, o = p["value_conv1x1.weight"], p["output_linear.weight"]
    assert abs(q.std().item() - 0.01) < 0.001
    assert abs(k.std().item() - math.sqrt(2 / (64 * 9))) < 0.003  # fan_out: out × 3 × 3
    assert abs(o.std().item() - math.sqrt(2 / 64)) < 0.01  # fan_in of a linear: its inputs
    assert v.abs().max().item() <= 0.5 and abs(v.std().item() - 0.5 / math.sqrt(3)) < 0.02
    for name in ("query_conv1x1", "key_conv", "value_conv1x1", "output_linear"):
        assert torch.count_nonzero(p[f"{name}.bias"]) == 0


@pytest.mark.parametrize("layer, code", [
    ("conv1x1(C, std = 0.1)", "wrong-arity"),  # a setting without its init
    ("conv1x1(C, init = kaiming, std = 0.1)", "wrong-arity"),
    ("conv1x1(C, init = normal)", "wrong-type"),  # normal without its std
    ("conv1x1(C, init = uniform, bound = 0)", "wrong-type"),
    ("conv1x1(C, init = kaiming, mode = fan_up)", "wrong-type"),
])
def test_a_drawn_initialisation_is_checked(layer, code):
    text = DRAWN.replace("conv1x1(C, init = normal, std = 0.01)", layer)
    with pytest.raises(attnspec.SpecError) as err:
        attnspec.compile_text(text, C=8)
    assert err.value.diagnostics[0].code == code


# (spec, definition, parameters, parameter, the std the authors' code draws it with)
AUTHORS_INITS = [
    ("nonlocal", None, dict(C=256), "query_conv1x1", 0.01),  # CONV_INIT_STD
    ("nonlocal", None, dict(C=256), "output_conv1x1", 0.01),
    ("gcnet", None, dict(C=2048), "context_pool.key_conv1x1", math.sqrt(2 / 2048)),  # fan_in
    ("sk", None, dict(C=256), "branch3_conv", math.sqrt(2 / (8 * 9))),  # msra: C / G · 3²
    ("sk", None, dict(C=256), "squeeze_conv1x1", 0.01),  # gaussian 0.01
    ("sk", None, dict(C=256), "weight_linear", 0.01),
    ("emanet", None, dict(C=256), "r_conv1x1", math.sqrt(2 / 256)),  # fan_out
    ("external", "ExternalAttention", dict(C=256), "output_conv1x1", math.sqrt(2 / 256)),
    # mmcv's kaiming_init(fan_in, leaky_relu, a = 1, uniform): U(±√(3 / fan_in)), std 1/√fan
    ("generalized", None, dict(C=576), "query_conv1x1", 1 / math.sqrt(576)),
    ("generalized", None, dict(C=576), "key_conv", 1 / math.sqrt(2 * 64) / math.sqrt(3)),  # u
    # no HaloNet code: BoTNet's relative embeddings, N(0, dim_head^−1)
    ("halo", None, dict(C=512), "rel_linear", 64 ** -0.5),
]


@pytest.mark.parametrize("spec, definition, params, name, std", AUTHORS_INITS,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_specs_draw_weights_as_their_authors_do(spec, definition, params, name, std):
    torch.manual_seed(0)
    m = attnspec.compile_file(f"specs/{spec}.attn", definition, **params)
    layer = dict(m.named_modules())[name]
    assert abs(layer.weight.std().item() - std) < 0.1 * std
    assert layer.bias is None or torch.count_nonzero(layer.bias) == 0
