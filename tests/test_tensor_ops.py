"""Tensor operators on named axes, each against the torch code it stands for."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnspec
from attnspec import SpecError, runtime

SOFTMAX_OVER = """
attention A(C: int) {{
    input  x: [B, C, H, W]
    output softmax(x, over = {axes})
}}
"""


def test_softmax_over_several_axes_is_one_distribution():
    module = attnspec.compile_text(SOFTMAX_OVER.format(axes="H W"), C=3)
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(module(x), x.flatten(2).softmax(-1).view(2, 3, 4, 5))


def test_softmax_over_axes_that_are_not_adjacent_is_an_error():
    with pytest.raises(SpecError, match="adjacent") as info:
        attnspec.compile_text(SOFTMAX_OVER.format(axes="C W"), C=3)
    assert info.value.diagnostics[0].code == "axis-mismatch"


def test_a_softmax_layer_takes_its_axes_by_name():
    # `softmax(over = C)` with no tensor is a layer, as `standardise(C)` is (it lost its
    # setting, an internal error, before)
    text = SOFTMAX_OVER.format(axes="C").replace("softmax(x, over = C)",
                                                 "x >> conv1x1(C) >> softmax(over = C)")
    module = attnspec.compile_text(text, C=3)
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(module(x), module.output_conv1x1(x).softmax(1))
    with pytest.raises(SpecError) as info:
        attnspec.compile_text(text.replace("over = C", "ovr = C"), C=3)
    assert info.value.diagnostics[0].code == "unknown-argument"


def test_a_learned_tensors_batch_of_one_stretches_to_the_free_batch(tmp_path):
    spec = tmp_path / "a.attn"
    spec.write_text("""
attention A(C: int, K: int) {
    input  x: [B, C, H, W]
    output sum(mean(x, H W) * learned(K C), C)
}""")
    ir = attnspec.build_ir(str(spec), C=4, K=3)
    assert str(ir.node(ir.output).type) == "[B, K=3]"


DOT = """
attention A(C: int, K: int) {{
    input  x: [B, C, H, W]
    let    w = learned(K C, init = normal, std = 1)
    output dot({args})
}}
"""


@pytest.mark.parametrize("args, expected", [
    ("w, x, over = C", "kc,bchw->bkhw"),  # a matrix times a map: a conv1d
    ("x, w, over = C", "kc,bchw->bhwk"),  # any other order: torch.einsum
])
def test_dot_contracts_the_named_axis_and_joins_the_others_by_name(args, expected):
    module = attnspec.compile_text(DOT.format(args=args), C=4, K=3)
    x = torch.randn(2, 4, 5, 6)
    w = module.state_dict()["w_learned.weight"].reshape(3, 4)
    torch.testing.assert_close(module(x), torch.einsum(expected, w, x))


BATCHED = """
attention A(C: int, K: int, H: int) {
    input  x: [B, C, H, W]
    let    w = learned(H K C, init = normal, std = 1)     # a batch of one: broadcast
    output dot(w, permute(x, B W C H), over = C)          # [B, H, K] · [B, W, C, H]
}
"""


def test_a_batched_matrix_product_is_lowered_as_a_matmul():
    # [..., K, C] · (the same leading axes, C and W in any order) → [..., K, W]: torch.matmul
    # on the right operand permuted to [..., C, W], not einsum (which copies its result)
    module = attnspec.compile_text(BATCHED, C=4, K=3, H=5)
    assert "einsum" not in module.code and "batched_matmul" in module.code
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    w = module.state_dict()["w_learned.weight"].double().reshape(5, 3, 4)
    torch.testing.assert_close(module.double()(x), torch.einsum("hkc,bchw->bhkw", w, x))
    torch.autograd.gradcheck(module, (x,))


def test_a_batched_product_takes_the_leading_axes_in_the_larger_operands_memory_order():
    # windows [B, L, M, K, c] read from unfold's [B, M, c, K, L] (VOLO): the product runs
    # over (B, M, L), so its result lies in that order, a view permuted back
    b = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64).permute(0, 4, 1, 3, 2)
    a = torch.randn(2, 6, 3, 2, 5, dtype=torch.float64)  # [B, L, M, I, K], the smaller
    y = runtime.batched_matmul(a, b)
    torch.testing.assert_close(y, a @ b, rtol=1e-12, atol=1e-12)
    assert y.permute(0, 2, 1, 3, 4).is_contiguous()
    torch.autograd.gradcheck(runtime.batched_matmul, (a.requires_grad_(), b.requires_grad_()))
    c = torch.randn(2, 6, 3, 5, 4, dtype=torch.float64)  # the larger in order: a plain matmul
    assert runtime.batched_matmul(a, c).is_contiguous()


def test_dot_over_an_axis_one_side_lacks_is_an_error():
    with pytest.raises(SpecError, match="both tensors") as info:
        attnspec.compile_text(DOT.format(args="w, x, over = H"), C=4, K=3)
    assert info.value.diagnostics[0].code == "axis-mismatch"


STRIPS = """
attention A(C: int) {{
    input  x: [B, C, H, W]
    let    strips = concat(mean(x, W), mean(x, H), over = H W, as = L)
    output {output}
}}
"""


def test_concat_joins_differently_named_axes_and_part_reads_each_back():
    module = attnspec.compile_text(STRIPS.format(
        output="x * part(strips * 2, L, H) + part(strips, L, W)"), C=3)
    x = torch.randn(2, 3, 4, 5)
    expected = x * 2 * x.mean(3, keepdim=True) + x.mean(2, keepdim=True)
    torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize("output, message", [
    ("part(strips, L, C)", "no part `C`"),
    ("part(mean(x, H), W, H)", "not joined"),
    ("concat(mean(x, W), mean(x, H), over = H, as = K)", "names one axis of each"),
])
def test_concat_and_part_name_their_axes(output, message):
    with pytest.raises(SpecError, match=message) as info:
        attnspec.compile_text(STRIPS.format(output=output), C=3)
    assert info.value.diagnostics[0].code == "axis-mismatch"


def test_a_bool_mask_is_no_number():
    with pytest.raises(SpecError, match="bool mask") as info:
        attnspec.compile_text("""
