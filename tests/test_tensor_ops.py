"""Tensor operators on named axes, each against the torch code it stands for."""

from __future__ import annotations

import pytest
import torch

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
    w = module.state_dict()["weight_learned.weight"].reshape(3, 4)
    torch.testing.assert_close(module(x), torch.einsum(expected, w, x))


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


def output_error(text: str) -> str:
    """The code of the first error of an attention on x [B, H, W, C=4] whose output is
    `text`."""
    spec = f"""
attention A(C: int) {{
    input  x: [B, H, W, C]
    output {text}
}}"""
    with pytest.raises(SpecError) as info:
        attnspec.compile_text(spec, C=4)
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
