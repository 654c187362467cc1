"""Golden tests for error messages: one user mistake per fixture.

Each case compiles a spec from tests/fixtures/errors/ and checks two things:
- the whole rendered report, against tests/golden/errors/<case>.txt
  (rewrite with `pytest --update-golden`, then read the diff);
- every diagnostic's code, 1-based line and column, and the source text its caret
  covers, so a message that drifts to the wrong place fails even if its text is kept.

The tests run from the repo root and name files by relative paths, so messages never
contain a machine's absolute paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import attnspec
from attnspec import SpecError, UsageError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = "tests/fixtures/errors"


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@dataclass(frozen=True)
class Case:
    """`fixture` is checked with `attnspec.parse` (defaults, required parameters unknown),
    or, when `params` is given, built with them by `attnspec.build_ir`."""

    fixture: str
    carets: tuple[tuple[str, int, int, str], ...]  # (code, line, col, text under the caret)
    params: dict[str, Any] | None = None
    files: tuple[str, ...] = field(default=())  # the file of each diagnostic, if not `fixture`
    name: str = ""  # the golden file's name, if not the fixture's

    @property
    def id(self) -> str:
        return self.name or self.fixture


CASES = [
    # ----------------------------------------------------------- the mistakes users make
    Case("syntax_missing_comma", (("syntax", 2, 23, "r"),)),
    Case("unknown_operator", (("unknown-name", 6, 12, "sigmod"),)),
    Case("arity_missing_width", (("wrong-arity", 7, 31, "linear()"),)),
    Case("arity_too_many", (("wrong-arity", 8, 37, "5"),)),
    Case("undefined_parameter", (("unknown-name", 6, 51, "reductoin"),)),
    Case("unknown_tensor", (("unknown-name", 6, 29, "z"),)),
    Case("axis_mismatch_reduce", (("axis-mismatch", 6, 32, "H Q"),)),
    Case("axis_mismatch_combine", (("axis-mismatch", 6, 20, "mean(x, H W) + mean(x, C)"),)),
    Case("axis_mismatch_over", (("axis-mismatch", 4, 22, "H Z"),)),
    Case("zero_size", (("zero-size", 6, 47, "C / r"),), params={"C": 8}),
    Case("zero_size_check", (("zero-size", 6, 47, "C / r"),)),
    Case("unknown_range", (("unknown-range", 5, 12, "causl"),)),
    Case("blocks_shift_too_large", (("wrong-type", 5, 31, "ws"),)),
    Case("halo_zeros_unlowered", (("unsupported", 7, 12,
                                   "softmax(E1(query = conv1x1(C), key = conv1x1(C))\n"
                                   "                   + E3(key = conv1x1(2)))"),), params={}),
    Case("halo_with_shift", (("wrong-arity", 5, 12, "blocks(4, shift = 2, halo = 1)"),)),
    Case("halo_edge_word", (("wrong-type", 5, 39, "reflect"),)),
    Case("blocks_pooled_keys", (("unsupported", 7, 12,
                                 "softmax(E1(query = conv1x1(x, C), key = conv1x1(pooled, C)))"),)),
    Case("missing_part", (("missing-part", 2, 11, "Gate"),)),
    Case("wrong_type_default", (("wrong-type", 2, 33, "1.5"),)),
    Case("wrong_type_block_arg", (("wrong-type", 11, 31, "true"),)),
    Case("gate", (("wrong-type", 2, 16, "C: int"),), params={"C": True},
         name="param_wrong_type"),
    Case("cycle_a", (("circular-use", 2, 5, '"cycle_a.attn"'),),
         files=(f"{FIXTURES}/cycle_b.attn",), name="circular_use"),
    Case("use_missing", (("use-missing", 2, 5, '"channel_gate.attn"'),)),
    Case("multiple_errors", (("unknown-range", 5, 12, "causl"),
                             ("unknown-name", 7, 31, "linaer"),
                             ("unknown-argument", 8, 22, "bais = false"),
                             ("axis-mismatch", 16, 32, "H Q"))),
    Case("heads_not_dividing", (("heads", 7, 31, "linear(D)"),)),
    Case("unknown_size", (("unknown-size", 7, 12, "linear(D)"),)),
    Case("duplicate_part", (("duplicate-part", 8, 5, "value  identity"),)),
    # ----------------------------------------------------------- more creative mistakes
    Case("syntax_unclosed_paren", (("syntax", 4, 20, "("),)),
    Case("syntax_missing_brace", (("syntax", 8, 20, ""),)),
    Case("syntax_missing_brace_between", (("syntax", 10, 1, "attention"),)),
    Case("misspelled_part", (("syntax", 6, 5, "wieght"),)),
    Case("misspelled_kwarg", (("unknown-argument", 6, 38, "hiden = C / r"),)),
    Case("kwarg_double_equals", (("unknown-name", 6, 38, "hidden"),)),
    Case("choice_compare_typo", (("wrong-type", 8, 31, "ad"),)),
    Case("range_two_values", (("wrong-arity", 5, 20, "all"),)),
    Case("heads_zero", (("wrong-type", 6, 12, "0"),)),
    Case("heads_bool", (("wrong-type", 6, 12, "true"),)),
    Case("mask_not_bool", (("wrong-type", 7, 12, "pad"),)),
    Case("range_all_gate", (("wrong-type", 6, 12,
                             "sigmoid(mlp(mean(x, H W), hidden = C / r, act = relu))"),),
         params={}),
    Case("e1_one_argument", (("wrong-arity", 6, 20, "E1(query = linear(D))"),)),
    Case("pipe_number", (("wrong-type", 11, 23, "Gate(C) >> 2"),)),
    Case("use_outside", (("use-outside", 2, 5, '"../../../specs/se.attn"'),)),
    Case("duplicate_axis", (("duplicate-axis", 3, 25, "H"),)),
    Case("unknown_type", (("unknown-type", 2, 27, "integer"),)),
    Case("recursive_block", (("recursion", 11, 33, "Deep(C)"),)),
    Case("y_outside_output", (("unknown-name", 6, 20, "y"),)),
    Case("layer_of_number", (("wrong-type", 6, 40, "3"),)),
    Case("block_input_mismatch", (("axis-mismatch", 11, 34, "Gate(C * 2)"),), params={"C": 64}),
    Case("no_settings_hint", (("unknown-argument", 6, 39, "inplace = true"),)),
    Case("quoted_word", (("wrong-type", 6, 60, '"relu"'),)),
    Case("axes_with_comma", (("wrong-arity", 6, 35, "W"),)),
    Case("reported_once", (("unknown-name", 6, 51, "rr"),)),
    Case("criss_cross_one_axis", (("unsupported", 5, 12, "criss_cross"),)),
    Case("repeat_zero", (("wrong-type", 3, 36, "0"),), params={"C": 16}),
    Case("conv_even_kernel", (("shape", 6, 46, "k"),), params={"C": 8}),
    Case("let_shadows_choice_word", (("duplicate-name", 4, 5, "let    value = linear(x, D)"),)),
    Case("layer_as_setting", (("wrong-type", 7, 22, "conv1x1(8)"),)),
    Case("heads_kv_not_dividing", (("heads", 6, 20, "3"),)),
    Case("block_required_input", (("wrong-arity", 11, 31, "Gate(C)"),)),
    Case("stand_in_unknown", (("unknown-name", 4, 41, "q"),)),
    Case("stand_in_layout", (("axis-mismatch", 4, 41, "x"),)),
    Case("stand_in_sizes", (("axis-mismatch", 4, 41, "x"),), params={"D": 8, "E": 4}),
    Case("function_uncalled", (("unknown-name", 6, 34, "sinusoid"),)),
    Case("axes_named_twice", (("duplicate-axis", 6, 32, "H H W"),)),
    Case("eps_axes", (("wrong-type", 6, 61, "eps eps"),)),
    Case("conv_over_nothing", (("shape", 5, 24, "conv(mean(x, H W), C)"),), params={"C": 4}),
    Case("standardise_one_offset", (("shape", 8, 87, "offsets"),), params={"D": 4}),
    Case("eps_tensor", (("wrong-type", 6, 61, "x"),), params={"D": 8}),
    Case("positional_after_named", (("syntax", 4, 43, "corners true"),)),
    Case("argument_twice", (("duplicate-argument", 4, 38, "as = P"),), params={"C": 2}),
    Case("number_too_large", (("syntax", 4, 16, "1e400"),)),
    Case("pairs_zero", (("zero-size", 7, 62, "0"),), params={"D": 8}),
    Case("learned_std_negative", (("wrong-type", 4, 48, "-0.02"),)),
    Case("learned_trainable_number", (("wrong-type", 4, 39, "0"),)),
    Case("double_norm_outside_weight", (("wrong-type", 4, 28, "x"),)),
    Case("e3_key_over_slots", (("unsupported", 6, 69, "linear(1)"),)),
    Case("batchnorm_too_many_axes", (("shape", 4, 16, "batchnorm(split(x, C, P Q R))"),),
         params={"C": 16}),
    Case("fold_other_padding", (("axis-mismatch", 5, 16, "fold(p, x, K, H W, kernel = 3, "
                                                         "padding = 2)"),)),
    Case("input_required_after_optional", (("wrong-arity", 5, 5,
                                             "input  gate: [B, N, D]"),)),
    Case("e2_query_width_at_run_time", (("unknown-size", 7, 31, "conv1x1(C)"),),
         params={"C": 4}),
    Case("word_given_axes", (("wrong-type", 4, 69, "L L"),)),
    Case("word_given_number", (("wrong-type", 4, 57, "2"),)),
    Case("absolute_zero", (("zero-size", 7, 76, "0"),), params={"D": 8}),
    Case("absolute_width", (("axis-mismatch", 9, 20, "E2(query = linear(D, bias = false), "
                                                     "position = absolute(T))"),),
         params={"D": 8}),
    Case("absolute_in_e4", (("unsupported", 7, 34, "absolute(T)"),), params={"D": 8}),
    Case("absolute_two_axes", (("unsupported", 6, 68, "absolute(T)"),), params={"C": 8}),
    # a Latin-1 byte, kept by the reader as U+DC00 + the byte (printed as U+FFFD)
    Case("not_utf8", (("encoding", 1, 60, "\udce9"),)),
    Case("use_not_utf8", (("encoding", 1, 60, "\udce9"),),
         files=(f"{FIXTURES}/not_utf8.attn",)),
    Case("use_without_suffix", (("use-missing", 2, 5, '"se"'),)),
]


def _covered(err: SpecError, span) -> str:
    """The source text a diagnostic's caret stands under (1-based, end column exclusive)."""
    lines = err.sources[span.file].text.splitlines()
    if span.line == span.end_line:
        return lines[span.line - 1][span.col - 1:span.end_col - 1]
    parts = [lines[span.line - 1][span.col - 1:]]
    parts += lines[span.line:span.end_line - 1]
    parts.append(lines[span.end_line - 1][:span.end_col - 1])
    return "\n".join(parts)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_error(case: Case, golden):
    path = f"{FIXTURES}/{case.fixture}.attn"
    with pytest.raises(SpecError) as info:
        if case.params is None:
            attnspec.parse(path)
        else:
            attnspec.build_ir(path, **case.params)
    err = info.value
    rendered = err.render()
    golden(f"errors/{case.id}.txt", rendered + "\n")
    assert str(ROOT) not in rendered, "messages must name files by relative paths"
    files = case.files or (path,) * len(case.carets)
    actual = [(d.code, d.span.line, d.span.col, _covered(err, d.span)) for d in err.diagnostics]
    assert actual == list(case.carets)
    assert [d.span.file for d in err.diagnostics] == list(files)
    assert str(err) == rendered


