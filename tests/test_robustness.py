"""Bad numbers and shapes given to every shipped spec: a clear error (exit 1 or 2 from the
CLI) or a working module, never an internal error or a Python traceback."""

from __future__ import annotations

import random

import pytest
from test_every_spec import _params

import attnspec
from attnspec import cli
from attnspec.api import spec_path


def compile_with(capsys, spec: str, params: dict, *extra: str) -> tuple[int, str]:
    argv = ["compile", str(spec_path(spec)), *extra]
    for k, v in params.items():
        argv += ["-p", f"{k}={v}"]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("spec", attnspec.shipped())
def test_every_number_at_zero_or_below_is_refused_clearly(spec, capsys):
    # each int parameter at 0 and -1, each float at 0 and -1 (sizes, groups, strides,
    # dilations, divisors): 24 of these were internal errors before they were checked
    main = attnspec.parse(spec_path(spec)).main_definition()
    base = _params(spec)
    for p in main.params:
        if p.type.name not in ("int", "float"):
            continue
        for value in (0, -1):
            code, text = compile_with(capsys, spec, {**base, p.name: value})
            assert code in (0, 1, 2) and "Traceback" not in text, (p.name, value, text)


# SGE's unbiased std over a 1 × 1 map's one position is NaN, with torch's warning: the
# authors' t.std(dim=1) does the same
@pytest.mark.filterwarnings("ignore:std():UserWarning")
@pytest.mark.parametrize("spec", attnspec.shipped())
def test_tiny_and_wrong_input_shapes_are_refused_clearly(spec, capsys):
    base = _params(spec)
    ir = attnspec.build_ir(spec_path(spec), **base)
    axes = ir.node(ir.inputs[0]).type.axes
    shapes = [[1] + [a.size or free for a in axes[1:]] for free in (1, 2, 3)]
    shapes.append([2] + [(a.size or 4) + 1 for a in axes[1:]])  # fixed sizes off by one
    shapes.append([2] + [a.size or 4 for a in axes[1:]] + [3])  # one axis too many
    for shape in shapes:
        code, text = compile_with(capsys, spec, base, "--input-shape",
                                  ",".join(map(str, shape)))
        # exit 2 names the axis: torch's own refusal ("cannot run on it") names none
        assert code in (0, 1, 2) and "Traceback" not in text, (shape, text)
        assert "cannot run on it" not in text, (shape, text)


# A window cut from an axis whose size the spec leaves free: an input too small for it is
# an error naming the axis and the operator's line (torch says "Output size is too small"
# or "maximum size for tensor at dimension 2 is 1"); one just large enough runs.
WINDOWS = [  # (input, expression, the axis, the smallest size that fits)
    ("[B, C, H, W]", "upsample(avgpool(x, 3), x)", "H", 3),
    ("[B, C, H, W]", "upsample(maxpool(x, 4, padding = 1), x)", "H", 2),
    ("[B, C, H, W]", "upsample(avgpool(x, 3, stride = 2, ceil = true), x)", "H", 3),
    ("[B, C, H, W]", "upsample(conv(x, 4, kernel = 5, padding = 0), x)", "H", 5),
    ("[B, C, H, W]", "upsample(conv(x, 4, kernel = 3, dilation = 2, padding = 1), x)", "H", 3),
    ("[B, N, C]", "mean(patches(x, N, kernel = 3, as = K), K)", "N", 3),
    ("[B, C, H, W]", "mean(patches(x, H W, kernel = 4, padding = 1, as = K), K)", "H", 2),
    ("[B, C, H, W]", "upsample(avgpool(avgpool(x, 2), 2), x)", "H", 4),
    # a border reflected by p needs p + 1 positions, one wrapped around p
    ("[B, C, H, W]", "mean(patches(x, H W, kernel = 3, padding = 2, padding_mode = reflect, "
                     "as = K), K)", "H", 3),
    ("[B, C, H, W]", "mean(patches(x, H W, kernel = 3, padding = 3, padding_mode = circular, "
                     "as = K), K)", "H", 3),
]


@pytest.mark.parametrize("decl, expr, axis, fits", WINDOWS)
def test_an_axis_shorter_than_a_window_is_named(decl, expr, axis, fits, tmp_path, capsys):
    spec = tmp_path / "w.attn"
    spec.write_text(f"attention A(C: int = 4) {{\n    input  x: {decl}\n"
                    f"    output {expr}\n}}\n")

    def shape(n):  # the axis at n, the others large enough
        return ",".join("4" if a == "C" else str(n if a == axis else 9)
                        for a in decl.strip("[]").split(", "))

    code = cli.main(["compile", str(spec), "--input-shape", shape(fits)])
    assert code == 0, capsys.readouterr()
    capsys.readouterr()
    code = cli.main(["compile", str(spec), "--input-shape", shape(fits - 1)])
    err = capsys.readouterr().err
    assert code == 2 and f"axis {axis} (dim" in err and "w.attn:3:" in err, err
    assert "whose windows need at least" in err and "Traceback" not in err


