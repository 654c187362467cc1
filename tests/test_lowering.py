"""Lowering: the generated forward code (golden), the fused kernels chosen, and the
parameters' names and order."""

from __future__ import annotations

import math
import operator
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import attnspec
from attnspec import runtime
from attnspec.lower import lower

CODE_CASES = {
    "se": dict(C=64),
    "cbam": dict(C=64),
    "mhsa": dict(D=64),
    "nonlocal": dict(C=32),
    "external": dict(D=32),
    "gcnet": dict(C=64),
    "attention_pool": dict(D=32),  # E3's pooled sum over a sequence's keys, where they lie
}


@pytest.mark.parametrize("name", CODE_CASES)
def test_generated_code(name, golden):
    module = attnspec.load(name, **CODE_CASES[name])
    golden(f"code/{name}.txt", module.code.strip() + "\n")


def targets(module) -> set:
    return {n.target for n in module.graph.nodes if n.op == "call_function"}


SEQUENCE_ATTENTION = """
attention A(D: int, causal: bool = false) {
    input  x: [B, N, D]
    over   positions(N)
    range  causal if causal else all
    heads  4
    weight softmax(E1(query = linear(D), key = linear(D)) / sqrt(D / 4))
    value  linear(D)
    output identity
}
"""


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_dot_product_attention_lowers_to_sdpa(causal):
    module = attnspec.compile_text(SEQUENCE_ATTENTION, D=16, causal=causal)
    assert F.scaled_dot_product_attention in targets(module)


@pytest.mark.parametrize("params", [dict(C=16), dict(C=16, variant="gaussian")])
def test_channels_first_attention_stays_unfused(params):
    # from [B, C, H, W] the heads layout is a transposed view, which CPU SDPA runs slowly
    assert F.scaled_dot_product_attention not in targets(attnspec.load("nonlocal", **params))


@pytest.mark.parametrize("causal", [False, True])
def test_a_key_padding_mask_keeps_the_fused_kernel_behind_a_runtime_check(causal):
    # masked_sdpa calls scaled_dot_product_attention with the mask, or without one
    assert runtime.masked_sdpa in targets(attnspec.load("mhsa", D=32, causal=causal))


def test_other_normalisers_are_not_fused():
    assert F.scaled_dot_product_attention not in targets(
        attnspec.load("nonlocal", C=16, variant="dot_product"))


def test_parameters_follow_the_spec_in_declaration_order():
    keys = list(attnspec.load("nonlocal", C=16).state_dict())
    assert keys == [
        "query_conv1x1.weight", "query_conv1x1.bias",  # θ, written first
        "key_conv1x1.weight", "key_conv1x1.bias",  # φ
        "value_conv1x1.weight", "value_conv1x1.bias",  # g
        "output_conv1x1.weight", "output_conv1x1.bias",  # W
        "output_batchnorm.weight", "output_batchnorm.bias", "output_batchnorm.running_mean",
        "output_batchnorm.running_var", "output_batchnorm.num_batches_tracked",
    ]


@pytest.mark.parametrize("name, params, shape", [("se", dict(C=32), (2, 32, 8, 8)),
                                                 ("mhsa", dict(D=32), (2, 8, 32)),
                                                 ("aft", dict(D=16, causal=True), (2, 70, 16)),
                                                 ("linear_attention", dict(D=16, M=2, causal=True),
                                                  (2, 70, 16))])
def test_inductor_compiles_with_fullgraph(name, params, shape):
    module = attnspec.load(name, **params).eval()
    x = torch.randn(*shape)
    compiled = torch.compile(module, fullgraph=True)  # the default backend: inductor
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x))


@pytest.mark.parametrize("definition, shape", [(None, (2, 16, 5, 7)),
                                               ("CrissCross3D", (2, 16, 3, 4, 5))])
def test_criss_cross_lowers_to_the_lines_energies_equal_to_the_dense_mask(definition, shape):
    ir = attnspec.build_ir("specs/ccnet.attn", definition, C=16, r=4)
    fused, dense = lower(ir), lower(ir, fused_kernels=False)
    assert runtime.criss_cross in targets(fused) and runtime.criss_cross not in targets(dense)
    dense.load_state_dict(fused.state_dict())
    for p in fused.parameters():
        torch.nn.init.normal_(p)
    dense.load_state_dict(fused.state_dict())
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(fused.double()(x), dense.double()(x))


@pytest.mark.parametrize("spec, params, shape", [
    ("specs/mhsa.attn", dict(D=8, M=2), (2, 5, 8)),
    ("specs/sliding_window.attn", dict(D=8, M=2, attention_window=2), (2, 9, 8)),
])
def test_a_query_that_sees_no_key_gets_zero_weights_on_every_lowering(spec, params, shape):
    # sample 0 is all padding: SDPA gives its rows 0; the unfused softmax must too, and
    # neither may send NaN into a gradient
    ir = attnspec.build_ir(spec, **params)
    fused, dense = lower(ir).double(), lower(ir, fused_kernels=False).double()
    dense.load_state_dict(fused.state_dict())
    pad = torch.zeros(shape[:2], dtype=torch.bool)
    pad[0] = True
    outputs = []
    for module in (fused, dense):
        x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                        requires_grad=True)
        y = module(x, pad)
        y.sum().backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in module.parameters())
        outputs.append(y)
    torch.testing.assert_close(outputs[0], outputs[1])


def assert_fused_flops_are_counted(ir, shape: tuple) -> None:
    """count.flops of the fused IR equals torch's counter running the lowered module."""
    from torch.utils.flop_counter import FlopCounterMode

    from attnspec import count
    from attnspec.passes import fuse

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        lower(ir)(torch.randn(*shape))
    assert count.flops(fuse(ir), count.bindings_for(ir, shape)) == counter.get_total_flops()


def _fused_ops(ir) -> set:
    from attnspec.passes import fuse

    return {n.op for n in fuse(ir).nodes()}


@pytest.mark.parametrize("pad", [False, True])
def test_linear_attention_sums_the_keys_first_and_equals_the_quadratic_form(pad):
    ir = attnspec.build_ir("specs/linear_attention.attn", D=16, M=2)
    assert "linear_attention" in _fused_ops(ir)
    fused, dense = lower(ir).double(), lower(ir, fused_kernels=False).double()
    dense.load_state_dict(fused.state_dict())
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    mask = torch.rand(2, 9) < 0.3 if pad else None
    torch.testing.assert_close(fused(x, mask), dense(x, mask))


