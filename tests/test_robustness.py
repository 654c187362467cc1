"""Bad numbers and shapes given to every shipped spec: a clear error (exit 1 or 2 from the
CLI) or a working module, never an internal error or a Python traceback."""

from __future__ import annotations

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
        assert code in (0, 1, 2) and "Traceback" not in text, (shape, text)