# ------------------------------------------------------------------ calls through the API


def test_unknown_parameter_is_a_usage_error(golden):
    with pytest.raises(UsageError) as info:
        attnspec.build_ir(f"{FIXTURES}/gate.attn", C=64, R=4)
    golden("errors/param_unknown.txt", str(info.value) + "\n")


@pytest.mark.parametrize("eps", [float("nan"), float("inf"), -float("inf")])
def test_a_float_parameter_is_finite(eps):
    with pytest.raises(SpecError, match="`eps` is a finite float"):
        attnspec.load("linear_attention", D=8, eps=eps)


@pytest.mark.parametrize("params, shown", [
    (dict(C="64"), "`C` is an int, not the text '64'"),   # a str from Python, not a word
    (dict(C=None), "`C` is an int, not None"),
    (dict(C=[64]), "`C` is an int, not a list"),
    (dict(C=64, bias="yes"), "`bias` is a bool, not the text 'yes'"),
])
def test_a_parameter_of_the_wrong_python_type_is_named_as_given(params, shown):
    with pytest.raises(SpecError, match=re.escape(shown)):
        attnspec.load("se", **params)


def test_unknown_definition_is_a_usage_error(golden):
    with pytest.raises(UsageError) as info:
        attnspec.build_ir(f"{FIXTURES}/gate.attn", name="Gat", C=64)
    golden("errors/definition_unknown.txt", str(info.value) + "\n")