@pytest.mark.parametrize("length", [0, 1, 9, 64, 150])  # none, within, at and past a chunk
@pytest.mark.parametrize("pad", [False, True])
def test_causal_linear_attention_runs_its_sums_up_to_each_query(length, pad):
    # Katharopoulos et al.'s recurrent form, chunk by chunk: equal to the masked quadratic
    # form (outputs and gradients, float64), a padded key adding nothing
    ir = attnspec.build_ir("specs/linear_attention.attn", D=16, M=2, causal=True)
    ops = _fused_ops(ir)
    assert "linear_attention" in ops and "range" not in ops
    mask = torch.rand(2, length) < 0.3 if pad else None
    fused, x = fused_equals_dense(ir, (2, length, 16), mask)
    if 0 < length < 10:
        assert torch.autograd.gradcheck(lambda t: fused(t, mask), (x,))


@pytest.mark.parametrize("length", [0, 150])  # none: no chunks, only the projections
def test_causal_linear_attention_counts_the_flops_it_computes(length):
    ir = attnspec.build_ir("specs/linear_attention.attn", D=16, M=2, causal=True)
    assert_fused_flops_are_counted(ir, (2, length, 16))


UNNORMALISED_CAUSAL = """
attention A(D: int) {
    input  x: [B, N, D]
    input  pad: [B, N] bool optional
    over   positions(N)
    range  causal
    mask   pad
    weight identity(E1(query = identity, key = identity))
    value  identity
    output identity
}
"""


def test_weights_without_a_normaliser_give_hidden_keys_weight_zero():
    # causal and mask fill 0, not -inf, when nothing normalises the weights
    module = attnspec.compile_text(UNNORMALISED_CAUSAL, D=4).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    pad = torch.tensor([[False, False, True, False, False]] * 2)
    a = (x @ x.transpose(1, 2)).tril().masked_fill(pad[:, None, :], 0)
    torch.testing.assert_close(module(x, pad), a @ x)


def test_linear_attentions_flops_are_its_reordered_products():
    ir = attnspec.build_ir("specs/linear_attention.attn", D=16, M=2)
    assert_fused_flops_are_counted(ir, (2, 9, 16))


@pytest.mark.parametrize("rng", ["window(1)", "window(2, dilation = 2)", "partition(2)"])
def test_a_structured_range_on_a_sequence_is_not_dropped_by_the_fused_kernel(rng):
    text = SEQUENCE_ATTENTION.replace("range  causal if causal else all", f"range  {rng}")
    module = attnspec.compile_text(text, D=16).double()
    assert F.scaled_dot_product_attention not in targets(module)
    ir = attnspec.parse(text)
    dense = lower(attnspec.build_ir(ir, D=16), fused_kernels=False).double()
    dense.load_state_dict(module.state_dict())
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    torch.testing.assert_close(module(x), dense(x))


def test_multiplying_by_one_or_adding_zero_emits_nothing():
    module = attnspec.compile_text("""
attention A(C: int, T: float = 1) {
    input  x: [B, C, N]
    output (x * T + 0) / 1 - 0
}""", C=4)
    assert not {operator.mul, operator.add, operator.truediv, operator.sub} & targets(module)


def test_a_let_only_the_untaken_branch_reads_is_not_computed():
    module = attnspec.compile_text("""
attention A(C: int, gate: bool = true) {
    input  x: [B, C, N]
    let    a = sigmoid(x)
    let    b = tanh(conv1x1(x, C))
    output x * a if gate else x * b
}""", C=4)
    assert torch.tanh not in targets(module)
    assert not list(module.parameters())  # b's conv1x1 is not registered either


def calls(module, target) -> int:
    return sum(n.target == target for n in module.graph.nodes)


def test_a_parameter_free_layer_applied_twice_to_one_tensor_runs_once():
    # the pool before the keys and before the values; the two dropouts stay two draws
    module = attnspec.compile_text("""
attention A(C: int) {
    let    pool = maxpool(2)
    input  x: [B, C, H, W]
    over   positions(H W)
    range  all
    weight softmax(E1(query = conv1x1(C), key = pool >> conv1x1(C)))
    value  pool >> conv1x1(C)
    output dropout(y, p = 0.5) + dropout(y, p = 0.5)
}""", C=4)
    assert calls(module, F.max_pool2d) == 1
    dropouts = [n.target for n in module.graph.nodes if n.op == "call_module"
                and isinstance(module.get_submodule(n.target), torch.nn.Dropout)]
    assert len(dropouts) == 2  # both called
    x = torch.randn(2, 4, 6, 6)
    module.eval()
    q, k, v = (getattr(module, f"{part}_conv1x1") for part in ("query", "key", "value"))
    keys = F.max_pool2d(x, 2)
    weights = torch.softmax(q(x).flatten(2).transpose(1, 2) @ k(keys).flatten(2), -1)
    y = (v(keys).flatten(2) @ weights.transpose(1, 2)).view(2, 4, 6, 6)
    torch.testing.assert_close(module(x), 2 * y)


REBUILD = """
attention Bases(D: int) {
    input  mu: [B, K, D]
    input  x: [B, N, D]
    over   positions(K), positions(N)
    range  all
    heads  2
    weight double_norm(E1(query = identity, key = identity), first = K, then = N, eps = 1e-6)
    value  identity
    output y
}

attention Rebuild(D: int, K: int = 5) {
    input  x: [B, N, D]
    input  mu: [B, K, D]
    let    bases = Bases(D)(mu, x)
    over   positions(N), memory(K)
    range  all
    heads  2
    weight softmax(E1(query = x, key = mu))
    value  permute(bases, B D K)   # channels first: not SDPA's, a matmul of the weights
    output y
}
"""


