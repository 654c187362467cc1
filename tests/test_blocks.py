"""Blocks compose attentions: `>>` in sequence, `+` side by side, `residual(...)`; `use`
brings in other files. Each block must equal the same composition of single modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import attnspec

FILE = "tests/fixtures/blocks/compose.attn"
C = 16


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch, request):
    monkeypatch.chdir(request.config.rootpath)


def parts(block: torch.nn.Module) -> list[torch.nn.Module]:
    """Single SE and ECA modules holding the block's weights, in the block's order."""
    singles = []
    for name, child in block.named_children():
        spec = "se" if name.startswith("se") else "eca"
        r = 4 if spec == "se" and child.weight_mlp.fc1.out_features == C // 4 else 2
        single = attnspec.load(spec, C=C, **({"r": r} if spec == "se" else {}))
        single.load_state_dict(child.state_dict())
        singles.append(single)
    return singles


def run(name: str, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.nn.Module]]:
    torch.manual_seed(0)
    block = attnspec.compile_file(FILE, name=name, C=C)
    for p in block.parameters():
        torch.nn.init.normal_(p)
    return block(x), parts(block)


def test_sequence_applies_one_after_the_other():
    x = torch.randn(2, C, 5, 6)
    y, (se, eca) = run("Sequence", x)
    torch.testing.assert_close(y, eca(se(x)))


def test_parallel_sums_both_branches_on_the_same_input():
    x = torch.randn(2, C, 5, 6)
    y, (se, eca) = run("Parallel", x)
    torch.testing.assert_close(y, se(x) + eca(x))


def test_residual_adds_the_input():
    x = torch.randn(2, C, 5, 6)
    y, (se, eca) = run("Residual", x)
    torch.testing.assert_close(y, x + eca(se(x)))


def test_blocks_nest_and_instances_are_named_apart():
    x = torch.randn(2, C, 5, 6)
    block = attnspec.compile_file(FILE, name="Nested", C=C)
    assert [n for n, _ in block.named_children()] == ["parallel", "se"]
    assert [n for n, _ in block.parallel.named_children()] == ["se", "eca"]
    assert block(x).shape == x.shape


LETS = """
attention Inner(D: int) {
    input  x: [B, N, D]
    let    t = relu(linear(x, D))
    output t
}

attention Outer(D: int) {
    input  x: [B, N, D]
    let    u = linear(Inner(D)(x), D)      # named after u: Inner's own `let t` has ended
    output linear(u, D)
}
"""


def test_a_layer_inside_a_let_is_named_after_the_let():
    module = attnspec.compile_text(LETS, "Outer", D=4)
    names = [n for n, _ in module.named_modules()][1:]  # after the module itself
    assert names == ["inner", "inner.t_linear", "u_linear", "output_linear"]


def test_a_block_checks_what_flows_between_its_attentions():
    text = ('use "se.attn"\nblock Twice(C: int) = SE(C) >> SE(C * 2)\n')
    with pytest.raises(attnspec.SpecError, match="axis C of `x` is 32 here"):
        attnspec.compile_text(text, C=16)


def test_a_residual_after_a_sequence_adds_what_flows_into_it():
    x = torch.randn(2, C, 5, 6)
    y, (se, eca) = run("ThenResidual", x)
    h = se(x)
    torch.testing.assert_close(y, h + eca(h))


def test_a_parallel_sum_after_a_sequence_feeds_both_branches_what_flows_in():
    x = torch.randn(2, C, 5, 6)
    y, (se, eca, se2) = run("ThenParallel", x)
    h = se(x)
    torch.testing.assert_close(y, eca(h) + se2(h))


def test_an_attention_applied_to_two_tensors_binds_its_inputs_in_order():
    text = """
attention Cross(D: int) {
    input  q: [B, N, D]
    input  m: [B, S, D]
    over   positions(N), positions(S)
    range  all
    weight softmax(E1(query = identity, key = identity))
    value  identity
    output identity
}
attention Outer(D: int) {
    input  x: [B, N, D]
    let    y2 = Cross(D)(x, 2 * x)
    over   positions(N)
    range  self
    weight sigmoid(y2)
    value  identity
    output identity
}"""
    m = attnspec.compile_text(text, D=4, name="Outer")
    x = torch.randn(2, 5, 4)
    a = torch.softmax(x @ (2 * x).transpose(1, 2), dim=-1)
    torch.testing.assert_close(m(x), torch.sigmoid(a @ (2 * x)) * x)


def test_a_padding_mask_passes_through_to_an_attention_applied_inside():
    spec = open(attnspec.api.spec_path("mhsa")).read() + """
