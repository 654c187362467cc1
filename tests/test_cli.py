"""The `attnspec` command: output, exit codes, and no traceback for a user's mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnspec import cli

ROOT = Path(__file__).resolve().parents[1]
BROKEN = "attention A(C: int) {\n    input x: [B, C, H, W]\n    over channels(C)\n" \
         "    range self\n    weight sigmod(mean(x, H W))\n    value identity\n" \
         "    output identity\n}\n"


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_compile_prints_the_summary(capsys):
    code, out, err = run(capsys, "compile", str(ROOT / "specs/se.attn"), "--param", "C=64")
    assert code == 0, err
    assert "input   [B, C=64, H, W]  ← 2×64×8×8" in out
    assert "output  [B, C=64, H, W]  → 2×64×8×8" in out
    assert "parameters  580" in out
    assert "weight_mlp.fc1.weight" in out
    assert "FLOPs   2,048" in out


def test_compile_takes_a_shipped_name_an_input_shape_and_prints_code(capsys):
    code, out, _ = run(capsys, "compile", "mhsa", "-p", "D=32", "-p", "causal=true",
                       "--input-shape", "3,10,32", "--code", "--ir")
    assert code == 0
    assert "Ω_q = causal" in out and "→ 3×10×32" in out
    assert "scaled_dot_product_attention" in out or "masked_sdpa" in out
    assert "%e1:" in out  # the IR, one line per node


def test_compile_runs_a_definition_with_a_second_input(capsys):
    # cross-attention's memory is made like the first input: shared axes (B) at its sizes,
    # the others at 8 or their fixed width
    code, out, err = run(capsys, "compile", "mhsa", "--name", "CrossAttention", "-p", "D=16",
                         "-p", "M=2", "-p", "E=12", "--input-shape", "3,5,16")
    assert code == 0, err
    assert "key_linear.weight                        16×12" in out and "→ 3×5×16" in out
    assert "input   [B, S, E=12]  ← 3×8×12" in out  # the summary names every input it made


def test_an_input_too_small_for_the_module_is_a_usage_error_without_a_traceback(capsys):
    # SANet pools the map by 2 first: a 1 × 1 map leaves nothing. The module says which
    # axis and which pool (torch's error names neither, and GraphModule's __call__ would
    # print it as a traceback)
    code, out, err = run(capsys, "compile", "sanet", "-p", "C=16", "--input-shape", "1,16,1,1")
    assert code == 2 and "Traceback" not in err + out
    assert err.startswith("attnspec: error: --input-shape 1×16×1×1: axis H (dim 2) has size 1 "
                          "at `avgpool` (sanet.attn:")
    assert err.rstrip().endswith("whose windows need at least 2 positions")


def test_compile_without_an_input_shape_runs_a_sample_large_enough(capsys):
    # SA-Net's attention branch pools by 9: the 8 × 8 sample is too small, 16 × 16 runs
    code, out, err = run(capsys, "compile", "sanet", "-p", "C=16", "-p", "pool=9")
    assert code == 0, err
    assert "input   [B, C=16, H, W]  ← 2×16×16×16" in out
    # a pool of 256 needs more than any sample: the user is asked for an input shape
    code, out, err = run(capsys, "compile", "sanet", "-p", "C=16", "-p", "pool=256")
    assert code == 2
    assert "runs on none of the sample inputs, up to 2×16×64×64" in err
    assert "give one with --input-shape" in err


def test_a_sample_input_the_spec_refuses_asks_for_an_input_shape(capsys):
    # GFNet's filter fixes W at 14 or 15 for h = 8: the 8-wide sample does not fit, and the
    # message says it was the sample, not the user's input
    code, _, err = run(capsys, "compile", "gfnet", "-p", "dim=8", "-p", "h=8")
    assert code == 2
    assert err.startswith("attnspec: error: the sample input 2×8×8×8: axis W")
    assert err.rstrip().endswith("give one with --input-shape")
    code, _, err = run(capsys, "compile", "gfnet", "-p", "dim=8", "-p", "h=8",
                       "--input-shape", "2,8,8,8")
    assert code == 2 and err.startswith("attnspec: error: --input-shape 2×8×8×8: axis W")


def test_compile_works_out_the_shapes_without_computing(capsys):
    # the non-local block's [B, HW, HW] affinity at 3000 × 3000 would be 648 TB: the
    # summary's shapes come from the meta device, which holds no numbers
    code, out, err = run(capsys, "compile", "nonlocal", "-p", "C=8",
                         "--input-shape", "2,8,3000,3000")
    assert code == 0, err
    assert "output  [B, C=8, H, W]  → 2×8×3000×3000" in out


def test_compile_runs_the_module_when_the_meta_device_cannot(capsys, monkeypatch):
    # an op with no meta kernel: the module itself runs, and its errors are reported as before
    import attnspec.lower

    real = attnspec.lower.lower

    def no_meta(ir):
        if torch.empty(()).is_meta:  # lowered under torch.device("meta")
            raise NotImplementedError("no meta kernel")
        return real(ir)

    monkeypatch.setattr(attnspec.lower, "lower", no_meta)
    code, out, err = run(capsys, "compile", "se", "-p", "C=16", "--input-shape", "2,16,5,6")
    assert code == 0, err
    assert "output  [B, C=16, H, W]  → 2×16×5×6" in out
    code, out, err = run(capsys, "compile", "sanet", "-p", "C=16", "--input-shape", "1,16,1,1")
    assert code == 2 and "axis H (dim 2) has size 1" in err


def test_compile_prints_every_output(capsys):
    code, out, err = run(capsys, "compile", "emanet", "-p", "C=16", "-p", "K=4",
                         "--input-shape", "2,16,5,6", "--ir")
    assert code == 0, err
    assert "output  [B, C=16, H, W]  → 2×16×5×6" in out
    assert "output  [B, C=16, K=4]  → 2×16×4" in out
    assert "  return %relu_2, %permute_2" in out


def test_a_numeric_choice_is_given_as_a_number(capsys):
    code, out, _ = run(capsys, "compile", "sk", "-p", "C=32", "-p", "G=8", "-p", "M=3")
    assert code == 0 and "parameters" in out


@pytest.mark.parametrize("argv, message", [
    (["compile", "se", "--param", "Q=64"], "`SE` has no parameter `Q`"),
    (["compile", "se", "--param", "C=abc"], "C is an int"),
    (["compile", "linear_attention", "-p", "D=8", "-p", "eps=nan"], "eps is a finite float"),
    (["compile", "linear_attention", "-p", "D=8", "-p", "eps=1e999"], "eps is a finite float"),
    (["compile", "se", "--param", "C"], "write K=V"),
    (["compile", "mhsa", "-p", "D=32", "-p", "causal=maybe"], "causal is a bool"),
    (["compile", "nonlocal", "-p", "C=32", "-p", "variant=dot"], "variant is one of"),
    (["compile", "sk", "-p", "C=32", "-p", "M=4"], "M is one of 2, 3"),
    (["compile", "se", "-p", "C=64", "--input-shape", "2,32,8,8"], "axis C must be 64"),
    (["compile", "se", "-p", "C=64", "--input-shape", "2,x"], "bad --input-shape"),
    (["compile", "nothere.attn"], "no such spec file"),
    (["compile", "sse"], "did you mean `se`?"),
    (["compile", "sse.attn"], "no such spec file: sse.attn, nor a shipped spec (did you mean"),
    (["draw", "se", "-p", "C=64", "-o", "/nonexistent-dir/se.svg"], "cannot write"),
])
def test_usage_mistakes_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.startswith("attnspec: error: ")


def test_a_spec_error_exits_1_with_the_located_message(capsys, tmp_path):
    bad = tmp_path / "bad.attn"
    bad.write_text(BROKEN)
    code, _, err = run(capsys, "compile", str(bad), "-p", "C=8")
    assert code == 1
    assert f"{bad}:5:12: error[unknown-name]: unknown operator `sigmod`" in err
    assert "hint: did you mean `sigmoid`?" in err


def test_a_file_that_is_not_utf8_is_a_located_spec_error(capsys, tmp_path):
    bad = tmp_path / "latin1.attn"
    bad.write_bytes(BROKEN.replace("sigmod", "sigmoid").encode() + b"# caf\xe9\n")
    code, _, err = run(capsys, "compile", str(bad), "-p", "C=8")
    assert code == 1
    assert f"{bad}:9:6: error[encoding]: byte 0xe9 is not UTF-8 text" in err
    assert "Traceback" not in err


def test_a_folder_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "x.attn").mkdir()
    code, _, err = run(capsys, "check", str(tmp_path / "x.attn"))
    assert code == 2
    assert err.strip() == f"attnspec: error: {tmp_path / 'x.attn'} is a folder, not a spec file"


def test_a_missing_required_parameter_is_a_spec_error(capsys):
    code, _, err = run(capsys, "compile", "se")
    assert code == 1
    assert "parameter `C` of `SE` needs a value" in err
    assert "hint: pass it, e.g. --param C=64 (in Python, C=64)" in err


def test_a_missing_parameter_s_hint_gives_a_value_of_its_type(capsys):
    code, _, err = run(capsys, "compile", "psanet", "--name", "CollectCompact", "-p", "C=8",
                       "-p", "mask_h=3", "-p", "mask_w=3")
    assert code == 1
    assert "--param normalise=true (in Python, normalise=True)" in err
    assert "--param normalization=1.0 (in Python, normalization=1.0)" in err


@pytest.mark.parametrize("command", ["compile", "draw"])
def test_an_error_in_another_definition_of_the_file_is_reported(capsys, tmp_path, command):
    # the definition built is sound; the file is not, and `check` would say so
    good = BROKEN.replace("attention A", "attention Good").replace("sigmod", "sigmoid")
    two = tmp_path / "two.attn"
    two.write_text(good + "\n" + BROKEN)
    output = ["-o", str(tmp_path / "out.svg")] if command == "draw" else []
    code, _, err = run(capsys, command, str(two), "--name", "Good", "-p", "C=8", *output)
    assert code == 1
    assert f"{two}:14:12: error[unknown-name]: unknown operator `sigmod`" in err


def test_check_prints_errors_only(capsys, tmp_path):
    bad = tmp_path / "bad.attn"
    bad.write_text(BROKEN)
    specs = sorted(str(p) for p in (ROOT / "specs").glob("*.attn"))
    assert run(capsys, "check", *specs) == (0, "", "")
    code, out, err = run(capsys, "check", specs[0], str(bad))
    assert code == 1 and out == "" and "sigmod" in err


def test_draw_writes_the_diagram(capsys, tmp_path):
    out_file = tmp_path / "cbam.svg"
    code, out, _ = run(capsys, "draw", "specs/cbam.attn", "-p", "C=32", "-o", str(out_file))
    assert code == 0 and out_file.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert "ChannelGate" in out_file.read_text() and "C=32" in out_file.read_text()


def test_draw_into_a_directory_asks_for_a_file_name(capsys, tmp_path):
    code, _, err = run(capsys, "draw", "se", "-p", "C=32", "-o", str(tmp_path))
    assert code == 2
    assert f"cannot draw to `{tmp_path}`: it is a directory" in err
    assert str(tmp_path / "SE.svg") in err


def test_draw_needs_no_parameters_and_says_which_width_it_chose(capsys, tmp_path):
    out_file = tmp_path / "cbam.svg"
    code, _, err = run(capsys, "draw", "specs/cbam.attn", "-o", str(out_file))
    assert code == 0 and "C=64" in out_file.read_text()
    assert err == "note: drawn with C = 64 (choose with --param C=...)\n"


def test_draw_without_an_output_writes_the_spec_s_name_as_svg_here(capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "draw", "cbam.attn")  # the mission's own example
    assert code == 0 and out == "wrote cbam.svg\n"
    assert "ChannelGate" in (tmp_path / "cbam.svg").read_text()
    code, out, _ = run(capsys, "draw", "nonlocal", "--name", "NonLocal3D")
    assert code == 0 and (tmp_path / "NonLocal3D.svg").is_file()


def test_list_shows_every_shipped_spec(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for p in (ROOT / "specs").glob("*.attn"):
        assert any(line.startswith(p.stem + " ") for line in out.splitlines()), p.stem


def test_an_internal_error_exits_101_asking_for_a_report(capsys, monkeypatch):
    monkeypatch.setattr(cli, "cmd_list", lambda args: 1 / 0)
    monkeypatch.delenv("ATTNSPEC_DEBUG", raising=False)
    code, _, err = run(capsys, "list")
    assert code == 101
    assert "internal error: ZeroDivisionError" in err and "please report" in err


GATE = """
attention Gate(C: int) {
    input  x: [B, C, H, W]
    over   channels(C)
    range  self
    weight sigmoid(mean(x, H W))
    value  identity
    output identity
}
"""


def test_a_shipped_spec_s_file_name_works_from_any_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no se.attn here: `attnspec compile se.attn` is the shipped one
    code, out, _ = run(capsys, "compile", "se.attn", "-p", "C=64")
    assert code == 0 and "SE  (" in out
    (tmp_path / "se.attn").write_text(GATE)  # a file of that name in the directory comes first
    code, out, _ = run(capsys, "compile", "se.attn", "-p", "C=64")
    assert code == 0 and "Gate  (se.attn)" in out


def test_output_into_a_closed_pipe_stops_quietly():
    # `attnspec compile ... | head -2`: the reader is gone before attnspec writes
    done = subprocess.Popen([sys.executable, "-m", "attnspec", "compile", "se", "-p", "C=64",
                             "--code"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT)
    done.stdout.close()
    assert done.wait() == 0
    assert done.stderr.read() == b""


def test_bad_usage_of_the_command_itself_exits_2():
    done = subprocess.run([sys.executable, "-m", "attnspec", "compile"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_the_module_runs_as_a_command_without_traceback():
    done = subprocess.run([sys.executable, "-m", "attnspec", "compile", "missing.attn"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip() == "attnspec: error: no such spec file: missing.attn"


@pytest.mark.parametrize("case, argv", [
    ("param_not_an_int", ["compile", "se", "--param", "C=abc"]),
    ("param_unknown", ["compile", "se", "--param", "reduction=4", "-p", "C=64"]),
    ("param_no_value", ["compile", "se", "--param", "C="]),
    ("param_twice", ["compile", "se", "-p", "C=8", "-p", "C=9"]),
])
def test_bad_param_messages(capsys, golden, case, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    golden(f"cli/{case}.txt", err)
