"""A wheel built from the checkout carries the grammar and the shipped specs, and works
installed on its own (not from the checkout)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_grammar_and_specs_and_works_installed(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path)], check=True)
    wheel = next(tmp_path.glob("attnspec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "attnspec/grammar/attnspec.lark" in names
    shipped = {p.name for p in (ROOT / "specs").glob("*.attn")}
    assert shipped <= {Path(n).name for n in names if n.startswith("attnspec/specs/")}

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)
    probe = ("import attnspec, torch; from attnspec.resources import specs_dir; "
             "print(specs_dir()); print(tuple(attnspec.load('se', C=16)"
             "(torch.randn(1, 16, 4, 4)).shape))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin"},
                          check=True)
    where, shape = done.stdout.splitlines()
    assert where.startswith(str(target)) and shape == "(1, 16, 4, 4)"