def test_missing_spec_file_is_a_usage_error(golden):
    with pytest.raises(UsageError) as info:
        attnspec.parse(f"{FIXTURES}/no_such_file.attn")
    golden("errors/file_missing.txt", str(info.value) + "\n")


def test_a_folder_is_a_usage_error(tmp_path):
    (tmp_path / "x.attn").mkdir()
    with pytest.raises(UsageError, match="x.attn is a folder, not a spec file"):
        attnspec.parse(tmp_path / "x.attn")


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path):
    gate = (ROOT / FIXTURES / "gate.attn").read_bytes()
    (tmp_path / "bom.attn").write_bytes(b"\xef\xbb\xbf" + gate)
    assert attnspec.parse(tmp_path / "bom.attn").main_definition().name == "Gate"


def test_every_fixture_has_a_case():
    used = {c.fixture for c in CASES} | {"cycle_b"}
    fixtures = {p.stem for p in (ROOT / FIXTURES).glob("*.attn")}
    assert fixtures == used


NUMERIC_CHOICE = """
attention Gate(C: int, M: choice(2, 3) = 2) {
    input  x: [B, C, H, W]
    over   channels(C)
    range  self
    weight sigmoid(mean(x, H W) * M)
    value  identity
    output identity
}
"""


@pytest.mark.parametrize("change, params, message", [
    ("", dict(M=4), "`M` is one of 2, 3, not `4`"),
    ("", dict(M="3"), "`M` is one of 2, 3, not `3`"),  # the number, not its text
    ("choice(2, 3) = 2", None, None),
    ("choice(2, avg) = 2", {}, "a choice lists words or whole numbers, not both"),
    ("choice(2, 2.5) = 2", {}, "a choice lists words or whole numbers, not fractions"),
    ("choice(2, 3) = 5", {}, "default of `M` must be one of 2, 3, not the number 5"),
])
def test_a_choice_of_numbers_takes_one_of_them(change, params, message):
    text = NUMERIC_CHOICE.replace("choice(2, 3) = 2", change) if change else NUMERIC_CHOICE
    if message is None:
        for m in (2, 3):
            x = torch.randn(2, 4, 3, 3)
            y = attnspec.compile_text(text, C=4, M=m)(x)
            torch.testing.assert_close(y, x * torch.sigmoid(x.mean((2, 3)) * m)[..., None, None])
        return
    with pytest.raises(attnspec.SpecError, match=re.escape(message)):
        attnspec.compile_text(text, C=4, **params)