attention A(D: int) {
    input  x: [B, N, D]
    input  pad: [B, N] bool optional
    output x * pad
}""", D=4)
    assert info.value.diagnostics[0].code == "wrong-type"


def test_powers_of_numbers_and_tensors():
    module = attnspec.compile_text("""
attention A(C: int, k: int = 2 ** 3) {
    input  x: [B, C, N]
    output 2 ** x + x ** 2 + k
}""", C=2)
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(module.double()(x), 2 ** x + x ** 2 + 8)


def test_index_counts_along_a_new_axis_in_the_inputs_dtype():
    module = attnspec.compile_text("""
attention A(C: int, K: int = 4) {
    input  x: [B, C]
    output mean(x, C) * 0 + index(K)
}""", C=2).double()
    y = module(torch.zeros(3, 2, dtype=torch.float64))
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, torch.arange(4.0, dtype=torch.float64).expand(3, 4))


@pytest.mark.parametrize("name, fn", [
    ("relu", torch.relu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
    ("gelu", torch.nn.functional.gelu), ("silu", torch.nn.functional.silu),
    ("elu", torch.nn.functional.elu), ("leaky_relu", torch.nn.functional.leaky_relu),
    ("hard_sigmoid", torch.nn.functional.hardsigmoid),
    ("hard_swish", torch.nn.functional.hardswish),
])
def test_every_pointwise_function_of_a_tensor_lowers(name, fn):
    module = attnspec.compile_text(f"""
attention A(C: int) {{
    input  x: [B, C, N]
    output {name}(x)
}}""", C=3)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(module(x), fn(x))


SPLIT_FREE = """
attention A(C: int, p: int = 2) {
    input  x: [B, C, H, W]
    output merge(split(x, H, n p) * 2, n p, as = H)
}
"""


def test_split_of_an_axis_known_at_run_time_takes_the_rest_or_names_the_axis():
    module = attnspec.compile_text(SPLIT_FREE, C=3)
    x = torch.randn(2, 3, 6, 5)
    torch.testing.assert_close(module(x), 2 * x)
    with pytest.raises(runtime.InputShapeError, match="axis H"):
        module(torch.randn(2, 3, 5, 5))


TAKE_FREE = """
attention A(c: int = 2) {{
    input  x: [B, N, D]
    let    parts = split(x, D, k c)                # k known at run time only
    output {output}
}}
"""


@pytest.mark.parametrize("output", ["take(parts, k, 1)",                       # a select
                                    "take(parts, k, 0) + take(parts, k, 1)"])  # an unbind
def test_take_of_an_axis_sized_at_run_time_names_the_axis_when_out_of_range(output):
    module = attnspec.compile_text(TAKE_FREE.format(output=output))
    x = torch.randn(2, 3, 4)  # k = 2
    expected = x[..., 2:] if "0" not in output else x[..., :2] + x[..., 2:]
    torch.testing.assert_close(module(x), expected)
    with pytest.raises(runtime.InputShapeError, match="take 1 of axis k, which has 1 index"):
        module(torch.randn(2, 3, 2))  # k = 1


def test_take_of_an_axis_of_one_index_has_a_view_for_its_backward():
    # NonLocal3D's one clip, stacked and taken back: a select's backward fills a zero
    # tensor of the input's size (fwd+bwd peak 1.15 of the hand-written module), a
    # squeeze's is a view
    module = attnspec.compile_text("""
attention A(C: int) {
    input  x: [B, C, H, W]
    output take(stack(relu(x), as = g, after = C) * 2, g, 0)
}""", C=3)
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    y = module(x)
    torch.testing.assert_close(y, 2 * x.relu())
    assert type(y.grad_fn).__name__.startswith("Squeeze")


@pytest.mark.parametrize("p", [0, -2])
def test_split_into_an_axis_of_no_positive_size_is_a_spec_error(p):
    with pytest.raises(SpecError, match=f"p = {p}; a new axis needs a size of at least 1"):
        attnspec.compile_text(SPLIT_FREE, C=3, p=p)
    fixed = "let    G = 0\n    input  x: [B, C, H, W]"
    assert output_error("merge(split(x, C, G c), G c, as = C)", fixed) == "shape"


@pytest.mark.parametrize("by, edge", [(1, "keep"), (-1, "keep"), (2, "zero"), (-3, "zero")])
def test_shift_moves_along_an_axis_keeping_or_zeroing_the_edge(by, edge):
    module = attnspec.compile_text(f"""
attention A(C: int) {{
    input  x: [B, H, W, C]
    output shift(x, W, {by}, edge = {edge})
}}""", C=2)
    x = torch.randn(2, 3, 5, 2)
    expected = x.clone() if edge == "keep" else torch.zeros_like(x)
    if by > 0:
        expected[:, :, by:] = x[:, :, :-by]
    else:
        expected[:, :, :by] = x[:, :, -by:]
    torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize("by", [2, -3, 0])
def test_a_wrapping_shift_rolls_every_named_axis(by):
    module = attnspec.compile_text(f"""
attention A(C: int) {{
    input  x: [B, H, W, C]
    output shift(x, H W, by = {by}, edge = wrap)
}}""", C=2)
    x = torch.randn(2, 4, 5, 2)
    expected = torch.roll(torch.roll(x, by, 1), by, 2)
    torch.testing.assert_close(module(x), expected)


def test_a_shift_along_two_axes_moves_along_each():
    module = attnspec.compile_text("""
