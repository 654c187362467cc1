"""Smoke test: benchmarks/bench_specs.py runs end to end and prints one row per spec."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_specs.py"
SPECS = ("se", "mhsa")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_specs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_prints_a_row_per_spec(bench, capsys):
    argv = ["--quick", "--no-fail", "--rounds", "2", "--system-malloc"]
    for name in SPECS:
        argv += ["--only", name]
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("spec "))
    rows = [line.split() for line in lines[header + 2:]]
    rows = [r for r in rows if r and r[0] in bench.REFERENCES]
    assert [r[0] for r in rows] == list(SPECS)
    for r in rows:
        assert len(r) == len(bench.HEADER), r
        assert all(float(c) > 0 for c in r[2:]), r