SIZES = """
attention A(C: int, G: int = 1, d: int = 1, s: int = 1, t: float = 1.0) {
    input  x: [B, C, H, W]
    let    u = conv(x, C, kernel = 3, groups = G, dilation = d, stride = s)
    over   positions(H W)
    range  all
    weight softmax(E1(query = conv1x1(u, C), key = conv1x1(u, C)) / t)
    value  conv1x1(u, C)
    output y
}
"""


@pytest.mark.parametrize("params, code, message, covered", [
    (dict(G=0), "shape", "groups=0 must be a positive integer", "G"),
    (dict(G=-4), "shape", "groups=-4 must be a positive integer", "G"),
    (dict(d=0), "shape", "dilation must be a positive integer, not 0", "d"),
    (dict(s=0), "shape", "stride must be a positive integer, not 0", "s"),
    (dict(t=0.0), "zero-size", "a weight term divided by zero",
     "E1(query = conv1x1(u, C), key = conv1x1(u, C)) / t"),
    (dict(C=-1), "zero-size", "axis C of `x` is -1: an axis needs at least one position",
     "input  x: [B, C, H, W]"),
])
def test_sizes_that_cannot_be_are_spec_errors(params, code, message, covered):
    # found by compiling every shipped spec with each number at 0 and -1: these crashed
    # in torch (or divided by zero) instead of pointing at the spec
    with pytest.raises(SpecError) as info:
        attnspec.build_ir(SIZES, **{"C": 4, **params})
    d = info.value.diagnostics[0]
    assert (d.code, _covered(info.value, d.span)) == (code, covered)
    assert message in d.message