attention A(C: int) {
    input  x: [B, H, W, C]
    output shift(x, H W, 1, edge = zero)
}""", C=2)
    x = torch.randn(2, 4, 5, 2)
    expected = torch.zeros_like(x)
    expected[:, 1:, 1:] = x[:, :-1, :-1]
    torch.testing.assert_close(module(x), expected)


WINDOWS = """
attention Windows(C: int, k: int = 3, s: int = 1, p: int = 1) {
    input  x: [B, H, W, C]
    let    u = patches(x, H W, kernel = k, stride = s, padding = p, as = K)
    output fold(u * u, x, K, H W, kernel = k, stride = s, padding = p)
}
attention Line(C: int, k: int = 3, s: int = 1, p: int = 1) {
    input  x: [B, C, N]
    let    u = patches(x, N, kernel = k, stride = s, padding = p, as = K)
    output fold(u * u, x, K, N, kernel = k, stride = s, padding = p)
}
"""


@pytest.mark.parametrize("k, s, p, h, w", [(3, 1, 1, 5, 6), (3, 2, 1, 7, 6), (2, 2, 0, 4, 6),
                                           (3, 2, 0, 7, 7), (1, 1, 0, 3, 2)])
def test_patches_and_fold_are_unfold_and_fold_on_named_axes(k, s, p, h, w):
    torch.manual_seed(0)
    x = torch.randn(2, h, w, 4, dtype=torch.float64, requires_grad=True)
    windows = torch.nn.functional.unfold(x.permute(0, 3, 1, 2), k, padding=p, stride=s)
    gh, gw = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    expected = windows.view(2, 4, k * k, gh, gw).permute(0, 2, 3, 4, 1)  # [B, K, h, w, C]
    u = attnspec.compile_text(WINDOWS.replace("output fold(u * u, x, K, H W, kernel = k, "
                                              "stride = s, padding = p)", "output u"),
                              "Windows", C=4, k=k, s=s, p=p)
    torch.testing.assert_close(u(x), expected, rtol=0, atol=0)
    summed = torch.nn.functional.fold((windows * windows), (h, w), k, padding=p, stride=s)
    m = attnspec.compile_text(WINDOWS, "Windows", C=4, k=k, s=s, p=p)
    torch.testing.assert_close(m(x), summed.permute(0, 2, 3, 1), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(m, (x[:1, :3, :4].detach().requires_grad_(),))
    line = attnspec.compile_text(WINDOWS, "Line", C=4, k=k, s=s, p=p)
    xs = x[:, 0].transpose(1, 2)  # [B, C, N]
    cols = torch.nn.functional.unfold(xs[..., None], (k, 1), padding=(p, 0), stride=(s, 1))
    ones = torch.nn.functional.fold(cols * cols, (w, 1), (k, 1), padding=(p, 0),
                                    stride=(s, 1))[..., 0]
    torch.testing.assert_close(line(xs), ones, rtol=0, atol=1e-12)


def output_error(text: str, inputs: str = "input  x: [B, H, W, C]", C: int = 4) -> str:
    """The code of the first error of an attention with these input (and let) lines whose
    output is `text`."""
    spec = f"""
attention A(C: int) {{
    {inputs}
    output {text}
}}"""
    with pytest.raises(SpecError) as info:
        attnspec.compile_text(spec, C=C)
    return info.value.diagnostics[0].code


@pytest.mark.parametrize("text, code", [
    ("patches(x, H W C, kernel = 3, as = K)", "shape"),  # one or two axes
    ("patches(x, H Z, kernel = 3, as = K)", "axis-mismatch"),
    ("patches(x, H W, kernel = 3, as = C)", "axis-mismatch"),
    ("patches(x, H W, kernel = 0, as = K)", "shape"),
    ("fold(patches(x, H W, kernel = 3, as = K), x, K, H W, kernel = 2)", "shape"),
    ("fold(x, x, C, H W, kernel = 3)", "shape"),  # C = 4 is not a 3 × 3 window
    ("fold(x, x, K, H W, kernel = 3)", "axis-mismatch"),
])
def test_window_operators_check_their_axes(text, code):
    assert output_error(text) == code


SPECTRUM = """
attention Filter(C: int, h: int = 6, w: int = 4) {
    let    H = h
    let    F = w
    let    two = 2
    input  x: [B, H, W, C]
    let    weight = complex(learned(H F C two, init = normal, std = 0.02), two)
    output irfft(rfft(x, H W, as = F) * weight, x, H F, as = W)
}
"""


@pytest.mark.parametrize("width", [6, 7])  # an even and an odd W: irfft takes x's size
def test_a_learned_filter_on_the_spectrum_is_rfft2_times_weight_then_irfft2(width):
    torch.manual_seed(0)
    m = attnspec.compile_text(SPECTRUM, C=3, w=width // 2 + 1).double()
    (weight,) = m.parameters()  # [H, F, C, 2]
    x = torch.randn(2, 6, width, 3, dtype=torch.float64, requires_grad=True)
    spectrum = torch.fft.rfft2(x, dim=(1, 2), norm="ortho") * torch.view_as_complex(weight)
    expected = torch.fft.irfft2(spectrum, s=(6, width), dim=(1, 2), norm="ortho")
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(m, (x[:1],))


@pytest.mark.parametrize("text, code", [
    ("relu(rfft(x, H W, as = F))", "wrong-type"),       # complex values take + - * only
    ("rfft(x, H W, as = F) / 2", "wrong-type"),
    ("irfft(x, x, H W, as = W)", "wrong-type"),          # not a spectrum
    ("rfft(x, H Z, as = F)", "axis-mismatch"),
    ("complex(x, C)", "axis-mismatch"),                  # C is not an axis of size 2
])
def test_complex_values_are_checked(text, code):
    assert output_error(text) == code


@pytest.mark.parametrize("n, k, stride", [(7, 2, 2), (5, 3, 2), (9, 2, 3), (6, 2, 2)])
def test_pooling_in_ceil_mode_keeps_a_window_cut_by_the_border(n, k, stride):
    spec = """
attention A(C: int, k: int, s: int) {
    input  x: [B, C, H, W]
    output avgpool(x, k, stride = s, ceil = true) + maxpool(x, k, stride = s, ceil = true)
}"""
    m = attnspec.compile_text(spec, C=2, k=k, s=stride)
    x = torch.randn(2, 2, n, n + 1)
    F = torch.nn.functional
    expected = F.avg_pool2d(x, k, stride, ceil_mode=True) + \
        F.max_pool2d(x, k, stride, ceil_mode=True)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=0)


def test_a_width_giving_other_frequencies_than_the_filter_s_names_the_axis():
    m = attnspec.compile_text(SPECTRUM, C=3, w=4)  # W must be 6 or 7
    with pytest.raises(runtime.InputShapeError, match="axis W .* size 9"):
        m(torch.randn(1, 6, 9, 3))


def test_drop_path_drops_whole_samples_while_training_and_nothing_in_eval():
    spec = """
