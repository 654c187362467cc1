"""Relative positions and window ranges (E2, E4, sinusoid, range window) against loops
written from their definitions in docs/language.md §5, one query and key at a time."""

import pytest
import torch

import attnspec

SEQUENCE = """
attention Relative(C: int, M: int = 2, R: int = 2, stride: int = 1, dilation: int = 1) {
    let rel = sinusoid(C, wave = 100, magnitude = 2) >> linear(C, bias = false)
    input  x: [B, C, N]
    let    kv = avgpool(x, 1, stride = stride) if stride > 1 else x
    let    q = conv1x1(x, C)
    over   positions(N)
    range  window(R, dilation = dilation)
    heads  M
    weight softmax(E2(query = q, position = rel, keys = kv)
                   + E4(position = rel >> linear(M, groups = M, bias = false), keys = kv))
    value  kv
    output identity
}
"""


def loops(m, x, R: int, stride: int, dilation: int | tuple = 1, wave: float = 100.0,
          magnitude: float = 2.0):
    p = dict(m.named_parameters())
    b, c, n = x.shape
    M = p["position_linear.weight"].shape[0]
    d = c // M
    q = torch.einsum("oc,bcn->bon", p["q_conv1x1.weight"][..., 0], x) \
        + p["q_conv1x1.bias"][None, :, None]
    kv = x[:, :, ::stride]
    period = wave ** (torch.arange(c // 2, dtype=x.dtype) * 2 / c)
    logits = torch.full((b, M, n, kv.shape[-1]), float("-inf"), dtype=x.dtype)
    per_head = dilation if isinstance(dilation, tuple) else (dilation,) * M
    for i in range(n):
        for j in range(kv.shape[-1]):
            offset = i - stride * j
            angle = (i - stride * j) * magnitude / period
            r = p["rel_linear.weight"] @ torch.cat([angle.sin(), angle.cos()])
            for h in range(M):
                if abs(offset) > R * per_head[h] or offset % per_head[h]:
                    continue
                part = slice(h * d, (h + 1) * d)
                logits[:, h, i, j] = (q[:, part, i] * r[part]).sum(-1) \
                    + p["position_linear.weight"][h] @ r[part]
    a = logits.softmax(-1)  # [B, M, N, K]
    v = kv.view(b, M, d, -1)
    return torch.einsum("bmnk,bmdk->bmdn", a, v).reshape(b, c, n)


@pytest.mark.parametrize("R, stride, dilation", [(1, 1, 1), (2, 1, 1), (3, 2, 1), (100, 2, 1),
                                                 (2, 1, 2), (1, 1, 3), (3, 2, 3)])
def test_relative_terms_on_a_window_match_loops(R, stride, dilation):
    torch.manual_seed(0)
    m = attnspec.compile_text(SEQUENCE, C=8, R=R, stride=stride, dilation=dilation).double()
    for p in m.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 8, 9, dtype=torch.float64)
    torch.testing.assert_close(m(x), loops(m, x, R, stride, dilation), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("change, code", [
    ("sinusoid(7)", "shape"),  # not a sine and a cosine half
    ("sinusoid(C) >> linear(C)", None),  # on one axis a bias is fine
    ("sinusoid(C, wave = 0)", "wrong-type"),
    ("linear(C)", "wrong-type"),  # not an encoding of the offset
    ("sinusoid(C) >> linear(3)", "axis-mismatch"),  # E2 needs the query's width
])
def test_position_arguments_are_checked(change, code):
    text = SEQUENCE.replace("sinusoid(C, wave = 100, magnitude = 2) >> linear(C, bias = false)",
                            change)
    if code is None:
        attnspec.compile_text(text, C=8)
        return
    assert first_error(text, C=8) == code


def first_error(text: str, **params) -> str:
    """The code of the first error compiling `text` reports (it must report one)."""
    with pytest.raises(attnspec.SpecError) as info:
        attnspec.compile_text(text, **params)
    return info.value.diagnostics[0].code


def test_several_axes_need_bias_free_linear_position_layers():
    text = """
attention A(C: int) {
    input  x: [B, C, H, W]
    over   positions(H W)
    range  all
    weight softmax(E4(position = sinusoid(8) >> linear(1)))
    value  identity
    output identity
}"""
    assert first_error(text, C=4) == "unsupported"


KEY_SCORES_IN_A_WINDOW = """
attention A(C: int) {
    input  x: [B, C, N]
    over   positions(N)
    range  window(1)
    weight softmax(E3(key = conv1x1(1)))
    value  identity
    output identity
}"""


def test_a_window_over_key_scores_alone_keeps_each_query_s_keys():
    """E3 alone (one score per key) under a window: each query's softmax runs over the
    scores of its own window's keys."""
    m = attnspec.compile_text(KEY_SCORES_IN_A_WINDOW, C=4).double()
    w, b = m.parameters()
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    score = torch.einsum("c,bcn->bn", w.flatten(), x) + b
    expected = torch.zeros_like(x)
    for i in range(6):
        near = slice(max(i - 1, 0), i + 2)
        expected[:, :, i] = torch.einsum("bk,bck->bc", score[:, near].softmax(-1), x[:, :, near])
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


def test_key_scores_alone_under_causal_need_the_queries_own_positions():
    text = KEY_SCORES_IN_A_WINDOW.replace(
        "input  x: [B, C, N]", "input  x: [B, C, N]\n    input  m: [B, C, S]").replace(
        "positions(N)", "positions(N), positions(S)").replace("window(1)", "causal")
    assert first_error(text, C=4) == "unsupported"


def test_a_per_head_factor_on_distance_is_a_linear_bias():
    text = """
attention A(D: int, M: int = 2) {
    input  x: [B, N, D]
    let    slopes = index(M) + 0.5
    over   positions(N)
    range  all
    heads  M
    weight softmax(-slopes * E4(position = distance()))
    value  identity
    output identity
}"""
    module = attnspec.compile_text(text, D=4).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    i = torch.arange(5.0, dtype=torch.float64)
    slopes = torch.tensor([0.5, 1.5], dtype=torch.float64)[:, None, None]
    a = (-slopes * (i[:, None] - i[None, :]).abs()).softmax(-1)  # [M, Q, K]
    v = x.view(2, 5, 2, 2).transpose(1, 2)  # [B, M, N, d]
    torch.testing.assert_close(module(x), (a @ v).transpose(1, 2).reshape(2, 5, 4))


def test_a_per_head_factor_needs_one_number_per_head():
    text = """
attention A(D: int, M: int = 2) {
    input  x: [B, N, D]
    let    slopes = index(D)
    over   positions(N)
    range  all
    heads  M
    weight softmax(slopes * E4(position = distance()))
    value  identity
    output identity
}"""
    assert first_error(text, D=4) == "wrong-type"


ROWS = """
attention A(C: int) {{
    input  x: [B, C, H, W]
    input  pad: [B, W] bool optional
    over   positions({over})
    range  all
    mask   pad
    heads  2
    weight softmax(E1(query = conv1x1(C), key = conv1x1(C)))
    value  conv1x1(C)
    output x + y
}}
"""

# the same attention on one row: x without H
ONE_ROW = ROWS.format(over="W").replace("[B, C, H, W]", "[B, C, W]")


def test_carried_axes_run_the_attention_once_per_index():
    per = attnspec.compile_text(ROWS.format(over="W, per = H"), C=4).double()
    row = attnspec.compile_text(ONE_ROW, C=4).double()
    for p in per.parameters():
        torch.nn.init.normal_(p)
    row.load_state_dict(per.state_dict())
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    pad = torch.tensor([[False, True, False, False, False], [False] * 4 + [True]])
    for mask in (None, pad):
        rows = torch.stack([row(x[:, :, h], mask) for h in range(3)], dim=2)
        torch.testing.assert_close(per(x, mask), rows)


@pytest.mark.parametrize("over", ["W, per = Z", "W, per = W"])
def test_carried_axes_are_axes_of_the_input_other_than_the_indexed(over):
    assert first_error(ROWS.format(over=over), C=4) == "axis-mismatch"


OFFSET_TABLE = """
attention Table(C: int, K: int = 4, M: int = 2, G: int = 1, R: int = 1, Rw: int = R) {
    input  x: [B, C, H, W]
    let    q = conv1x1(x, K * M, bias = false)
    over   positions(H W)
    range  all
    heads  M, kv = G
    weight identity(E1(query = q, key = softmax(conv1x1(x, K * G, bias = false), over = H W))
                    + E2(query = q, position = offsets(R, Rw) >> linear(K * G, bias = false)))
    value  conv1x1(C / M * G, bias = false)
    output identity
}
"""


@pytest.mark.parametrize("M, G, R, Rw, H, W", [(2, 1, 1, 1, 3, 4), (4, 2, 2, 1, 4, 3),
                                               (2, 2, 1, 2, 2, 5), (1, 1, 5, 5, 3, 3)])
def test_a_learned_vector_per_offset_matches_loops(M, G, R, Rw, H, W):
    """E2 on offsets(R) >> linear: q · T[k − q] within the radii, 0 beyond (the lambda
    layer's position lambdas, with keys and values shared by the heads)."""
    torch.manual_seed(0)
    m = attnspec.compile_text(OFFSET_TABLE, C=8, M=M, G=G, R=R, Rw=Rw).double()
    x = torch.randn(2, 8, H, W, dtype=torch.float64)
    wq, wk, table, wv = (p.flatten(1) for p in m.parameters())
    k_ = 4
    q = torch.einsum("oc,bcn->bon", wq, x.flatten(2)).view(2, M, k_, H * W)
    k = torch.einsum("oc,bcn->bon", wk, x.flatten(2)).softmax(-1).view(2, G, k_, H * W)
    v = torch.einsum("oc,bcn->bon", wv, x.flatten(2)).view(2, G, -1, H * W)
    rows = table.T.reshape(-1, G, k_)  # [offsets, G, K]: row (dy + R)(2Rw + 1) + dx + Rw
    logits = torch.zeros(2, M, H * W, H * W, dtype=torch.float64)
    for i in range(H * W):
        for j in range(H * W):
            dy, dx = j // W - i // W, j % W - i % W  # the key's offset from the query
            for h in range(M):
                g = h // (M // G)
                logits[:, h, i, j] = (q[:, h, :, i] * k[:, g, :, j]).sum(-1)
                if abs(dy) <= R and abs(dx) <= Rw:
                    logits[:, h, i, j] += q[:, h, :, i] @ rows[(dy + R) * (2 * Rw + 1) + dx + Rw, g]
    v = v.repeat_interleave(M // G, dim=1)
    expected = torch.einsum("bmqk,bmdk->bmdq", logits, v).reshape(2, -1, H, W)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


def test_an_offset_table_needs_the_shared_width():
    text = OFFSET_TABLE.replace("linear(K * G, bias = false)))", "linear(K, bias = false)))")
    assert first_error(text, C=8, M=4, G=2) == "axis-mismatch"  # G tables, not one for all


STANDARDISED = """
attention Standardised(D: int, M: int = 2, r: int = 1) {
    input  x: [B, N, D]
    over   positions(N)
    range  all
    heads  M
    weight softmax(E4(position = offsets(r) >> linear(M, bias = false) >> standardise(offsets)
                                 >> affine(over = R, weight = 2, bias = 1)))
    value  linear(D)
    output identity
}
"""


@pytest.mark.parametrize("M, r, N", [(2, 1, 5), (4, 2, 4), (1, 4, 3)])
def test_the_layers_after_an_offset_table_may_name_its_rows(M, r, N):
    """A position table has no batch axis: `standardise(offsets)` standardises each head's
    column over the offsets (AFT-conv's Eq. 8), `affine(over = R)` scales and shifts it per
    head; E4 then reads row k − q within r and 0 beyond."""
    torch.manual_seed(0)
    m = attnspec.compile_text(STANDARDISED, D=4, M=M, r=r).double()
    w, gain, shift, wv, bv = m.parameters()
    with torch.no_grad():
        gain.normal_(), shift.normal_()
    table = (w.T - w.T.mean(0)) / (w.T.std(0) + 1e-5) * gain + shift  # [offsets, M]
    x = torch.randn(2, N, 4, dtype=torch.float64)
    logits = torch.zeros(M, N, N, dtype=torch.float64)
    for i in range(N):
        for j in range(N):
            if abs(j - i) <= r:
                logits[:, i, j] = table[j - i + r]
    v = (x @ wv.T + bv).unflatten(-1, (M, -1)).transpose(1, 2)  # [B, M, N, d]
    expected = (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


def test_a_softmax_over_the_offsets_of_a_table_is_a_distribution_per_head():
    text = STANDARDISED.replace("standardise(offsets)\n", "softmax(over = offsets)\n")
    m = attnspec.compile_text(text.replace("affine(over = R, weight = 2, bias = 1)", "identity"),
                              D=4, M=2, r=1).double()
    w = next(m.parameters())
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    table = w.T.softmax(0)  # [offsets, M]: row k − q + 1 within 1, 0 beyond
    beyond = torch.zeros(2, dtype=torch.float64)
    logits = torch.stack([torch.stack([table[j - i + 1] if abs(j - i) <= 1 else beyond
                                       for j in range(3)]) for i in range(3)])
    v = m.value_linear(x).unflatten(-1, (2, -1)).transpose(1, 2)
    expected = (logits.permute(2, 0, 1).softmax(-1) @ v).transpose(1, 2).flatten(2)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layer", ["stack(as = S)", "shift(offsets, by = 1)",
                                   "permute(R offsets)", "take(offsets, 0)",
                                   "pad(offsets, multiple = 4)"])
def test_the_layers_after_a_table_keep_its_rows(layer):
    text = STANDARDISED.replace("standardise(offsets)", layer)
    assert first_error(text, D=4) == "axis-mismatch"


def test_one_offset_has_no_standard_deviation():
    assert first_error(STANDARDISED, D=4, r=0) == "shape"


def test_aft_conv_s_reparameterised_kernels_start_at_zero_and_learn():
    """Eq. 8's gain and bias start at 0, so every kernel does, as the kernels learned
    directly do; the raw kernels are not constant, so the gain has a gradient."""
    torch.manual_seed(0)
    params = dict(D=8, h=2, s=3)
    reparam = attnspec.compile_file("specs/aft.attn", "AFTConv", **params)
    direct = attnspec.compile_file("specs/aft.attn", "AFTConv", reparam=False, **params)
    shared = {k: v for k, v in reparam.state_dict().items() if "position" not in k}
    direct.load_state_dict(shared, strict=False)
    x = torch.randn(2, 4, 5, 8)
    y = reparam(x)
    torch.testing.assert_close(y, direct(x), rtol=0, atol=0)
    y.square().sum().backward()
    assert reparam.position_affine.weight.grad.abs().min() > 0


DISPLACEMENT = """
attention Dynamic(C: int, M: int = 2, G: int = 3) {
    input  x: [B, C, H, W]
    over   positions(H W)
    range  all
    heads  M
    weight softmax(E1(query = conv1x1(C), key = conv1x1(C)) / sqrt(C / M)
                   + E4(position = displacement(G - 1, G) >> linear(4) >> layernorm >> relu
                                   >> linear(M)))
    value  conv1x1(C)
    output identity
}
"""


@pytest.mark.parametrize("H, W", [(3, 3), (4, 5), (2, 7)])
def test_an_mlp_on_the_displacement_is_a_bias_per_pair(H, W):
    """E4(position = displacement(R) >> MLP): the MLP of q − k, per head, 0 beyond R
    (CrossFormer's dynamic position bias)."""
    torch.manual_seed(0)
    m = attnspec.compile_text(DISPLACEMENT, C=8).double()
    wq, bq, wk, bk, w1, b1, ln_w, ln_b, w2, b2, wv, bv = m.parameters()
    assert w1.shape == (4, 2)  # two numbers per offset: Δy, Δx
    x = torch.randn(2, 8, H, W, dtype=torch.float64)

    def conv(w, b):
        return torch.einsum("oc,bcn->bon", w.flatten(1), x.flatten(2)) + b[:, None]

    q, k, v = (conv(w, b).view(2, 2, 4, H * W) for w, b in ((wq, bq), (wk, bk), (wv, bv)))
    logits = torch.einsum("bmdq,bmdk->bmqk", q, k) / 2
    for i in range(H * W):
        for j in range(H * W):
            dy, dx = i // W - j // W, i % W - j % W  # the query's offset from the key
            if abs(dy) <= 2 and abs(dx) <= 3:
                h = torch.nn.functional.layer_norm(
                    w1 @ torch.tensor([dy, dx], dtype=torch.float64) + b1, (4,), ln_w, ln_b)
                logits[:, :, i, j] += w2 @ h.relu() + b2
    expected = torch.einsum("bmqk,bmdk->bmdq", logits.softmax(-1), v).reshape(2, 8, H, W)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


SWIN_TABLE = """
attention SwinBias(C: int, M: int = 2, R: int = 2) {
    input  x: [B, C, H, W]
    over   positions(H W)
    range  all
    heads  M
    weight softmax(E4(position = offsets(R, of = query) >> linear(M, bias = false)))
    value  identity
    output identity
}
"""


@pytest.mark.parametrize("H, W", [(3, 3), (2, 4)])
def test_an_offset_table_of_the_query_is_indexed_as_swin(H, W):
    """offsets(R, of = query) >> linear(M): row (Δh + R)(2R + 1) + Δw + R for Δ = q − k,
    Swin's relative_position_index, read per head; 0 beyond R."""
    m = attnspec.compile_text(SWIN_TABLE, C=4, R=2).double()
    (weight,) = m.parameters()  # the linear's weight [M, rows]: the table, transposed
    assert weight.shape == (2, 25)
    with torch.no_grad():
        weight.copy_(torch.randn(2, 25, dtype=torch.float64))
    table = weight.detach().t()
    x = torch.randn(2, 4, H, W, dtype=torch.float64)
    logits = torch.zeros(2, H * W, H * W, dtype=torch.float64)
    for i in range(H * W):
        for j in range(H * W):
            dh, dw = i // W - j // W, i % W - j % W  # the query's offset from the key
            if abs(dh) <= 2 and abs(dw) <= 2:
                logits[:, i, j] = table[(dh + 2) * 5 + dw + 2]
    v = x.view(2, 2, 2, H * W)
    expected = torch.einsum("mqk,bmdk->bmdq", logits.softmax(-1), v).reshape(2, 4, H, W)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


def test_an_offset_table_of_the_query_is_for_e4():
    text = SWIN_TABLE.replace("E4(position = offsets(R, of = query) >> linear(M, bias = false))",
                              "E2(query = conv1x1(C), position = offsets(R, of = query))")
    with pytest.raises(attnspec.SpecError, match="unsupported"):
        attnspec.compile_text(text, C=4)
    with pytest.raises(attnspec.SpecError, match="`of` is `key`"):
        attnspec.compile_text(SWIN_TABLE.replace("of = query", "of = value"), C=4)


GROUPED = """
attention Grouped(D: int, G: int = 2, R: int = 1) {
    input  x: [B, H, W, D]
    over   positions(H W)
    range  all
    heads  D                                   # one head per feature, as AFT
    weight softmax(E3(key = linear(D)) + E4(position = offsets(R) >> linear(G, bias = false)))
    value  linear(D)
    output identity
}
"""


@pytest.mark.parametrize("G", [1, 2, 4])
def test_a_position_score_per_group_of_heads_is_shared_by_the_group(G):
    """E4 of width G with M heads: head m reads column m // (M / G) (AFT-conv)."""
    torch.manual_seed(0)
    m = attnspec.compile_text(GROUPED, D=4, G=G).double()
    wk, bk, table, wv, bv = m.parameters()  # table: [G, 9]
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    tokens = x.flatten(1, 2)  # [B, N, D]
    logits = (tokens @ wk.T + bk).transpose(1, 2)[:, :, None, :].repeat(1, 1, 12, 1)
    for i in range(12):
        for j in range(12):
            dy, dx = j // 4 - i // 4, j % 4 - i % 4
            if abs(dy) <= 1 and abs(dx) <= 1:
                column = table[:, (dy + 1) * 3 + dx + 1].repeat_interleave(4 // G)
                logits[:, :, i, j] += column
    v = (tokens @ wv.T + bv).transpose(1, 2)  # [B, D, N]
    expected = (logits.softmax(-1) * v[:, :, None, :]).sum(-1).transpose(1, 2)
    torch.testing.assert_close(m(x), expected.view(2, 3, 4, 4), rtol=0, atol=1e-12)
    with pytest.raises(attnspec.SpecError):  # 3 does not divide 4 heads
        attnspec.compile_text(GROUPED, D=4, G=3)


@pytest.mark.parametrize("R, stride, heads, dilated", [(2, 1, 2, 1), (1, 2, 4, 3),
                                                      (2, 1, 4, 0)])
def test_a_dilation_in_the_last_heads_alone_matches_loops(R, stride, heads, dilated):
    torch.manual_seed(0)
    text = SEQUENCE.replace("window(R, dilation = dilation)",
                            "window(R, dilation = dilation, dilated_heads = k)")
    text = text.replace("dilation: int = 1)", "dilation: int = 1, k: int = M)")
    m = attnspec.compile_text(text, C=8, M=heads, R=R, stride=stride, dilation=3,
                              k=dilated).double()
    for p in m.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 8, 9, dtype=torch.float64)
    per_head = (1,) * (heads - dilated) + (3,) * dilated
    torch.testing.assert_close(m(x), loops(m, x, R, stride, per_head), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rng, code", [("window(1, causal = 2)", "wrong-type"),
                                       ("window(1, causl = true)", "wrong-arity"),
                                       ("window(1, dilation = 2, dilated_heads = 3)", "heads"),
                                       ("window(1, dilated_heads = -1)", "wrong-type")])
def test_a_causal_window_is_checked(rng, code):
    assert first_error(SEQUENCE.replace("window(R, dilation = dilation)", rng), C=8) == code


def test_a_causal_window_sees_the_keys_up_to_the_query():
    text = SEQUENCE.replace("window(R, dilation = dilation)",
                            "window(R, dilation = dilation, causal = true)")
    m = attnspec.compile_text(text, C=8, R=2)
    x = torch.randn(1, 8, 6, requires_grad=True)
    y = m(x)
    # the output at position 2 depends on inputs 0, 1, 2 only
    (grad,) = torch.autograd.grad(y[0, :, 2].sum(), x)
    assert grad[0, :, 3:].abs().max() == 0 and (grad[0, :, :3].abs().sum(0) > 0).all()


MAP = """
attention Local(C: int, R: int = 1, causal: bool = false) {
    input  x: [B, C, H, W]
    input  glob: [B, H, W] bool optional
    input  pad: [B, H, W] bool optional
    over   positions(H W)
    range  window(R, causal = causal, global = glob)
    mask   pad
    weight softmax(E1(query = conv1x1(C), key = conv1x1(C)))
    value  identity
    output identity
}
"""


def _reads(m, x, position, **inputs) -> torch.Tensor:
    """[H, W]: which input positions the output at `position` depends on."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m(x, **inputs)[0, :, position[0], position[1]].sum(), x)
    return grad[0].abs().sum(0) > 0


def test_global_tokens_see_every_key_and_every_query_sees_them():
    torch.manual_seed(0)
    m = attnspec.compile_text(MAP, C=4)
    x = torch.randn(1, 4, 5, 6)
    glob = torch.zeros(1, 5, 6, dtype=torch.bool)
    glob[0, 4, 5] = glob[0, 0, 3] = True
    window = torch.zeros(5, 6, dtype=torch.bool)
    window[0:3, 0:3] = True  # R = 1 around (1, 1)
    assert torch.equal(_reads(m, x, (1, 1), glob=glob), window | glob[0])
    assert torch.equal(_reads(m, x, (1, 1)), window)  # none given: the window alone
    assert _reads(m, x, (4, 5), glob=glob).all()  # a global token reads the whole map
    pad = torch.zeros(1, 5, 6, dtype=torch.bool)
    pad[0, 4, 5] = pad[0, 2, 2] = True  # padding hides a key, global or not
    expected = (window | glob[0]) & ~pad[0]
    assert torch.equal(_reads(m, x, (1, 1), glob=glob, pad=pad), expected)


def test_a_causal_window_keeps_global_tokens_causal():
    torch.manual_seed(0)
    m = attnspec.compile_text(MAP, C=4, causal=True)
    x = torch.randn(1, 4, 1, 9)
    glob = torch.zeros(1, 1, 9, dtype=torch.bool)
    glob[0, 0, 1] = glob[0, 0, 7] = True
    reads = _reads(m, x, (0, 5), glob=glob)[0]  # keys 4, 5 (window) and 1 (global), not 7
    assert reads.nonzero().flatten().tolist() == [1, 4, 5]
    assert _reads(m, x, (0, 7), glob=glob)[0].nonzero().flatten().tolist() == list(range(8))


@pytest.mark.parametrize("rng", ["all", "window(9)"])  # fused SDPA, and a dense mask
def test_a_padding_mask_on_a_map_hides_its_keys(rng):
    torch.manual_seed(0)
    m = attnspec.compile_text(MAP.replace("window(R, causal = causal, global = glob)", rng),
                              C=4)
    p = dict(m.named_parameters())
    x = torch.randn(2, 4, 3, 5)
    pad = torch.rand(2, 3, 5) < 0.3
    pad[:, 0, 0] = False
    q, k = ((torch.einsum("oc,bcn->bon", p[f"{r}_conv1x1.weight"][..., 0, 0], x.flatten(2))
             + p[f"{r}_conv1x1.bias"][None, :, None]) for r in ("query", "key"))
    logits = torch.einsum("bcq,bck->bqk", q, k).masked_fill(pad.flatten(1)[:, None], -torch.inf)
    expected = torch.einsum("bqk,bck->bcq", logits.softmax(-1), x.flatten(2))
    torch.testing.assert_close(m(x, pad=pad), expected.view(2, 4, 3, 5))


@pytest.mark.parametrize("rng, code", [
    ("window(R, global = x)", "wrong-type"),  # a float tensor
    ("window(R, global = 2)", "wrong-type"),
    ("window(R, global = glob_c)", "axis-mismatch"),  # marks channels, not keys
    ("window(R, globl = glob)", "wrong-arity"),
])
def test_a_window_s_global_tokens_are_checked(rng, code):
    text = MAP.replace("window(R, causal = causal, global = glob)", rng).replace(
        "input  pad:", "input  glob_c: [B, C] bool optional\n    input  pad:")
    assert first_error(text, C=4) == code


def test_longformer_compiles_whole_and_passes_gradcheck_with_global_tokens():
    from attnspec.api import spec_path

    torch.manual_seed(0)
    m = attnspec.compile_file(spec_path("sliding_window"), "Longformer", D=4, M=2,
                              attention_window=2).double()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    glob = torch.zeros(2, 6, dtype=torch.bool)
    glob[0, 2] = True
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 5] = True
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(m, fullgraph=True)(x, pad, glob),
                                   m(x, pad, glob))
    assert torch.autograd.gradcheck(lambda t: m(t, pad, glob), (x.requires_grad_(),))


STRIDED = """
attention Strided(C: int, s: int = 2) {
    input  x: [B, N, C]
    over   positions(N, stride = s)
    range  window(2)
    weight softmax(E1(query = linear(C), key = linear(C))
                   - E4(position = distance() >> linear(1, bias = false)))
    value  identity
    output y
}
"""


@pytest.mark.parametrize("s", [2, 3])
def test_queries_every_s_th_position_read_their_positions_at_i_times_s(s):
    torch.manual_seed(0)
    m = attnspec.compile_text(STRIDED, C=4, s=s).double()
    p = dict(m.named_parameters())
    x = torch.randn(2, 11, 4, dtype=torch.float64)
    xq = x[:, ::s]  # the queries: every s-th token
    q = xq @ p["query_linear.weight"].T + p["query_linear.bias"]
    k = x @ p["key_linear.weight"].T + p["key_linear.bias"]
    where = s * torch.arange(xq.shape[1], dtype=torch.float64)[:, None] \
        - torch.arange(11, dtype=torch.float64)[None, :]  # query i sits at i·s
    logits = q @ k.transpose(1, 2) - p["position_linear.weight"][0, 0] * where.abs()
    logits = logits.masked_fill(where.abs() > 2, float("-inf"))
    torch.testing.assert_close(m(x), logits.softmax(-1) @ x)


@pytest.mark.parametrize("text, code", [
    ("over   positions(N, stride = 0)", "wrong-type"),
    ("weight softmax(E1(query = x, key = linear(C)))", "axis-mismatch"),  # x: every token
    ("weight softmax(E1(query = linear(C), key = linear(C)) + E4(position = offsets(2) >> "
     "linear(1, bias = false)))", "unsupported"),  # a table read by the query's index
])
def test_queries_every_s_th_position_are_checked(text, code):
    spec = STRIDED.replace("over   positions(N, stride = s)", text) if text.startswith(
        "over") else STRIDED.replace(STRIDED[STRIDED.index("    weight"):
                                             STRIDED.index("    value")], "    " + text + "\n")
    assert first_error(spec, C=4) == code


SAMPLED = """
attention Sampled(C: int, heads: int, groups: int = 1, dilation: int = 1) {
    input  x: [B, C, H, W]
    over   positions(H W)
    range  all
    heads  heads
    weight identity(E2(query = conv(2 * heads, init = zero),
                       position = bilinear(1, dilation = dilation, groups = groups)))
    value  identity
    output identity
}
"""


def test_bilinear_takes_a_head_per_group_and_kernel_position():
    with pytest.raises(attnspec.SpecError, match="times 2 groups: heads must be 18, not 9") as info:
        attnspec.compile_text(SAMPLED, C=18, heads=9, groups=2)
    assert info.value.diagnostics[0].code == "heads"


def test_bilinear_at_zero_displacements_reads_the_dilated_kernel_positions():
    """Zero offsets: head m (of group g) reads x at q + d·p_m, zeros beyond the map."""
    m = attnspec.compile_text(SAMPLED, C=18, heads=18, groups=2, dilation=2)
    x = torch.randn(1, 18, 6, 7)  # one channel per head: head g·9 + n reads channel g·9 + n
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    expected = torch.stack([padded[0, h, 2 * (h % 9 // 3):][:6, 2 * (h % 3):][:, :7]
                            for h in range(18)])
    torch.testing.assert_close(m(x)[0], expected)


def test_a_window_between_two_sequences_reads_the_keys_index_against_the_querys():
    text = """
attention Local(D: int) {
    input  h: [B, T, D]
    input  memory: [B, S, D]
    over   positions(T), positions(S)
    range  window(1)
    weight softmax(E1(query = identity, key = identity))
    value  identity
    output identity
}"""
    m = attnspec.compile_text(text, D=4)
    h, memory = torch.randn(2, 6, 4), torch.randn(2, 3, 4)
    near = (torch.arange(6)[:, None] - torch.arange(3)[None, :]).abs() <= 1
    scores = (h @ memory.transpose(1, 2)).masked_fill(~near, float("-inf"))
    expected = torch.softmax(scores, -1).nan_to_num(0) @ memory  # t = 4, 5 see no key
    torch.testing.assert_close(m(h, memory), expected)
    assert m(h, memory)[:, 4:].abs().max() == 0


CENTRED = """
attention Centred(D: int) {
    input  h: [B, T, D]
    input  memory: [B, S, D]
    input  pad: [B, S] bool optional
    let    p = length(memory, pad, over = S) * sigmoid(take(linear(h, 1), D, 0))
    let    g = exp(-1.0 * outer(p, index(memory, S), op = sub) ** 2)
    over   positions(T), positions(S)
    range  window(1, centre = p)
    mask   pad
    weight softmax(E1(query = identity, key = identity)) * g
    value  identity
    output identity
}"""


@pytest.mark.parametrize("padded", [False, True])
def test_a_centred_window_sees_the_keys_near_each_querys_point_and_scales_their_weights(
        padded):
    m = attnspec.compile_text(CENTRED, D=4).double()
    h, memory = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(2, 7, 4, dtype=torch.float64)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    if padded:
        pad[1, 4:] = True
    lengths = torch.tensor([7.0, 4.0 if padded else 7.0], dtype=torch.float64)
    lin = m.p_linear
    p = lengths[:, None] * torch.sigmoid(lin(h))[..., 0]  # [B, T]
    apart = p[:, :, None] - torch.arange(7, dtype=torch.float64)  # p_t − s
    scores = (h @ memory.transpose(1, 2)).masked_fill((apart.abs() > 1) | pad[:, None], -torch.inf)
    weights = torch.softmax(scores, -1).nan_to_num(0) * torch.exp(-apart ** 2)
    torch.testing.assert_close(m(h, memory, pad if padded else None), weights @ memory)


@pytest.mark.parametrize("edit, code", [
    (("centre = p", "centre = h"), "axis-mismatch"),  # a position per query, not features
    (("centre = p", "centre = pad"), "wrong-type"),  # a bool
    (("centre = p", "centre = p, dilation = 2"), "unsupported"),
    (("* g", "+ g"), "wrong-type"),  # weights take `*` by a pair factor alone
    (("* g", "* h"), "axis-mismatch"),  # D is neither the query's nor the key's axis
])
def test_a_centred_window_and_a_pair_factor_are_checked(edit, code):
    assert first_error(CENTRED.replace(*edit), D=4) == code


def test_a_pair_factor_needs_distinct_query_and_key_axes():
    # self-attention over T: a tensor cannot name T for the queries and again for the keys
    text = CENTRED.replace("positions(T), positions(S)", "positions(T)").replace(
        "window(1, centre = p)", "all").replace("    mask   pad\n", "").replace(
        "* g", "* mean(h, D)")
    assert first_error(text, D=4) == "unsupported"


AXIS_OFFSETS = """
attention PerAxis(C: int, M: int = 2, R: int = 1, Rw: int = 2, shared: bool = true) {
    input  x: [B, C, H, W]
    let    q = conv1x1(x, C, bias = false)
    over   positions(H W)
    range  all
    heads  M
    weight softmax(E1(query = q, key = conv1x1(C, bias = false))
                   + E2(query = q, position = axis_offsets(R, Rw)
                                   >> linear(C / M if shared else C, bias = false))
                   + E4(position = axis_offsets(R, Rw) >> linear(M, bias = false)))
    value  conv1x1(C, bias = false)
    output identity
}
"""


@pytest.mark.parametrize("R, Rw, shared, H, W", [(1, 2, True, 3, 4), (2, 1, False, 4, 3),
                                                 (0, 3, True, 2, 5)])
def test_axis_offsets_give_a_vector_per_offset_on_each_axis_added(R, Rw, shared, H, W):
    """E2 on axis_offsets(R) >> linear: q · (r_h[Δh] + r_w[Δw]), each axis's vector 0
    beyond its radius (one table for every head when it is a head wide); E4: a score per
    axis offset and head, added."""
    torch.manual_seed(0)
    M, C = 2, 8
    m = attnspec.compile_text(AXIS_OFFSETS, C=C, M=M, R=R, Rw=Rw, shared=shared).double()
    x = torch.randn(2, C, H, W, dtype=torch.float64)
    wq, wk, rel, bias, wv = (p.flatten(1) for p in m.parameters())
    d = C // M
    q = torch.einsum("oc,bcn->bon", wq, x.flatten(2)).view(2, M, d, H * W)
    k = torch.einsum("oc,bcn->bon", wk, x.flatten(2)).view(2, M, d, H * W)
    v = torch.einsum("oc,bcn->bon", wv, x.flatten(2)).view(2, M, d, H * W)
    vectors = rel.T.reshape(-1, 1 if shared else M, d).expand(-1, M, d)  # [rows, M, d]
    logits = torch.zeros(2, M, H * W, H * W, dtype=torch.float64)
    for i in range(H * W):
        for j in range(H * W):
            dy, dx = j // W - i // W, j % W - i % W  # the key's offset from the query
            logits[:, :, i, j] = (q[..., i] * k[..., j]).sum(-1)
            if abs(dy) <= R:
                logits[:, :, i, j] += (q[..., i] * vectors[dy + R]).sum(-1) + bias[:, dy + R]
            if abs(dx) <= Rw:
                row = 2 * R + 1 + dx + Rw
                logits[:, :, i, j] += (q[..., i] * vectors[row]).sum(-1) + bias[:, row]
    expected = torch.einsum("bmqk,bmdk->bmdq", logits.softmax(-1), v).reshape(2, C, H, W)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)


def test_axis_offsets_read_positions_on_strided_queries():
    text = AXIS_OFFSETS.replace("over   positions(H W)", "over   positions(H W, stride = 2)")
    text = text.replace("conv1x1(x, C, bias = false)",
                        "conv1x1(avgpool(x, 1, stride = 2), C, bias = false)")
    # queries every 2nd position are the whole map's queries there: they read i·2
    strided = attnspec.compile_text(text, C=8).double()
    whole = attnspec.compile_text(AXIS_OFFSETS, C=8).double()
    whole.load_state_dict(strided.state_dict())
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(strided(x), whole(x)[:, :, ::2, ::2])


LOCATION = """
attention Location(D: int, T: int, M: int = 2) {
    input  h: [B, Q, D]
    input  memory: [B, S, D]
    over   positions(Q), positions(S)
    range  all
    heads  M
    weight softmax(E2(query = linear(T * M, bias = false), position = absolute(T)))
    value  identity
    output y
}
"""


@pytest.mark.parametrize("T, S", [(5, 3), (5, 5), (3, 6)])
def test_absolute_positions_give_each_query_a_logit_per_key_index(T, S):
    torch.manual_seed(0)
    m = attnspec.compile_text(LOCATION, D=4, T=T).double()
    h, memory = torch.randn(2, 3, 4, dtype=torch.double), torch.randn(2, S, 4,
                                                                     dtype=torch.double)
    W = m.state_dict()["query_linear.weight"]  # [M·T, D], head-major
    expected = torch.empty(2, 3, 4, dtype=torch.double)
    for b in range(2):
        for t in range(3):
            for head in range(2):
                scores = [W[head * T + s] @ h[b, t] if s < T else torch.tensor(0.0)
                          for s in range(S)]  # a key beyond T scores 0
                a = torch.stack(scores).softmax(0)
                part = slice(head * 2, head * 2 + 2)
                expected[b, t, part] = a @ memory[b, :, part]
    torch.testing.assert_close(m(h, memory), expected, rtol=1e-10, atol=1e-10)


def test_absolute_positions_need_keys_every_position():
    text = """
attention Pooled(C: int, T: int) {
    input  x: [B, C, N]
    let    kv = avgpool(x, 1, stride = 2)
    over   positions(N)
    range  all
    weight softmax(E2(query = conv1x1(T, bias = false), position = absolute(T), keys = kv))
    value  kv
    output identity
}
"""
    with pytest.raises(attnspec.SpecError) as err:
        attnspec.compile_text(text, C=4, T=5)
    assert err.value.diagnostics[0].code == "unsupported"
    assert "pooled keys" in str(err.value)