def test_a_layer_larger_than_the_machine_is_a_usage_error():
    # 64 · 64·10⁹ weights and 64·10⁹ biases: 16 TB in float32, not an allocator's crash
    from attnspec.lower import lower

    ir = attnspec.build_ir(SIZES.replace("query = conv1x1(u, C)", "query = conv1x1(u, C * 10 ** 9)")
                           .replace("key = conv1x1(u, C)", "key = conv1x1(u, C * 10 ** 9)"), C=64)
    with pytest.raises(UsageError, match="`query_conv1x1` would have 4,160,000,000,000 param"):
        lower(ir)


GRIDS = """
attention A(C: int, k: int = 3, p: int = 1) {{
    input  x: [B, C, H, W]
    output {output}
}}
"""


@pytest.mark.parametrize("output, params, joins", [
    ("x + conv(x, C, kernel = k, padding = p)", dict(k=3, p=0), False),
    ("x + conv(x, C, kernel = k, padding = p)", dict(k=3, p=1), True),
    ("x + conv(x, C, kernel = k, padding = p)", dict(k=2, p=1), False),
    ("x * sum(patches(x, H W, kernel = k, padding = p, as = K), K)", dict(k=5, p=2), True),
    ("x * sum(patches(x, H W, kernel = k, padding = p, as = K), K)", dict(k=5, p=1), False),
    ("x * sum(crop(patches(x, H W, kernel = k, padding = p, as = K), x, H W), K)",
     dict(k=5, p=4), True),
    ("x + maxpool(x, k, stride = 1, padding = p)", dict(k=3, p=0), False),
    ("x + maxpool(x, k, stride = 1, padding = p)", dict(k=3, p=1), True),
    ("upsample(avgpool(x, k), x) + x", dict(k=2, p=0), True),
    ("upsample(avgpool(x, k, stride = 2, ceil = true) + avgpool(x, k, stride = 2), x)",
     dict(k=3, p=0), False),  # on 8 positions: 4 windows, the last partial, and 3
])
def test_a_grid_of_windows_that_changes_a_free_size_does_not_join_the_map(output, params,
                                                                          joins):
    # H is free: the windows' grid has H + 2p − k + 1 positions, H only when 2p = k − 1
    # (convolutions, patches and pools alike)
    text = GRIDS.format(output=output)
    if joins:
        x = torch.randn(2, 3, 7, 6)
        assert attnspec.compile_text(text, C=3, **params)(x).shape == x.shape
        return
    with pytest.raises(SpecError, match=f"axis H is .* windows of {params['k']} with "
                       f"padding {params['p']}.* on the other"):
        attnspec.build_ir(text, C=3, **params)


def test_a_pool_of_2_and_a_strided_conv_are_different_grids_of_every_2nd_position():
    # on 7 positions: ⌊7 / 2⌋ = 3 windows of the pool, ⌈7 / 2⌉ = 4 of the 'same' conv
    with pytest.raises(SpecError, match="axis H is every 2nd position on one side and a "
                       "grid of windows of 2 with padding 0, stride 2 on the other"):
        attnspec.build_ir(GRIDS.format(output="conv(x, C, kernel = 3, stride = 2) "
                                              "+ avgpool(x, 2)"), C=3)