def test_an_affinity_normalised_both_ways_is_computed_once():
    # softmax_N(mu·x) inside double_norm and softmax_K(x·mu): one matmul, one softmax
    ir = attnspec.build_ir(REBUILD, D=8)
    fused, dense = lower(ir).double(), lower(ir, fused_kernels=False).double()
    assert calls(fused, torch.softmax) == 1 and calls(dense, torch.softmax) == 2
    assert calls(fused, torch.matmul) == calls(dense, torch.matmul) - 1
    inputs = [torch.randn(3, 7, 8, dtype=torch.float64, requires_grad=True),
              torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)]

    def run(module):
        y = module(*inputs)
        return (y, *torch.autograd.grad(y.square().sum(), inputs))

    for got, expected in zip(run(fused), run(dense)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("T", [1, 3])
def test_emanet_computes_each_e_step_once(T):
    # the last E step's z gives the last bases and rebuilds the input, as the authors' loop
    assert calls(attnspec.load("emanet", C=8, K=4, T=T), torch.softmax) == T


def test_stacking_one_tensor_is_a_view():
    module = attnspec.compile_text("""
attention A(C: int) {
    input  x: [B, C, N]
    output stack(x, as = G, after = C)
}""", C=3)
    assert torch.stack not in targets(module)
    x = torch.randn(2, 3, 5)
    assert module(x).data_ptr() == x.data_ptr()
    torch.testing.assert_close(module(x), x.unsqueeze(2))


@pytest.mark.parametrize("causal", [False, True])
def test_a_term_added_to_e1_goes_to_sdpa_as_a_float_mask(causal):
    ir = attnspec.build_ir("specs/alibi.attn", D=16, M=4, causal=causal)
    fused, dense = lower(ir).double(), lower(ir, fused_kernels=False).double()
    assert runtime.biased_sdpa in targets(fused)
    dense.load_state_dict(fused.state_dict())
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[:, -2:] = True
    for mask in (None, pad):
        torch.testing.assert_close(fused(x, mask), dense(x, mask))


def fused_equals_dense(ir, shape: tuple, *extra):
    """The lowered module and its unfused form, with the same random weights, agree on an
    input of `shape` (and the `extra` inputs, a padding mask) and on its gradient
    (float64); returns the fused module and input."""
    fused, dense = lower(ir).double(), lower(ir, fused_kernels=False).double()
    torch.manual_seed(0)
    for p in fused.parameters():
        torch.nn.init.normal_(p)
    dense.load_state_dict(fused.state_dict())
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y_fused, y_dense = fused(x, *extra), dense(x, *extra)
    torch.testing.assert_close(y_fused, y_dense, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(y_dense)
    torch.testing.assert_close(torch.autograd.grad(y_fused, x, g),
                               torch.autograd.grad(y_dense, x, g), rtol=1e-10, atol=1e-10)
    return fused, x


LOCAL = """
attention Table(C: int, M: int = 4, G: int = 2, R: int = 1, Rw: int = 2, window: int = -1) {
    input  x: [B, H, W, C]
    over   positions(H W)
    range  window(window) if window >= 0 else all   # the parameter, called: the range
    heads  M, kv = G
    weight identity(E2(query = linear(C), position = offsets(R, Rw) >> linear(C / M * G,
                                                                          bias = false)) * 0.5)
    value  linear(C / M * G)
    output identity
}
"""

# (spec, params, input shape): a position term that is 0 beyond its radii, unnormalised
LOCAL_CASES = [
    ("specs/conv_as_attention.attn", dict(C=8, kernel=3), (2, 8, 5, 6)),
    ("specs/conv_as_attention.attn", dict(C=4, out=6, kernel=5), (1, 4, 3, 7)),
    ("specs/cot.attn", dict(dim=16), (2, 16, 5, 4)),
    # the lambda layer, split into its content part (linear) and position part (local; its
    # 11 × 11 window, larger than the map, read dense); batch 1: BatchNorm's gradient guard
    # (runtime.contiguous_gradient)
    ("specs/lambda_layer.attn", dict(C=12, d=8, k=3, h=4, r=5), (1, 12, 5, 6)),
    (LOCAL, dict(C=8), (2, 4, 5, 8)),
    (LOCAL, dict(C=8, M=2, G=1, R=2, Rw=0, window=3), (2, 6, 3, 8)),
    ("""
attention Sequence(D: int, R: int = 2) {
    input  x: [B, N, D]
    over   positions(N)
    range  window(R)
    heads  2 * R + 1                                 # a 1-D convolution as attention
    weight identity(E4(position = offsets(R)))
    value  linear((2 * R + 1) * D, bias = false)
    output identity
}""", dict(D=4), (2, 7, 4)),
]


@pytest.mark.parametrize("source, params, shape", LOCAL_CASES)
def test_local_position_weights_aggregate_windows_equal_to_the_dense_form(source, params,
                                                                          shape):
    from torch.utils.flop_counter import FlopCounterMode

    from attnspec import count
    from attnspec.passes import fuse

    ir = attnspec.build_ir(source, **params)
    assert "local_aggregate" in _fused_ops(ir)
    fused, x = fused_equals_dense(ir, shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fused(x)
    seen = counter.get_total_flops()
    local = next(n for n in fuse(ir).nodes() if n.op == "local_aggregate")
    p = math.prod(2 * r + 1 for r in local.attrs["radii"])
    sizes = count.bindings_for(ir, shape)
    if local.attrs["kv"] == local.attrs["heads"] and local.attrs["term"] != "E4" and \
            p < math.prod(sizes[t] for t in local.attrs["q_tokens"]):
        # one head per value head, weights per query, a window smaller than the map: a
        # product summed over the window, which torch's counter does not see (as E3's
        # pooling, tests/counting.py); the IR counts its multiply-adds (E4's weights, the
        # same at every query, run as a depth-wise convolution, which it sees)
        seen += 2 * p * local.type.numel(sizes)  # B·Q·M·d values
    assert count.flops(fuse(ir), count.bindings_for(ir, shape)) == seen


def test_a_window_narrower_than_the_term_keeps_the_dense_form():
    ir = attnspec.build_ir(LOCAL, C=8, R=2, Rw=2, window=1)
    assert "local_aggregate" not in _fused_ops(ir)


@pytest.mark.parametrize("source, params, shape", [
    ("specs/vip.attn", dict(dim=16, segment_dim=4), (2, 4, 4, 16)),
    ("""
attention Select(C: int) {
    let    K = 2
    input  x: [B, C, H, W]
    let    w = softmax(split(mean(x, H W), C, K c), over = K)    # [B, K=2, c]
    output sum(stack(relu(x), tanh(x), as = K) * merge(stack(w, w, as = two, after = K),
                                                       two c, as = C), K)
}""", dict(C=8), (2, 8, 3, 5)),
])
def test_a_weighted_sum_over_a_stack_is_a_sum_of_products_without_the_stack(source, params,
                                                                            shape):
    from attnspec.passes import fuse

    ir = attnspec.build_ir(source, **params)
    stacks = [[n.op for n in g.nodes()].count("stack") for g in (ir, fuse(ir))]
    assert "weighted_sum" in _fused_ops(ir) and stacks[1] == stacks[0] - 1
    fused_equals_dense(ir, shape)


@pytest.mark.parametrize("M", [2, 3])
def test_a_stack_summed_and_weighted_is_never_built(M):
    # SK: the branches' sum gives the squeeze, their weighted sum the output
    ir = attnspec.build_ir("specs/sk.attn", C=64, G=8, M=M)
    assert {"sum_of", "weighted_sum"} <= _fused_ops(ir) and "stack" not in _fused_ops(ir)
    fused_equals_dense(ir, (2, 64, 6, 6))


def test_a_stack_read_otherwise_is_kept():
    ir = attnspec.build_ir("""
attention A(C: int) {
    input  x: [B, C, H, W]
    let    u = stack(relu(x), tanh(x), as = K)
    output sum(u, K) + mean(u, K)
}""", C=4)
    assert "stack" in _fused_ops(ir) and "sum_of" not in _fused_ops(ir)
    fused_equals_dense(ir, (2, 4, 3, 5))


def test_a_weight_without_the_stacked_axis_keeps_the_stack():
    ir = attnspec.build_ir("""
attention A(C: int) {
    input  x: [B, C, H, W]
    output sum(stack(relu(x), tanh(x), as = K) * mean(x, H W), K)
}""", C=4)
    assert "weighted_sum" not in _fused_ops(ir)
    fused_equals_dense(ir, (2, 4, 3, 5))


def test_a_weight_with_the_stacked_axis_of_length_one_keeps_the_stack():
    # the same w for every t_i: it has no slice 1 to weigh t_2 by (this ran into
    # "select(): index 1 out of range" before)
    ir = attnspec.build_ir("""
attention A(C: int) {
    let    K = 2
    input  x: [B, C, H, W]
    output sum(stack(relu(x), tanh(x), as = K) * stack(mean(x, H W), as = K), K)
}""", C=4)
    assert "weighted_sum" not in _fused_ops(ir)
    fused_equals_dense(ir, (2, 4, 3, 5))


@pytest.mark.parametrize("source, params, shape", [
    ("specs/shuffle.attn", dict(C=32, G=4), (2, 32, 5, 6)),
    # the first product lacks H and W (neither its gate nor its weight has them): it is
    # broadcast to the second's before the two are stacked
    ("""
attention A(C: int) {
    let    K = 2
    input  x: [B, C, H, W]
    let    z = split(x, C, K c)                                     # [B, K=2, c, H, W]
    let    w = sigmoid(split(mean(x, H W), C, K c))                 # [B, K=2, c]
    output stack(mean(take(z, K, 0), H W), take(z, K, 1), as = K) * w
}""", dict(C=8), (2, 8, 3, 5)),
])
def test_a_stack_times_a_tensor_stacks_the_products_instead(source, params, shape):
    # no stacked copy of the factors (Shuffle Attention's gates: the channel gate is not
    # broadcast over the map), and the product saves the factors as they are
    from attnspec.passes import fuse

    ir = attnspec.build_ir(source, **params)
    fused = [n.op for n in fuse(ir).nodes()]
    assert "stacked_products" in fused and "stack" not in fused
    fused_equals_dense(ir, shape)


def test_a_stack_times_a_tensor_makes_the_broadcast_factors_product_last():
    # autograd runs the latest node first: the channel gate's product, whose gradient
    # reduces to the gate's size at once, before the spatial gate's full-size chain
    # (Shuffle Attention's fwd+bwd peak: 1.10 -> 1.00 of the hand-written module)
    y = attnspec.load("shuffle", C=32, G=4)(torch.randn(2, 32, 5, 6, requires_grad=True))
    node = y.grad_fn
    while not type(node).__name__.startswith("StackBackward"):
        node = node.next_functions[0][0]
    channel, spatial = (f for f, _ in node.next_functions)
    assert channel._sequence_nr() > spatial._sequence_nr()


def test_a_stack_times_a_tensor_without_its_axis_keeps_the_stack():
    ir = attnspec.build_ir("""
attention A(C: int) {
    input  x: [B, C, H, W]
    output stack(relu(x), tanh(x), as = K) * mean(x, H W)
}""", C=4)
    assert "stack" in _fused_ops(ir) and "stacked_products" not in _fused_ops(ir)
    fused_equals_dense(ir, (2, 4, 3, 5))


@pytest.mark.parametrize("then", ["sum(", ""])
def test_an_unstacked_slice_of_a_computed_tensor_is_kept_as_a_copy_of_its_own(then):
    # S2's third branch: the product keeps the slice for the weights' gradient, and a view
    # would keep the whole split tensor alive (the stack copied it)
    ir = attnspec.build_ir(f"""
attention A(C: int) {{
    let    K = 2
    input  x: [B, C, H, W]
    let    z = split(conv1x1(x, C), C, K c)                         # [B, K=2, c, H, W]
    let    w = softmax(split(mean(x, H W), C, K c), over = K)       # [B, K=2, c]
    output {then}stack(tanh(take(z, K, 0)), take(z, K, 1), as = K) * w{", K)" if then else ""}
}}""", C=8)
    fused, x = fused_equals_dense(ir, (2, 8, 3, 5))
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        fused(x)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in kept}
    del storages[x.untyped_storage().data_ptr()]  # the conv's input
    assert max(storages.values()) == x.numel() // 2 * x.element_size()  # a part, not z


@pytest.mark.parametrize("batch, pairs", [(1, False), (8, True)])
def test_a_window_covering_the_map_gathers_the_offset_table_per_pair_when_smaller(batch,
                                                                                  pairs):
    # the lambda layer's 9 × 9 scope on an 8 × 8 map: the table gathered for the 64 × 64
    # pairs (64 · 64 · 16 numbers) against the logits of all 81 offsets (B · 4 · 64 · 81)
    from attnspec.runtime import pairs_first

    assert pairs_first(batch, 4, 64, 16, (4, 4)) == pairs
    ir = attnspec.build_ir("specs/lambda_layer.attn", C=16, k=16, h=4, r=9)
    assert "local_aggregate" in _fused_ops(ir)
    fused_equals_dense(ir, (batch, 16, 8, 8))
    assert_fused_flops_are_counted(ir, (batch, 16, 8, 8))


@pytest.mark.parametrize("q, k, steps, radii", [((4, 5), (4, 5), (1, 1), (3, 4)),
                                                ((3, 4), (2, 2), (2, 2), (4, 6)),
                                                ((7,), (7,), (1,), (9,))])
@pytest.mark.parametrize("key_side", [False, True])
def test_maps_of_offsets_covering_every_pair_are_read_without_keeping_them(q, k, steps,
                                                                          radii, key_side):
    # PSANet's masks of 2H - 1: every pair's logit is one strided view of the maps, whose
    # backward keeps nothing (gather's keeps the maps)
    rows, n = math.prod(2 * r + 1 for r in radii), math.prod(k if key_side else q)
    maps = torch.randn(2, rows, n, dtype=torch.float64).transpose(1, 2).unsqueeze(1)
    maps.requires_grad_()  # [B, M, N, rows] laid out channels-first, as a conv leaves it
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        y = runtime.offset_maps(maps, q, k, steps, radii, key_side=key_side)
    assert not kept
    gathered = runtime.offset_maps(maps.detach(), q, k, steps, radii, key_side=key_side)
    torch.testing.assert_close(y, gathered, rtol=0, atol=0)
    assert torch.autograd.gradcheck(
        lambda m: runtime.offset_maps(m, q, k, steps, radii, key_side=key_side), (maps,))


@pytest.mark.parametrize("pad_shape, axis", [((2, 6), "N"), ((3, 5), "B")])
def test_inputs_sharing_an_axis_must_agree_on_its_size(pad_shape, axis):
    m = attnspec.load("mhsa", D=16, M=2)
    x = torch.randn(2, 5, 16)
    with pytest.raises(runtime.InputShapeError, match=f"axis {axis} is .* in input x but .* "
                                                      f"in input pad"):
        m(x, torch.zeros(*pad_shape, dtype=torch.bool))
    assert m(x, None).shape == (2, 5, 16)  # an optional input left out is not compared


def test_a_sum_of_unnormalised_terms_aggregates_each_on_its_own():
    ir = attnspec.build_ir("specs/lambda_layer.attn", C=12, d=8, k=3, h=4, r=5)
    ops = _fused_ops(ir)
    assert {"linear_attention", "local_aggregate"} <= ops and "aggregate" not in ops


def test_batchnorm_gets_a_contiguous_gradient_at_batch_size_one():
    """torch 2.13's CPU BatchNorm backward at batch 1 is wrong for a gradient strided as an
    einsum's backward leaves it; the lowering hands it on contiguous."""
    bn = torch.nn.BatchNorm2d(2).double().eval()
    x = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 4, 6, dtype=torch.float64)

    def guarded(t):  # without the guard, gradcheck fails here (and on the lambda layer's
        # lowering at batch 1, LOCAL_CASES above)
        return torch.einsum("bkm,bvm->bkv", k, runtime.contiguous_gradient(bn(t)).flatten(2))

    assert torch.autograd.gradcheck(guarded, (x,))


HALO_UNDER_INDUCTOR = """
import torch, attnspec
m = attnspec.load("halo", C=8, M=2, block_size=2, halo_size=1).train()
x = torch.randn(2, 8, 4, 5, requires_grad=True)
compiled = torch.compile(m, fullgraph=True)  # inductor: C++ kernels
y, y_eager = compiled(x), m(x)
g, g_eager = (torch.autograd.grad(t.square().sum(), x)[0] for t in (y, y_eager))
torch.testing.assert_close(y, y_eager, rtol=1e-4, atol=1e-5)
torch.testing.assert_close(g, g_eager, rtol=1e-4, atol=1e-4)
print("ok")
"""


def test_haloed_windows_train_under_inductor():
    """torch 2.13's inductor writes out of bounds in the backward of an unfold of an
    unfold, and the process dies (runtime._unfold gathers instead while compiling):
    HaloNet's 2-D windows trained under the default backend match eager. In a subprocess,
    so that a crash fails this test rather than the test run."""
    done = subprocess.run([sys.executable, "-c", HALO_UNDER_INDUCTOR], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.parametrize("params, shape", [(dict(D=16, h=4, s=3), (2, 5, 6, 16)),
                                           (dict(D=8), (1, 4, 3, 8)),
                                           (dict(D=6, h=6, s=1, reparam=False), (2, 3, 4, 6))])
def test_aft_conv_lowers_to_global_sums_and_local_windows(params, shape):
    """softmax(E3 + a local E4) · v = (Σ e^K v + window(e^w − 1, e^K v)) / (Σ e^K + ...)."""
    ir = attnspec.build_ir("specs/aft.attn", "AFTConv", **params)
    ops = _fused_ops(ir)
    assert "factorised_aggregate" in ops and "E4" not in ops and "softmax_keys" not in ops
    fused_equals_dense(ir, shape)


@pytest.mark.parametrize("length", [0, 1, 7, 64, 150])  # none, within, at and past a chunk
def test_causal_aft_simple_lowers_to_running_sums_equal_to_the_dense_form(length):
    """softmax over the keys up to each query of E3's logits · v: running sums of e^K v
    and e^K, chunk by chunk (64 positions), not a dense [N, N] weight per head."""
    ir = attnspec.build_ir("specs/aft.attn", D=8, causal=True)
    ops = _fused_ops(ir)
    assert "causal_pool" in ops and "range" not in ops and "softmax_keys" not in ops
    fused, x = fused_equals_dense(ir, (2, length, 8))
    if 0 < length < 10:
        assert torch.autograd.gradcheck(fused, (x,))


def test_causal_running_sums_stay_finite_with_keys_hundreds_apart():
    # every exponent is taken from the running maximum up to the query: float32 keys
    # spread over ±700 give what the float64 dense form gives, with finite gradients
    ir = attnspec.build_ir("specs/aft.attn", D=8, causal=True)
    fused, dense = lower(ir), lower(ir, fused_kernels=False).double()
    with torch.no_grad():
        fused.key_linear.weight.mul_(300)
    dense.load_state_dict(fused.state_dict())
    x = torch.randn(2, 150, 8, requires_grad=True)
    assert fused.key_linear(x).abs().max() > 300
    y = fused(x)
    torch.testing.assert_close(y.double(), dense(x.double()), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(torch.autograd.grad(y.sum(), x)[0]).all()


@pytest.mark.parametrize("length", [0, 150])  # none: no chunks, only the projections
def test_causal_running_sums_count_the_flops_they_compute(length):
    ir = attnspec.build_ir("specs/aft.attn", D=8, causal=True, proj=False)
    assert_fused_flops_are_counted(ir, (2, length, 8))


def test_a_position_score_for_every_head_lowers_locally_too():
    ir = attnspec.build_ir("""
attention A(C: int) {
    input  x: [B, C, H, W]
    over   positions(H W)
    range  all
    heads  4
    weight identity(E4(position = offsets(1) >> linear(1, bias = false)))
    value  identity
    output identity
}""", C=8)
    assert "local_aggregate" in _fused_ops(ir)
    fused_equals_dense(ir, (2, 8, 4, 5))


def _dense_window(q, k, v, radius, dilation, causal, pad, scale):
    """The window as one dense mask, from its definition (docs/language.md §5)."""
    i = torch.arange(q.shape[-2])
    offset = i[None, :] - i[:, None]  # key − query
    keep = (offset.abs() <= radius * dilation) & (offset % dilation == 0)
    keep = keep & (offset <= 0) if causal else keep
    keep = keep[None, None] if pad is None else keep & ~pad[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=scale)


@pytest.mark.parametrize("n", [5, 40, 100])
@pytest.mark.parametrize("radius, dilation", [(0, 1), (1, 1), (3, 1), (20, 1), (3, 2), (2, 3),
                                              (1, 7)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_a_band_of_query_blocks_equals_the_dense_window(n, radius, dilation, causal, padded):
    g = torch.Generator().manual_seed(n * 1000 + radius * 10 + dilation)
    q, k, v = (torch.randn(2, 3, n, 4, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    pad = None
    if padded:  # every query keeps a key: its own
        pad = torch.rand(2, n, generator=g) < 0.3
        pad[:, ::1 + radius * dilation] = False
        pad = pad if radius else None
    banded = runtime.banded_sdpa(q, k, v, radius, dilation, causal, pad, 0.5)
    dense = _dense_window(q, k, v, radius, dilation, causal, pad, 0.5)
    real = ~dense.isnan().any(-1)  # rows whose whole window is padding are NaN in both
    torch.testing.assert_close(banded[real], dense[real], rtol=1e-12, atol=1e-12)
    if real.all():
        w = torch.randn(dense.shape, generator=g, dtype=torch.float64)
        for a, b in zip(torch.autograd.grad(banded, (q, k, v), w),
                        torch.autograd.grad(dense, (q, k, v), w)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    blocks, block, span, _ = runtime.band_shape(-(-n // dilation), radius)
    assert blocks == 1 or span < n  # a band, unless the blocks would read every key


@pytest.mark.parametrize("params", [dict(attention_window=8), dict(attention_window=6,
                                                                    attention_dilation=3),
                                    dict(attention_window=10, autoregressive=True),
                                    dict(attention_window=6, attention_dilation=2,
                                         dilated_heads=1)])
def test_sliding_window_on_a_long_sequence_lowers_to_the_band(params):
    ir = attnspec.build_ir("specs/sliding_window.attn", D=16, M=2, **params)
    fused, dense = lower(ir), lower(ir, fused_kernels=False)
    assert runtime.banded_sdpa in targets(fused) and runtime.restrict in targets(dense)
    dense.load_state_dict(fused.state_dict())
    x = torch.randn(2, 90, 16, dtype=torch.float64)
    pad = torch.zeros(2, 90, dtype=torch.bool)
    pad[0, 60::2] = True  # every other token of the first sample's tail is padding
    glob = torch.zeros(2, 90, dtype=torch.bool)
    glob[1, 3] = True
    for inputs in ((x,), (x, pad), (x, pad, glob)):  # global tokens: one dense mask
        torch.testing.assert_close(fused.double()(*inputs), dense.double()(*inputs))


def test_the_band_drops_attention_weights_while_training_and_keeps_their_mean():
    torch.manual_seed(0)
    m = attnspec.load("sliding_window", D=8, M=2, attention_window=4,
                      attention_probs_dropout_prob=0.3).double()
    assert runtime.banded_sdpa in targets(m)
    x = torch.randn(1, 60, 8, dtype=torch.float64)  # 60 tokens: blocks of 16, not one
    with torch.no_grad():
        expected = m.eval()(x)
        m.train()
        draws = torch.stack([m(x) for _ in range(4000)])
    assert not torch.equal(draws[0], draws[1])  # each call its own mask
    assert not torch.allclose(draws[0], expected)
    # dropout scales the kept weights by 1 / (1 − p): unbiased, so the mean returns
    torch.testing.assert_close(draws.mean(0), expected, atol=0.03, rtol=0)


def test_load_takes_another_definition_of_a_shipped_file_by_name():
    m = attnspec.load("sliding_window", "Longformer", D=8, M=2)
    assert any(k.startswith("longformer_global.") for k in m.state_dict())
    assert not any(k.startswith("longformer_global.")
                   for k in attnspec.load("sliding_window", D=8, M=2).state_dict())
    with pytest.raises(attnspec.UsageError, match="no definition `Longformr`"):
        attnspec.load("sliding_window", "Longformr", D=8)


def test_load_takes_a_shipped_spec_s_file_name_too():
    assert attnspec.load("se.attn", C=64).state_dict().keys() \
        == attnspec.load("se", C=64).state_dict().keys()


CHANNELS_FIRST_WINDOW = """
attention A(C: int, M: int = 2, R: int = 3) {
    input  x: [B, C, N]
    input  pad: [B, N] bool optional
    over   positions(N)
    range  window(R)
    mask   pad
    heads  M
    weight softmax(E1(query = conv1x1(C), key = conv1x1(C)) / sqrt(C / M))
    value  conv1x1(C)
    output identity
}
"""


def test_a_band_reads_a_channels_first_sequence():
    ir = attnspec.build_ir(CHANNELS_FIRST_WINDOW, C=8)
    fused, dense = lower(ir), lower(ir, fused_kernels=False)
    assert runtime.banded_sdpa in targets(fused)
    dense.load_state_dict(fused.state_dict())
    x = torch.randn(2, 8, 50, dtype=torch.float64)
    pad = torch.zeros(2, 50, dtype=torch.bool)
    pad[1, 40::3] = True
    for inputs in ((x,), (x, pad)):
        torch.testing.assert_close(fused.double()(*inputs), dense.double()(*inputs))


BLOCKS = """
attention Blocks(D: int, M: int = 2, b: int = 3, s: int = 0, bias: bool = true) {{
    let    R = b - 1
    input  x: [B, {layout}, D]
    over   positions({axes})
    range  blocks(b, shift = s)
    heads  M
    weight softmax(E1(query = linear(D), key = linear(D)) * 0.5
                   + (E4(position = offsets(R, of = query) >> linear(M, bias = false))
                      if bias else 0))
    value  linear(D)
    output linear(D)
}}
"""


def _block_labels(sizes, b, s):
    """Each position's block on every axis, by the definition: ⌊(i − s) / b⌋."""
    grids = torch.meshgrid(*[torch.arange(n) for n in sizes], indexing="ij")
    return torch.stack([torch.div(g.flatten() - s, b, rounding_mode="floor") for g in grids])


@pytest.mark.parametrize("axes, shape, b, s", [
    ("H W", (2, 6, 6), 3, 1), ("H W", (2, 6, 6), 3, 0), ("H W", (2, 7, 5), 3, 2),
    ("N", (2, 10), 4, 3), ("T H W", (1, 4, 5, 3), 2, 1), ("H W", (2, 2, 2), 3, 2)])
@pytest.mark.parametrize("bias", [False, True])
def test_blocks_lower_to_windows_equal_to_the_dense_mask_and_to_the_definition(
        axes, shape, b, s, bias):
    text = BLOCKS.format(axes=axes, layout=axes.replace(" ", ", "))
    ir = attnspec.build_ir(attnspec.parse(text), D=8, b=b, s=s, bias=bias)
    # by the definition: a query's output moves with its own block's keys only
    labels = _block_labels(shape[1:], b, s)
    same = (labels[:, :, None] == labels[:, None, :]).all(0)  # [N, N]
    _fused_as_dense_and_reaching(ir, runtime.blocked_sdpa, shape, same)


def _fused_as_dense_and_reaching(ir, kernel, shape, sees):
    """The IR lowers to `kernel` and to the dense form, equal in outputs and gradients,
    and moving a key moves exactly the queries that `sees` [query, key] says see it."""
    fused, dense = lower(ir).double().eval(), lower(ir, fused_kernels=False).double().eval()
    assert kernel in targets(fused) and kernel not in targets(dense)
    for p in fused.parameters():
        torch.nn.init.normal_(p, std=0.3)
    dense.load_state_dict(fused.state_dict())
    x = torch.randn(*shape, 8, dtype=torch.float64, requires_grad=True)
    y = fused(x)
    torch.testing.assert_close(y, dense(x))
    grads = [torch.autograd.grad((m(x) * y.detach()).sum(), x)[0] for m in (fused, dense)]
    torch.testing.assert_close(*grads)
    flat = x.detach().flatten(1, -2)
    for key in range(sees.shape[0]):
        moved = flat.clone()
        moved[:, key] += 1.0
        changed = (fused(moved.view_as(x)) - y).detach().flatten(1, -2).abs().amax((0, 2)) > 0
        assert torch.equal(changed, sees[:, key]), key


@pytest.mark.parametrize("edit", [("heads  M", "heads  M, kv = 1"),
                                  ("    over", "    input  pad: [B, N] bool optional\n"
                                             "    mask   pad\n    over")])
def test_blocks_with_shared_heads_or_a_padding_mask_keep_the_dense_form(edit):
    text = BLOCKS.format(axes="N", layout="N").replace(*edit)
    if "kv" in text:  # one key head: keys as wide as a query head
        text = text.replace("key = linear(D)", "key = linear(D / M)")
    ir = attnspec.build_ir(attnspec.parse(text), D=8, b=3, s=1)
    module = lower(ir).double()
    assert runtime.blocked_sdpa not in targets(module)
    assert module(torch.randn(2, 7, 8, dtype=torch.float64)).shape == (2, 7, 8)


HALO = """
attention Haloed(D: int, M: int = 2, b: int = 3, h: int = 1) {{
    input  x: [B, {layout}, D]
    let    q = linear(x, D)
    over   positions({axes})
    range  blocks(b, halo = h{edge})
    heads  M
    weight dropout(softmax({weight}), p = 0.2)
    value  linear(D)
    output linear(D)
}}
"""
E1 = "E1(query = q, key = linear(D))"
E2_AXES = "E2(query = q, position = axis_offsets(b + h - 1) >> linear(D / M, bias = false))"
HALO_WEIGHTS = {  # what the halo kernel takes: E1, at most one E2 and one E4, scaled
    "E1": f"{E1} * 0.5",
    "E1+E2": f"{E1} * 0.5 + {E2_AXES} * 0.7",
    "E1+E2(sinusoid, own queries)": f"{E1} * 0.5 + E2(query = linear(x, D), position = "
                                    "sinusoid({n2}) >> linear(D, bias = false))",
    "(E1+E2+E4)*s": f"({E1} + {E2_AXES} + E4(position = offsets(b + h - 1, of = query) "
                    ">> linear(M, bias = false))) * 0.4",
    "E4(per axis)+E1": f"E4(position = axis_offsets(b + h) >> linear(1, bias = false)) + {E1}",
}


def _halo(axes: str, weight: str, edge: str = "", **params):
    n = len(axes.split())
    text = HALO.format(axes=axes, layout=axes.replace(" ", ", "), edge=edge,
                       weight=HALO_WEIGHTS[weight].replace("{n2}", str(2 * n)))
    return attnspec.build_ir(attnspec.parse(text), D=8, **params)


@pytest.mark.parametrize("axes, shape, b, h", [
    ("H W", (2, 6, 6), 3, 1), ("H W", (2, 7, 5), 3, 2), ("N", (2, 10), 4, 3),
    ("T H W", (1, 4, 5, 3), 2, 1), ("H W", (2, 2, 2), 3, 0)])
@pytest.mark.parametrize("weight", HALO_WEIGHTS)
def test_haloed_blocks_lower_to_windows_equal_to_the_dense_mask_and_the_definition(
        axes, shape, b, h, weight):
    # by the definition: a key moves the queries whose block lies within h of it
    grids = torch.meshgrid(*[torch.arange(n) for n in shape[1:]], indexing="ij")
    coords = torch.stack([g.flatten() for g in grids])  # [n, N]
    start = coords // b * b
    near = ((coords[:, None, :] >= start[:, :, None] - h) &
            (coords[:, None, :] < start[:, :, None] + b + h)).all(0)  # [query, key]
    _fused_as_dense_and_reaching(_halo(axes, weight, b=b, h=h), runtime.halo_sdpa, shape,
                                 near)


@pytest.mark.parametrize("weight", HALO_WEIGHTS)
def test_zero_edges_are_the_masked_form_on_the_map_padded_with_zeros(weight):
    # with h = b the padded map's blocks are the map's, one block on: there the window's
    # positions beyond the map are positions of the map, of zero keys and values (zero
    # inputs, key and value biases off), and the masked form attends them all
    b = h = 2
    zeros = lower(_halo("H W", weight, ", edge = zeros", b=b, h=h)).double().eval()
    masked = lower(_halo("H W", weight, b=b, h=h)).double().eval()
    assert runtime.halo_sdpa in targets(zeros)
    for name, p in zeros.named_parameters():
        torch.nn.init.normal_(p, std=0.3)
        if name.endswith("bias") and name.startswith(("key", "value")):
            torch.nn.init.zeros_(p)
    masked.load_state_dict(zeros.state_dict())
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    padded = torch.nn.functional.pad(x, (0, 0, h, h + 1, h, h + 1))  # and to whole blocks
    torch.testing.assert_close(zeros(x), masked(padded)[:, h:h + 3, h:h + 5])
    assert not torch.allclose(zeros(x), masked(x))


def test_the_blocks_drop_attention_weights_while_training_and_keep_their_mean():
    torch.manual_seed(0)
    m = attnspec.load("acmix", "WindowAttentionACmix", dim=8, window_size=2,
                      num_heads=2, shift_size=1, attn_drop=0.3).double()
    assert runtime.blocked_sdpa in targets(m)
    x = torch.randn(1, 4, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = m.eval()(x)
        m.train()
        draws = torch.stack([m(x) for _ in range(4000)])
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), expected, atol=0.03, rtol=0)


COLUMNS = """
attention Columns(C: int, M: int = 2) {
    input  x: [B, C, H, W]
    over   positions(W)
    range  all
    heads  M
    weight softmax(E1(query = identity, key = identity))
    value  identity
    output identity
}
"""


def test_heads_split_features_whose_size_is_known_at_run_time_only():
    # over positions(W) of [B, C, H, W]: the features are C and H, H sized at run time;
    # head m reads channels m·C/M … and every row (this crashed the lowering)
    m = attnspec.compile_text(COLUMNS, C=4).double()
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    heads = x.reshape(2, 2, 2 * 3, 5)  # [B, M, d = C/M · H, W]
    w = torch.softmax(heads.transpose(-1, -2) @ heads, -1)
    torch.testing.assert_close(m(x), (heads @ w.transpose(-1, -2)).reshape(2, 4, 3, 5))
    torch.autograd.gradcheck(m, (x,))
    # C = 3 splits into 2 heads only for some H: the fixed sizes must split, so every H does
    with pytest.raises(attnspec.SpecError, match="only if their fixed sizes do, 3 here"):
        attnspec.compile_text(COLUMNS, C=3)


@pytest.mark.parametrize("args, message", [
    ((torch.randint(0, 3, (2, 5, 8)),), "input x must be a floating-point tensor, got torch.int64"),
    ((torch.randn(2, 5, 8), torch.zeros(2, 5)), "input pad is a mask: a bool tensor, got "
                                                "torch.float32"),
    (([[1.0] * 8] * 5,), "input x must be a tensor, got list"),
])
def test_an_input_of_the_wrong_kind_is_named(args, message):
    # a 0/1 float mask would otherwise reach torch's `~` (a TypeError naming no input)
    m = attnspec.load("mhsa", D=8, M=2)
    with pytest.raises(runtime.InputTypeError, match=re.escape(message)):
        m(*args)


TWO_PARTITIONS = """
attention Part(C: int, parts: int) {
    input  x: [B, C, H, W]
    over   positions(H, per = W)
    range  partition(parts)
    weight softmax(E1(query = conv1x1(C), key = conv1x1(C)))
    value  identity
    output y
}

attention Two(C: int) {
    input  x: [B, C, H, W]
    let    a = Part(C, 1)(x)
    let    b = Part(C, 2)(x)
    output a + b
}
"""


def test_attentions_sharing_a_folded_input_read_its_sizes_after_the_fold_is_merged():
    # both fold W into the batch alike: merge_duplicates keeps one fold, and the second
    # attention's range, which reads the run-time sizes of its own fold, must follow it
    torch.manual_seed(0)
    two = attnspec.compile_text(TWO_PARTITIONS, "Two", C=4)
    parts = [attnspec.compile_text(TWO_PARTITIONS, "Part", C=4, parts=p) for p in (1, 2)]
    state = two.state_dict()
    for prefix, part in zip(("part.", "part_2."), parts):
        part.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                              if k.startswith(prefix)})
    x = torch.randn(2, 4, 6, 5)
    torch.testing.assert_close(two(x), parts[0](x) + parts[1](x))


def test_haloed_blocks_keep_one_copy_of_the_queries_for_the_backward():
    # HaloNet's relative logits read the scaled queries the product with the keys reads
    # (against the table unscaled), the table shared by the heads without a head axis to
    # batch over: the backward keeps the queries once, and one layout of them for the
    # row-axis product, as the hand-written module does
    b, m, d, size, halo = 2, 4, 8, 4, 1
    q, k, v = (torch.randn(b, m, 64, d, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    rows = torch.randn(2 * size * (size + 2 * halo), d, dtype=torch.float64,
                       requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        runtime.halo_sdpa(q, k, v, (8, 8), size, halo, d ** -0.5, True, rows=rows)
    copies = {t.untyped_storage().data_ptr() for t in saved if t.numel() == q.numel()}
    assert len(copies) == 2  # values agree with the dense form: the tests above


@pytest.mark.parametrize("keys, width", [(12, 4), (4, 12)])
def test_values_by_weights_gives_the_weights_gradient_in_their_layout_when_they_are_larger(
        keys, width):
    # a softmax's backward copies a gradient that is not laid out as its output: with
    # more keys than value channels that copy is the largest tensor of the backward
    v = torch.randn(2, 3, width, keys, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 5, keys, dtype=torch.float64, requires_grad=True)
    y = runtime.values_by_weights(v, w)
    torch.testing.assert_close(y, torch.einsum("bmdk,bmqk->bmdq", v, w))
    with torch.no_grad():
        torch.testing.assert_close(runtime.values_by_weights(v, w), y)
    (grad,) = torch.autograd.grad(y, w, torch.randn_like(y))
    assert grad.is_contiguous() == (keys > width)