attention A(C: int, p: float = 0.5) {
    input  x: [B, H, C]
    output x + drop_path(linear(x, C), p = p)
}"""
    m = attnspec.compile_text(spec, C=4)
    x = torch.randn(64, 3, 4)
    branch = m.output_linear(x)
    m.eval()
    torch.testing.assert_close(m(x), x + branch)
    m.train()
    torch.manual_seed(0)
    y = m(x)
    torch.manual_seed(0)  # timm's drop_path draws one number per sample, as here
    keep = x.new_empty(64, 1, 1).bernoulli_(0.5)
    torch.testing.assert_close(y, x + branch * keep / 0.5)
    assert 0 < keep.sum() < 64  # some samples dropped, some kept
    assert "drop_path" not in str(attnspec.compile_text(spec, C=4, p=0.0))


PADDED = """
attention Padded(C: int, mode: choice(reflect, replicate, circular) = reflect, k: int = 3,
                 s: int = 1, p: int = 1) {
    input  x: [B, C, H, W]
    output patches(x, H W, kernel = k, stride = s, padding = p, padding_mode = mode, as = K)
}
attention PaddedLine(C: int, mode: choice(reflect, replicate, circular) = reflect,
                     k: int = 3, p: int = 1) {
    input  x: [B, C, N]
    output patches(x, N, kernel = k, padding = p, padding_mode = mode, as = K)
}
"""


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (5, 2, 2), (7, 1, 3)])
def test_patches_pad_the_border_as_conv2d_s_padding_modes(mode, k, s, p):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    m = attnspec.compile_text(PADDED, "Padded", C=3, mode=mode, k=k, s=s, p=p)
    padded = torch.nn.functional.pad(x, (p,) * 4, mode=mode)
    gh, gw = (6 + 2 * p - k) // s + 1, (5 + 2 * p - k) // s + 1
    expected = torch.nn.functional.unfold(padded, k, stride=s).view(2, 3, k * k, gh, gw)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=0)
    assert torch.autograd.gradcheck(m, (x[:1, :, :4].detach().requires_grad_(),))
    line = attnspec.compile_text(PADDED, "PaddedLine", C=3, mode=mode, k=k, p=p)
    xs = x[:, :, 0]  # [B, C, N]
    cols = torch.nn.functional.pad(xs, (p, p), mode=mode).unfold(2, k, 1)  # [B, C, N, k]
    torch.testing.assert_close(line(xs), cols.permute(0, 1, 3, 2), rtol=0, atol=0)


COORDS = """
attention Coords(C: int, corners: bool = true) {
    input  x: [B, C, H, W]
    output coords(x, W H, as = P, corners = corners)
}
"""


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coords_are_normalised_positions_in_the_order_named(dtype):
    x = torch.randn(2, 3, 4, 6, dtype=dtype)
    corners = attnspec.compile_text(COORDS, C=3)(x)
    assert corners.shape == (1, 2, 4, 6) and corners.dtype == dtype
    expected_w = torch.linspace(-1, 1, 6, dtype=dtype).expand(4, 6)  # ACmix's position()
    expected_h = torch.linspace(-1, 1, 4, dtype=dtype)[:, None].expand(4, 6)
    torch.testing.assert_close(corners[0], torch.stack([expected_w, expected_h]), rtol=0,
                               atol=0)
    centres = attnspec.compile_text(COORDS, C=3, corners=False)(x)
    expected_w = (torch.arange(6, dtype=dtype) * 2 + 1) / 6 - 1  # pixel centres
    torch.testing.assert_close(centres[0, 0, 0], expected_w)
    torch.testing.assert_close(centres[0, 1, :, 0], (torch.arange(4, dtype=dtype) * 2 + 1) / 4 - 1)


STRIDED_CONV = """
attention Strided(C: int, out: int, k: int = 3, s: int = 2, g: int = 1,
                  init: choice(default, shift) = default) {
    input  x: [B, C, H, W]
    output conv(x, out, kernel = k, stride = s, groups = g, init = init)
}
"""


PADDED_CONV = """
attention Padded(C: int, k: int = 4, s: int = 3, p: int = 1) {
    input  x: [B, C, H, W]
    output conv(x, C, kernel = k, stride = s, padding = p, groups = C)
}
"""


@pytest.mark.parametrize("k, s, p", [(4, 3, 1), (2, 1, 0), (3, 2, 0), (6, 5, 2)])
def test_a_conv_with_a_padding_takes_any_kernel(k, s, p):
    torch.manual_seed(0)
    m = attnspec.compile_text(PADDED_CONV, C=4, k=k, s=s, p=p)
    x = torch.randn(2, 4, 9, 7)
    conv = next(c for c in m.modules() if isinstance(c, torch.nn.Conv2d))
    expected = torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride=s, padding=p,
                                          groups=4)
    torch.testing.assert_close(m(x), expected)


@pytest.mark.parametrize("k, s, h, w", [(3, 2, 7, 6), (3, 2, 8, 8), (5, 3, 7, 5), (1, 2, 5, 5)])
def test_a_strided_conv_keeps_same_padding_and_takes_every_stride_th_position(k, s, h, w):
    torch.manual_seed(0)
    m = attnspec.compile_text(STRIDED_CONV, C=4, out=6, k=k, s=s)
    x = torch.randn(2, 4, h, w)
    conv = next(c for c in m.modules() if isinstance(c, torch.nn.Conv2d))
    expected = torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride=s, padding=k // 2)
    torch.testing.assert_close(m(x), expected)
    assert expected.shape[2:] == ((h - 1) // s + 1, (w - 1) // s + 1)


def test_shift_init_starts_each_group_s_channels_as_the_kernel_s_shifts():
    m = attnspec.compile_text(STRIDED_CONV, C=18, out=4, s=1, g=2, init="shift")
    conv = next(c for c in m.modules() if isinstance(c, torch.nn.Conv2d))
    assert not conv.bias.any()
    x = torch.randn(1, 18, 5, 6)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    shifted = torch.stack([padded[:, i, i % 9 // 3:i % 9 // 3 + 5, i % 3:i % 3 + 6]
                           for i in range(18)], 1)  # channel i moved by kernel position i % 9
    groups = shifted.view(1, 2, 9, 5, 6).sum(2)  # each output sums its group's shifts
    torch.testing.assert_close(m(x), groups.repeat_interleave(2, dim=1))


@pytest.mark.parametrize("text, code", [
    ("conv(x, 4, groups = 2, init = shift)", "shape"),  # 5 channels a group, not 3 × 3
    ("conv(x, 4, kernel = 2)", "shape"),  # 'same' padding needs an odd kernel
    ("conv(x, 4, kernel = 2, padding = -1)", "shape"),
    ("x + conv(x, 10, stride = 2)", "axis-mismatch"),  # every 2nd position against all
    ("coords(x, H H, as = P)", "duplicate-axis"),
    ("coords(x, H W, as = C)", "axis-mismatch"),
    ("patches(x, H W, kernel = 3, padding_mode = mirror, as = K)", "wrong-type"),
])
def test_strides_shifts_and_coordinates_are_checked(text, code):
    assert output_error(text, "input  x: [B, C, H, W]", C=10) == code


SAMPLE = """
attention Sample(C: int, g: int = 2, corners: bool = false,
                 mode: choice(bilinear, nearest) = bilinear) {
    let    two = 2
    input  x: [B, C, H, W]
    input  at: [B, g, Hk, Wk, two]
    output sample(split(x, C, g c), at, H W, over = two, corners = corners, mode = mode)
}
attention Line(C: int) {
    let    one = 1
    input  x: [B, C, N]
    input  at: [B, K, one]
    output sample(x, at, N, over = one, corners = true)
}
attention Table(M: int, T: int) {
    let    two = 2
    let    Th = T
    let    Tw = T + 1
    input  x: [B, Q, K, two]
    output sample(learned(M Th Tw, init = normal, std = 1), x, Th Tw, over = two)
}
"""


@pytest.mark.parametrize("corners", [False, True])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_sample_is_grid_sample_on_named_axes_the_coordinates_in_the_order_named(corners, mode):
    torch.manual_seed(0)
    m = attnspec.compile_text(SAMPLE, "Sample", C=6, corners=corners, mode=mode)
    x = torch.randn(3, 6, 5, 7, dtype=torch.float64)
    at = torch.rand(3, 2, 4, 3, 2, dtype=torch.float64) * 2.2 - 1.1  # some points outside
    expected = torch.nn.functional.grid_sample(
        x.reshape(6, 3, 5, 7), at.reshape(6, 4, 3, 2).flip(-1), mode=mode,
        align_corners=corners).reshape(3, 2, 3, 4, 3)
    torch.testing.assert_close(m(x, at), expected, rtol=0, atol=1e-15)
    if mode == "bilinear":
        assert torch.autograd.gradcheck(m, (x[:1, :, :3, :4].requires_grad_(),
                                            at[:1].requires_grad_()))


def test_sample_reads_a_line_and_a_learned_table_for_every_sample():
    torch.manual_seed(0)
    line = attnspec.compile_text(SAMPLE, "Line", C=3)
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    at = torch.rand(2, 5, 1, dtype=torch.float64) * 2 - 1
    where = (at[..., 0] + 1) / 2 * 5  # align_corners: −1 … 1 is position 0 … 5
    low = where.floor().long()
    frac = (where - low)[:, None]
    pick = lambda i: torch.gather(x, 2, i.clamp(max=5)[:, None].expand(2, 3, 5))  # noqa: E731
    torch.testing.assert_close(line(x, at), pick(low) * (1 - frac) + pick(low + 1) * frac)
    table = attnspec.compile_text(SAMPLE, "Table", M=3, T=5)
    points = torch.rand(2, 4, 6, 2) * 2 - 1
    weight = next(table.parameters())  # [1, M, T, T + 1]
    expected = torch.nn.functional.grid_sample(weight.expand(2, 3, 5, 6), points.view(
        2, 24, 1, 2).flip(-1), align_corners=False).view(2, 3, 4, 6)
    torch.testing.assert_close(table(points), expected)


@pytest.mark.parametrize("text, code", [
    ("sample(x, at, H W, over = C)", "axis-mismatch"),  # at has no C
    ("sample(x, at, H W, over = P3)", "axis-mismatch"),  # three coordinates for two axes
    ("sample(x, at, H Hk, over = P)", "axis-mismatch"),
    ("sample(x, x, H W, over = C)", "axis-mismatch"),
    ("sample(x, H W, over = P)", "wrong-arity"),
])
def test_sample_checks_its_axes(text, code):
    inputs = """let    P = 2
    let    P3 = 3
    input  x: [B, C, H, W]
    input  at: [B, Hk, Wk, P]"""
    assert output_error(text, inputs) == code


OUTER = """
attention Displacement(g: int = 2) {
    let    two = 2
    input  at: [B, g, Hk, Wk, two]
    input  x: [B, C, H, W]
    output outer(coords(x, H W, as = two), at, op = sub)
}
"""


def test_outer_combines_every_pair_keeping_each_tensors_own_axes():
    at, x = torch.randn(3, 2, 4, 5, 2), torch.randn(3, 7, 6, 8)
    y = attnspec.compile_text(OUTER)(at, x)  # [B, two, H, W, g, Hk, Wk]
    centres = lambda n: (torch.arange(n) * 2 + 1) / n - 1  # noqa: E731
    grid = torch.stack(torch.meshgrid(centres(6), centres(8), indexing="ij"))  # [two, H, W]
    expected = grid[None, :, :, :, None, None, None] - at.permute(0, 4, 1, 2, 3)[:, :, None,
                                                                                  None]
    torch.testing.assert_close(y, expected)
    with pytest.raises(SpecError) as info:  # outer is explicit: `-` still refuses it
        attnspec.compile_text(OUTER.replace("outer(coords(x, H W, as = two), at, op = sub)",
                                            "coords(x, H W, as = two) - at"))
    assert info.value.diagnostics[0].code == "axis-mismatch"


PER = """
attention Per(C: int, G: int = 2, s: int = 2) {
    let    c = C / G
    input  x: [B, C, W]
    output conv(split(x, C, G c), c, kernel = 3, stride = s, groups = c, per = G)
}
attention PerLinear(C: int, G: int = 2) {
    let    c = C / G
    input  x: [B, N, C]
    output layernorm(linear(split(x, C, G c), 3, per = G))
}
"""


def test_a_layer_per_index_of_an_axis_shares_its_weights_across_that_axis():
    torch.manual_seed(0)
    m = attnspec.compile_text(PER, "Per", C=8)
    x = torch.randn(3, 8, 7)  # [B, C, W] → [B, G, c, W]
    conv = next(c for c in m.modules() if isinstance(c, torch.nn.Conv1d))
    assert conv.weight.shape == (4, 1, 3)  # one depth-wise kernel for both groups
    expected = conv(x.view(6, 4, 7)).view(3, 2, 4, 4)  # [B, G, c, ⌈W / 2⌉]
    torch.testing.assert_close(m(x), expected)
    lin = attnspec.compile_text(PER, "PerLinear", C=8)
    x = torch.randn(2, 5, 8)  # [B, N, C] → [B, N, G, c]: G is not next to the batch
    linear = next(c for c in lin.modules() if isinstance(c, torch.nn.Linear))
    assert linear.weight.shape == (3, 4)
    expected = torch.nn.functional.layer_norm(linear(x.view(2, 5, 2, 4)), (3,))
    torch.testing.assert_close(lin(x), expected)


def test_a_residual_layer_adds_its_branch_to_what_it_is_given():
    module = attnspec.compile_text("""