attention Encoder(D: int) {
    input  x: [B, N, D]
    input  pad: [B, N] bool optional
    output x + MHSA(D, 2)(x, pad)
}"""
    torch.manual_seed(0)
    outer = attnspec.compile_text(spec, D=8, name="Encoder").eval()
    inner = attnspec.compile_text(spec, D=8, M=2, name="MHSA").eval()
    inner.load_state_dict({k.split(".", 1)[1]: v for k, v in outer.state_dict().items()})
    x, pad = torch.randn(2, 5, 8), torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    torch.testing.assert_close(outer(x, pad), x + inner(x, pad))
    torch.testing.assert_close(outer(x, None), x + inner(x, None))
    assert not torch.allclose(outer(x, pad)[1], outer(x, None)[1])


def test_an_input_of_another_dtype_than_declared_is_an_error():
    spec = open(attnspec.api.spec_path("mhsa")).read() + """
attention Encoder(D: int) {
    input  x: [B, N, D]
    output MHSA(D, 2)(x, mean(x, D))
}"""
    with pytest.raises(attnspec.SpecError) as info:
        attnspec.compile_text(spec, D=8, name="Encoder")
    assert info.value.diagnostics[0].code == "wrong-type"  # a float [B, N] for the mask
    assert "declared bool" in info.value.diagnostics[0].message


def test_an_attention_applied_inside_checks_the_sizes_it_fixes_naming_the_axis():
    text = """
attention Fixed(C: int, h: int = 3) {
    let    H = h
    input  r: [B, C, H, W]
    output r * 2
}
attention Outer(C: int) {
    input  x: [B, C, H, W]
    output Fixed(C)(x)
}"""
    m = attnspec.compile_text(text, C=4, name="Outer")
    x = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(m(x), 2 * x)
    with pytest.raises(ValueError, match="input r of fixed: axis H .* has size 4, expected 3"):
        m(torch.randn(2, 4, 4, 5))



RENAMED = """
attention Inner(C: int) {
    input  x: [B, C, H, W]
    output conv1x1(x, C)
}
attention Halves(C: int) {
    let    P = 2
    let    c = C / 2
    input  x: [B, C, H, W]
    output split(x, C, P c)
}
attention Outer(D: int) {
    input  t: [B, D, P, Q]
    output t + Inner(D)(t)
}
attention Clash(D: int) {
    input  t: [B, D, P, Q]
    output mean(Halves(D)(t), P c)
}"""


def test_an_attention_applied_inside_gives_its_result_the_caller_s_axis_names():
    torch.manual_seed(0)
    m = attnspec.compile_text(RENAMED, D=4, name="Outer")  # Inner's [B, C, H, W] + t
    ir = attnspec.build_ir(RENAMED, "Outer", D=4)
    back = [n.attrs["renamed"] for n in ir.nodes() if n.op == "rename"
            and n.type.names == ("B", "D", "P", "Q")]
    assert (("C", "D"), ("H", "P"), ("W", "Q")) in back  # the result, named as t was
    conv = next(c for c in m.modules() if isinstance(c, torch.nn.Conv2d))
    t = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(m(t), t + conv(t))


def test_a_result_whose_axes_would_clash_under_the_caller_s_names_keeps_its_own():
    # Halves makes an axis P; t's P is Halves' H: renamed, the result would have two P
    ir = attnspec.build_ir(RENAMED, "Clash", D=4)
    assert ir.node(ir.output).type.names == ("B", "H", "W")
    t = torch.randn(2, 4, 3, 5)
    expected = t.view(2, 2, 2, 3, 5).mean((1, 2))
    torch.testing.assert_close(attnspec.compile_text(RENAMED, D=4, name="Clash")(t), expected)


CROSS = """
attention Cross(D: int) {
    input  x: [B, N, D]
    input  memory: [B, S, D] optional = x
    over   positions(N), positions(S)
    range  all
    weight softmax(E1(query = linear(D), key = linear(D)))
    value  linear(memory, D)
    output identity
}
"""


def _cross(module, x, memory):
    """The reference: queries from x, keys and values from memory."""
    q, k, v = (layer(t) for layer, t in zip(
        (module.query_linear, module.key_linear, module.value_linear), (x, memory, memory)))
    return torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v


def test_an_input_left_out_is_the_input_that_stands_in_for_it():
    torch.manual_seed(0)
    m = attnspec.compile_text(CROSS, D=4)
    x, memory = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    torch.testing.assert_close(m(x, memory), _cross(m, x, memory))  # S = 3, not N
    torch.testing.assert_close(m(x), _cross(m, x, x))
    compiled = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(compiled(x), _cross(m, x, x))
    torch.testing.assert_close(compiled(x, memory), _cross(m, x, memory))


def test_an_attention_applied_inside_another_or_a_block_gets_its_stand_in():
    spec = CROSS + """
attention Twice(D: int) {
    input  x: [B, N, D]
    output Cross(D)(x) + Cross(D)(x, 2 * x)
}
block Chain(D: int) = Cross(D) >> Cross(D)
"""
    torch.manual_seed(0)
    twice = attnspec.compile_text(spec, D=4, name="Twice")
    x = torch.randn(2, 5, 4)
    first, second = twice.cross, twice.cross_2
    torch.testing.assert_close(twice(x), _cross(first, x, x) + _cross(second, x, 2 * x))
    chain = attnspec.compile_text(spec, D=4, name="Chain")
    y = _cross(chain.cross, x, x)
    torch.testing.assert_close(chain(x), _cross(chain.cross_2, y, y))


TWO_OUTPUTS = """
attention Pool(D: int) {
    input  x: [B, N, D]
    let    q = linear(x, D)
    over   positions(N)
    range  all
    weight softmax(E1(query = q, key = linear(D)))
    value  identity
    output linear(D), q, relu
}