# Every operator, as a call on a tensor and as a layer after `>>`, with settings drawn from
# plausible and edge values, on maps, sequences, vectors and volumes: the checker refuses
# it, or the module runs. A module that compiles but fails in torch (exit 2, "cannot run")
# is a hole in the checker; each of these was one (conv over a vector, pools padded past
# half their kernel, a padded axis joining its own, shuffle of a run-time axis, ...). The
# maps are large enough for every window drawn (at most 5), so no failure depends on the
# size an input happens to have.
OPERAND_TYPES = [("[B, C, H, W]", "2,4,6,7"), ("[B, N, C]", "2,7,4"), ("[B, C]", "2,4"),
                 ("[B, C, T, H, W]", "2,4,6,6,7")]
OPERATOR_SETTINGS = {
    "affine": ["over = {a}", "over = {a}, weight = 0"],
    "avgpool": ["{i}", "{i}, over = {axes}", "{i}, stride = {i}, padding = {i}",
                "{i}, ceil = true"],
    "maxpool": ["{i}", "{i}, over = {axes}", "{i}, stride = {i}, padding = {i}"],
    "batchnorm": ["", "init = zero"], "layernorm": ["", "init = zero"],
    "complex": ["{a}"], "concat": ["over = {axes}", "over = {axes}, as = L"],
    "conv": ["{i}", "{i}, kernel = {i}", "over = {axes}", "{i}, stride = {i}",
             "{i}, groups = {i}", "{i}, kernel = {i}, padding = {i}", "{i}, dilation = {i}"],
    "conv1x1": ["{i}", "{i}, bias = false"], "coords": ["{axes}, as = P"],
    "detach": [""], "drop_path": ["p = 0.1"], "dropout": ["p = 0.2", "p = 0.2, channels = true"],
    "elu": [""], "exp": [""], "gamma": [""], "gelu": [""], "relu": [""], "sigmoid": [""],
    "groupnorm": ["over = {a}", "over = {a}, groups = {i}"],
    "length": ["over = {a}"], "linear": ["{i}", "{i}, groups = {i}"],
    "logsumexp": ["{axes}"], "max": ["{axes}"], "mean": ["{axes}"], "norm": ["{axes}"],
    "sum": ["{axes}"], "var": ["{axes}"], "merge": ["{axes}, as = M"], "mlp": ["{i}"],
    "pad": ["{axes}, multiple = {i}"], "padded": ["{axes}, multiple = {i}"],
    "patches": ["{axes}, kernel = {i}, as = K", "{axes}, kernel = {i}, padding = {i}, as = K"],
    "permute": ["{axes}", "B C W H", "B H W C"], "rfft": ["{axes}, as = F"],
    "shift": ["{axes}, by = {s}", "{axes}, by = {s}, edge = wrap"],
    "shuffle": ["{a}, groups = {i}"], "softmax": ["over = {axes}"],
    "split": ["{a}, G c", "{a}, a b"], "stack": ["as = S", "as = S, after = {a}"],
    "standardise": ["{axes}"], "take": ["{a}, {s}"],
}


def _operator_expressions(seed: int):
    rng = random.Random(seed)

    def fill(setting):
        return setting.format(i=rng.choice([0, 1, 2, 3, 5]), s=rng.choice([-2, 0, 1, 9]),
                              a=rng.choice("HWCNBTZ"),
                              axes=rng.choice(["H", "W", "C", "N", "T", "H W", "C H", "Z"]))

    def call(op, tensor):
        s = fill(rng.choice(OPERATOR_SETTINGS[op]))
        if tensor is None:
            return f"{op}({s})" if s else op
        return f"{op}({tensor}{', ' + s if s else ''})"

    for op in OPERATOR_SETTINGS:
        for decl, shape in OPERAND_TYPES:
            then = rng.choice(list(OPERATOR_SETTINGS))
            yield decl, shape, call(op, "x")
            yield decl, shape, f"x * {call(op, 'x')}"
            yield decl, shape, f"x >> {call(op, None)} >> {call(then, None)}"


@pytest.mark.parametrize("seed", range(4))
def test_every_operator_is_refused_by_the_checker_or_runs(seed, tmp_path, capsys):
    spec = tmp_path / "op.attn"
    for decl, shape, expr in _operator_expressions(seed):
        spec.write_text(f"attention A(C: int = 4) {{\n    input  x: {decl}\n"
                        f"    output {expr}\n}}\n")
        code = cli.main(["compile", str(spec), "--input-shape", shape])
        out, err = capsys.readouterr()
        text = out + err  # exit 2: a run-time shape error naming its axis is clear too
        assert code in (0, 1, 2) and "cannot run on it" not in text and \
            "Traceback" not in text, (decl, expr, text)