attention R(C: int) {
    let    f = linear(C) >> residual(layernorm >> relu >> linear(C)) >> linear(2)
    input  x: [B, N, C]
    output f(x) + f(x * 2)
}""", C=4)
    first, norm, branch, last = (getattr(module, n) for n in (
        "f_linear", "f_layernorm", "f_linear_2", "f_linear_3"))
    assert len(list(module.parameters())) == 8  # shared: one set for both applications

    def f(t):
        h = first(t)
        return last(h + branch(torch.relu(norm(h))))

    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(module(x), f(x) + f(x * 2))


@pytest.mark.parametrize("text, code", [
    ("x >> residual(linear(8))", "shape"),  # the branch must keep the type
    ("x >> residual(relu, relu)", "wrong-arity"),
    ("x >> residual(3)", "wrong-type"),
])
def test_a_residual_layer_is_checked(text, code):
    assert output_error(text) == code


@pytest.mark.parametrize("text, code", [
    ("conv(x, 4, per = B)", "axis-mismatch"),
    ("conv(x, 4, per = Z)", "axis-mismatch"),
    ("split(x, C, G c, per = G)", "unknown-argument"),  # not a layer with parameters
])
def test_per_names_axes_of_the_tensor_other_than_the_batch(text, code):
    assert output_error(text, "let    G = 2\n    input  x: [B, C, H, W]") == code


def test_merge_of_one_axis_renames_it_and_keeps_its_dtype():
    t = """