attention Twice(D: int) {
    input  x: [B, N, D]
    output Pool(D)(x) + x, mean(x, N)
}
"""


def test_an_attention_returns_every_output_in_order():
    module = attnspec.compile_text(TWO_OUTPUTS, "Pool", D=8).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    out, q, relu_y = module(x)
    query, key, proj = module.q_linear, module.key_linear, module.output_linear
    torch.testing.assert_close(q, query(x))  # a tensor the weight reads, returned as well
    y = torch.softmax(query(x) @ key(x).transpose(1, 2), -1) @ x
    torch.testing.assert_close(out, proj(y))
    torch.testing.assert_close(relu_y, torch.relu(y))  # a layer: applied to y


def _and_pool_alone(text: str):
    """The file's main definition, which calls Pool, and Pool alone with the same weights."""
    outer = attnspec.compile_text(text, D=8).double()
    single = attnspec.compile_text(TWO_OUTPUTS, "Pool", D=8).double()
    single.load_state_dict({k.removeprefix("pool."): v for k, v in outer.state_dict().items()})
    return outer, single


def test_a_call_gives_the_first_output_and_a_composition_returns_several():
    twice, single = _and_pool_alone(TWO_OUTPUTS)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    total, mean = twice(x)
    torch.testing.assert_close(total, single(x)[0] + x)
    torch.testing.assert_close(mean, x.mean(1))


UNPACKED = TWO_OUTPUTS + """
attention Unpacked(D: int) {
    input  x: [B, N, D]
    let    out, q, r = Pool(D)(x)
    output out + r, q
}
"""


def test_every_output_under_per_comes_back_in_the_inputs_layout():
    text = """
attention Rows(D: int) {
    input  x: [B, H, W, D]
    let    q = linear(x, D)
    over   positions(W, per = H)
    range  all
    weight softmax(E1(query = q, key = linear(D)))
    value  identity
    output y, q
}
"""
    m = attnspec.compile_text(text, D=4).double()
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    y, q = m(x)
    torch.testing.assert_close(q, m.q_linear(x))  # [B, H, W, D], not [B·H, W, D]
    k = m.key_linear(x)
    torch.testing.assert_close(y, torch.softmax(q @ k.transpose(-1, -2), -1) @ x)


def test_let_names_every_output_of_a_call():
    both, single = _and_pool_alone(UNPACKED)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    total, q = both(x)
    out, q_single, relu_y = single(x)
    torch.testing.assert_close(total, out + relu_y)
    torch.testing.assert_close(q, q_single)


def test_emanet_inside_another_spec_gives_its_bases_by_name():
    text = (Path("specs/emanet.attn").read_text() + """
attention Bases(C: int, K: int = 4) {
    input  x: [B, C, H, W]
    let    out, mu = EMANet(C, K)(x)
    output mu, out
}
""")
    wrapped = attnspec.compile_text(text, C=8).eval()
    alone = attnspec.load("emanet", C=8, K=4).eval()
    alone.load_state_dict({k.removeprefix("emanet."): v
                           for k, v in wrapped.state_dict().items()})
    x = torch.randn(2, 8, 5, 6)
    (y, mu), (mu_wrapped, y_wrapped) = alone(x), wrapped(x)
    assert mu.shape == (2, 8, 4)  # [B, C, K], the authors' layout
    torch.testing.assert_close(mu_wrapped, mu)
    torch.testing.assert_close(y_wrapped, y)


@pytest.mark.parametrize("let, message", [
    ("let out, q = Pool(D)(x)", "`Pool` gives 3 outputs, not 2"),
    ("let out, q, r, s = Pool(D)(x)", "`Pool` gives 3 outputs, not 4"),
    ("let out, q, r = relu(x)", "`let` with 3 names takes the outputs of an attention"),
    ("let out, q, out = Pool(D)(x)", "`out` is named twice in one `let`"),
    ("let x, q, r = Pool(D)(x)", "`x` is already defined"),
])
def test_let_with_several_names_is_checked(let, message):
    with pytest.raises(attnspec.SpecError, match=re.escape(message)):
        attnspec.compile_text(UNPACKED.replace("let    out, q, r = Pool(D)(x)", let), D=8)


def test_a_composition_output_must_be_a_tensor():
    text = TWO_OUTPUTS.replace("Pool(D)(x) + x, mean(x, N)", "Pool(D)(x), relu")
    with pytest.raises(attnspec.SpecError, match="`output` must give a tensor, not"):
        attnspec.compile_text(text, D=8)