attention R(C: int) {
    input  x: [B, C, H, W]
    output merge(x, H, as = K) * 2
}"""
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(attnspec.compile_text(t, C=3)(x), 2 * x)
    assert output_error("merge(x, H, as = W)", "input  x: [B, C, H, W]") == "axis-mismatch"
    # a merged spectrum is still complex: a real-only operator refuses it
    spectrum = "mean(merge(rfft(x, H W, as = F), C, as = D), D)"
    assert output_error(spectrum, "input  x: [B, C, H, W]") == "wrong-type"


WHERE = """
attention Choose(C: int) {
    input  x: [B, N, C]
    input  y: [B, C]
    input  rows: [B, N] bool optional
    output where(rows, x, y * 2)
}
"""


def test_where_chooses_by_a_mask_lined_up_by_name():
    m = attnspec.compile_text(WHERE, C=3)
    x, y = torch.randn(2, 5, 3), torch.randn(2, 3)
    rows = torch.rand(2, 5) < 0.5
    torch.testing.assert_close(m(x, y, rows), torch.where(rows[..., None], x, 2 * y[:, None]))
    # an optional mask left out marks nothing: the second tensor, broadcast as the first
    torch.testing.assert_close(m(x, y), (2 * y[:, None]).expand(2, 5, 3))


@pytest.mark.parametrize("text, code", [
    ("where(x, x, x)", "wrong-type"),  # the condition is not a mask
    ("where(rows, rows, x)", "wrong-type"),  # choosing a mask
    ("where(cols, x, x)", "axis-mismatch"),  # an axis the result lacks
    ("where(rows, x)", "wrong-arity"),
])
def test_where_checks_its_tensors(text, code):
    inputs = """input  x: [B, N, C]
    input  rows: [B, N] bool
    input  cols: [B, K] bool"""
    assert output_error(text, inputs) == code



PAD = """
attention Pad(C: int, m: int) {
    input  x: [B, H, W, C]
    let    p = pad(x, H W, multiple = m)
    output OUTPUT
}
"""


@pytest.mark.parametrize("h, w, m", [(7, 10, 4), (8, 4, 4), (3, 2, 5), (5, 6, 1)])
def test_pad_appends_zeros_padded_marks_them_and_crop_cuts_them_off(h, w, m):
    x = torch.randn(2, h, w, 3)
    hp, wp = -(-h // m) * m, -(-w // m) * m
    padded = attnspec.compile_text(PAD.replace("OUTPUT", "p"), C=3, m=m)(x)
    torch.testing.assert_close(padded, torch.nn.functional.pad(x, (0, 0, 0, wp - w, 0, hp - h)))
    marks = (torch.arange(hp)[:, None] >= h) | (torch.arange(wp)[None, :] >= w)
    assert torch.equal(runtime.padding_mask(x, (1, 2), m), marks.expand(2, hp, wp))
    # the marked places get 5 more, then crop cuts them off: 2·x remains
    text = "crop(where(padded(x, H W, multiple = m), p + 5, p * 2), x, H W)"
    torch.testing.assert_close(attnspec.compile_text(PAD.replace("OUTPUT", text), C=3, m=m)(x),
                               2 * x)


@pytest.mark.parametrize("text, code", [
    ("pad(x, B, multiple = 2)", "axis-mismatch"),  # the batch
    ("pad(x, H Z, multiple = 2)", "axis-mismatch"),
    ("pad(x, H H, multiple = 2)", "duplicate-axis"),
    ("pad(x, H, multiple = 0)", "shape"),
    ("pad(rows, N, multiple = 2)", "wrong-type"),  # zeros in a mask
    ("crop(x, H W)", "wrong-arity"),
    ("crop(x, rows, H)", "axis-mismatch"),  # rows has no H
    ("crop(x, maxpool(x, 2), H)", "axis-mismatch"),  # another grid of H
    # a padded axis is longer at run time than the axis it came from (it joined, and
    # failed only when the module ran); crop brings it back
    ("x * pad(x, H W, multiple = 3)", "axis-mismatch"),
    ("where(padded(x, W, multiple = 2), x, x)", "axis-mismatch"),
])
def test_pad_and_crop_check_their_axes(text, code):
    inputs = """input  x: [B, C, H, W]
    input  rows: [B, N] bool"""
    assert output_error(text, inputs) == code


@pytest.mark.parametrize("text", ["x * crop(pad(x, H W, multiple = 3), x, H W)",
                                  "x * pad(x, H W, multiple = 1)"])
def test_a_padded_axis_joins_its_own_once_cropped_or_padded_to_one(text):
    m = attnspec.compile_text(f"attention A(C: int) {{\n input x: [B, C, H, W]\n output {text}\n}}",
                              C=2)
    x = torch.randn(1, 2, 4, 5)
    torch.testing.assert_close(m(x), x * x)


DISPLACEMENT = """
attention Groups(D: int) {
    input  x: [B, n, gh, gw, D]
    over   positions(gh gw, per = n)
    range  all
    heads  2
    weight softmax(E1(query = linear(D), key = linear(D))
                   + E4(position = displacement() >> linear(2, bias = false)))
    value  linear(D)
    output identity
}
"""


@pytest.mark.parametrize("gh, gw", [(3, 2), (1, 4), (4, 4)])
def test_displacement_without_radii_covers_every_offset_of_a_run_time_grid(gh, gw):
    m = attnspec.compile_text(DISPLACEMENT, D=4).double()
    w = m.state_dict()
    x = torch.randn(2, 3, gh, gw, 4, dtype=torch.float64)
    # the pair (i, j) gets W_pos · (place(i) − place(j)), one number per head
    place = torch.stack(torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij"),
                        -1).reshape(-1, 2).double()
    bias = ((place[:, None] - place[None, :]) @ w["position_linear.weight"].t()).permute(2, 0, 1)

    def heads(name):  # [B·n, M, gh·gw, 2]
        t = x.reshape(6, gh * gw, 4) @ w[f"{name}_linear.weight"].t() + w[f"{name}_linear.bias"]
        return t.unflatten(-1, (2, 2)).transpose(1, 2)

    a = (heads("query") @ heads("key").transpose(-1, -2) + bias).softmax(-1)
    y = (a @ heads("value")).transpose(1, 2).flatten(2).reshape(2, 3, gh, gw, 4)
    torch.testing.assert_close(m(x), y)


POOL_OVER = """
attention Pool(D: int) {
    input  x: [B, H, W]
    input  y: [B, C, T, H, W]
    output OUTPUT
}
"""


@pytest.mark.parametrize("text, expected", [
    # a map with no channel axis, pooled over both of its axes
    ("maxpool(x, 2, over = H W)", lambda x, y: F.max_pool2d(x[:, None], 2)[:, 0]),
    ("avgpool(x, 3, stride = 2, padding = 1, over = H W)",
     lambda x, y: F.avg_pool2d(x[:, None], 3, 2, 1, count_include_pad=False)[:, 0]),
    # the default: the axes after the channels (W of [B, H, W], H the channels)
    ("maxpool(x, 2)", lambda x, y: F.max_pool1d(x, 2)),
    # fewer axes than the default: the ones before them folded into the channels
    ("maxpool(y, 2, over = H W)",
     lambda x, y: F.max_pool2d(y.flatten(1, 2), 2).unflatten(1, (3, 2))),
    ("avgpool(y, 2, ceil = true, over = W)",
     lambda x, y: F.avg_pool1d(y.flatten(1, 3), 2, ceil_mode=True).unflatten(1, (3, 2, 5))),
])
def test_pooling_runs_over_the_trailing_axes_it_names(text, expected):
    m = attnspec.compile_text(POOL_OVER.replace("OUTPUT", text), D=1)
    x, y = torch.randn(2, 5, 7), torch.randn(2, 3, 2, 5, 7)
    torch.testing.assert_close(m(x, y), expected(x, y))


@pytest.mark.parametrize("text, code", [
    ("maxpool(x, 2, over = H)", "axis-mismatch"),  # not trailing
    ("maxpool(x, 2, over = Z)", "axis-mismatch"),
    ("maxpool(x, 2, over = C H W)", "axis-mismatch"),  # C has a fixed size
    # torch's limit: a window holds at least one place of the map (it failed at run time)
    ("avgpool(x, 3, stride = 3, padding = 2)", "shape"),
    ("maxpool(x, 1, padding = 1)", "shape"),
])
def test_pooling_checks_the_axes_it_runs_over(text, code):
    assert output_error(text, "input  x: [B, C, H, W]") == code


LEFT_OUT = """
attention A(C: int, extra: bool = false) {{
    input  x: [B, C, N]
    let    t = sum(x, N) if extra else 0
    output {output}
}}
"""


@pytest.mark.parametrize("output", ["x + t", "t + x", "x - t", "x * 1", "1 * x", "x / 1"])
def test_a_number_that_leaves_a_tensor_alone_adds_no_node(output):
    ir = attnspec.build_ir(LEFT_OUT.format(output=output), C=3)
    assert ir.node(ir.output).op == "input"


def test_a_term_left_out_is_added_when_the_option_is_on():
    module = attnspec.compile_text(LEFT_OUT.format(output="x - t"), C=3, extra=True)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(module(x), x - x.sum(2, keepdim=True))


def test_logsumexp_reduces_the_named_axes_as_torch_does():
    module = attnspec.compile_text("""
attention A(C: int) {
    input  x: [B, C, H, W]
    output logsumexp(x, H W)
}""", C=3)
    x = torch.randn(2, 3, 4, 5) * 30  # large values: stable, as the maximum is taken out
    torch.testing.assert_close(module(x), torch.logsumexp(x, dim=(2, 3)))


LENGTHS = """
attention Lengths(D: int) {
    input  x: [B, S, D]
    input  pad: [B, S] bool optional
    output length(x, pad, over = S) + index(x, S) + exp(x * 0)
}"""


def test_length_counts_the_unpadded_positions_and_index_reads_a_run_time_axis():
    module = attnspec.compile_text(LENGTHS.replace(" + exp(x * 0)", ""), D=2)
    x, pad = torch.randn(3, 5, 2), torch.zeros(3, 5, dtype=torch.bool)
    pad[1, 3:] = True
    expected = torch.tensor([5.0, 3.0, 5.0])[:, None] + torch.arange(5.0)  # [B, S]
    torch.testing.assert_close(module(x, pad), expected)
    torch.testing.assert_close(module(x), 5.0 + torch.arange(5.0)[None])  # [1, S]: no mask


@pytest.mark.parametrize("edit", [("over = S", "over = D2"), ("x, pad, over", "x, x, over"),
                                  ("index(x, S)", "index(x, K)")])
def test_length_and_index_along_an_axis_are_checked(edit):
    with pytest.raises(attnspec.SpecError):
        attnspec.compile_text(LENGTHS.replace(*edit), D=2)


SHUFFLE = """
attention Shuffle(C: int) {
    input  x: [B, C, H, W]
    output shuffle(x, AXIS, groups = 3)
}
"""


@pytest.mark.parametrize("axis", ["C", "H"])
def test_shuffle_reads_the_axis_as_groups_rows_and_writes_it_by_columns(axis):
    m = attnspec.compile_text(SHUFFLE.replace("AXIS", axis), C=6)
    x = torch.randn(2, 6, 6, 1)
    dim = 1 if axis == "C" else 2
    expected = x.index_select(dim, torch.tensor([0, 2, 4, 1, 3, 5]))
    torch.testing.assert_close(m(x), expected, rtol=0, atol=0)


def test_shuffle_of_an_axis_known_at_run_time_names_it_when_the_groups_do_not_divide_it():
    # it was torch's unflatten error, naming no axis
    m = attnspec.compile_text(SHUFFLE.replace("AXIS", "H"), C=2)
    with pytest.raises(runtime.InputShapeError, match="axis H .* multiple of 3"):
        m(torch.randn(1, 2, 5, 4))


# each of these passed the checker and failed only when the module ran, in torch's words
@pytest.mark.parametrize("text, code", [
    ("conv(x, over = W)", "axis-mismatch"),  # T and H neither convolved nor channels
    ("patches(x, C, kernel = 5, as = K)", "zero-size"),  # no window of 5 in C = 4
    ("length(x, over = C) >> dropout(p = 0.2, channels = true)", "shape"),  # [B]: no channels
    ("padded(x, C, multiple = 2) >> batchnorm", "wrong-type"),  # a bool mask
    ("padded(x, C, multiple = 2) >> linear(3)", "wrong-type"),
])
def test_layers_check_what_torch_would_refuse_at_run_time(text, code):
    assert output_error(text, "input  x: [B, C, T, H, W]") == code


def test_dropping_whole_channels_of_a_vector_drops_its_numbers():
    m = attnspec.compile_text("attention A(C: int) {\n input x: [B, C]\n"
                              " output x >> dropout(p = 0.5, channels = true)\n}", C=64)
    y = m.train()(torch.ones(8, 64))
    # per sample and channel, 0 or 2 (torch's Dropout1d took the batch for the channels)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert not (y == y[:, :1]).all(dim=1).any()


@pytest.mark.parametrize("layer, call", [("standardise(H)", "standardise(x, H)"),
                                         ("shift(W, by = 1)", "shift(x, W, by = 1)"),
                                         ("split(C, G c) >> take(G, 1)",
                                          "take(split(x, C, G c), G, 1)")])
def test_a_layer_names_its_one_axis_as_the_call_does(layer, call):
    # a lone axis name after `>>` was read as an unknown tensor
    text = "attention A(C: int, G: int = 2) {{\n input x: [B, C, H, W]\n output {}\n}}"
    x = torch.randn(2, 4, 3, 5)
    as_layer = attnspec.compile_text(text.format(f"x >> {layer}"), C=4)(x)
    torch.testing.assert_close(as_layer, attnspec.compile_text(text.format(call), C=4)(x))


@pytest.mark.parametrize("text", ["x >> standardise(xx, H)", "x >> softmax(xx, over = H)"])
def test_an_unknown_name_before_the_settings_is_still_an_unknown_tensor(text):
    assert output_error(text, "input  x: [B, C, H, W]") == "unknown-name"


def test_standardise_keeps_only_the_centred_tensor_for_the_backward():
    # SGE's standardised map: keeping its input besides the centred map as well would
    # hold one more map per layer until the backward
    x = torch.randn(4, 8, 5, dtype=torch.float64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = runtime.standardise(x * 2, (1, 2), 1e-5)
    maps = {t.untyped_storage().data_ptr() for t in saved if t.numel() == x.numel()}
    assert len(maps) == 1
    z = x * 2 - (x * 2).mean((1, 2), keepdim=True)
    torch.testing.assert_close(y, z / (z.std((1, 2), keepdim=True) + 1e-5), rtol=1e-12,
                               atol=1e-12)
