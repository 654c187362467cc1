"""Smoke test: benchmarks/bench_specs.py runs end to end and prints one row per spec."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_specs.py"
SPECS = ("se", "mhsa")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_specs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _table(bench, capsys, *args: str) -> tuple[str, list[list[str]]]:
    """A quick run on SPECS: its table's header line and its rows, split into cells."""
    argv = ["--quick", "--no-fail", "--system-malloc", *args]
    for name in SPECS:
        argv += ["--only", name]
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("spec "))
    rows = [line.split() for line in lines[header + 2:]]
    return lines[header], [r for r in rows if r and r[0] in bench.REFERENCES]


def test_quick_run_prints_a_row_per_spec(bench, capsys):
    _, rows = _table(bench, capsys, "--rounds", "2")
    assert [r[0] for r in rows] == list(SPECS)
    for r in rows:
        assert len(r) == len(bench.header("time")) == 8, r
        assert all(float(c) > 0 for c in r[2:]), r


def test_memory_run_prints_three_measures_per_spec(bench, capsys):
    header, rows = _table(bench, capsys, "--memory")
    assert "saved MB hand-written" in header
    assert [r[0] for r in rows] == list(SPECS)
    for r in rows:
        assert len(r) == len(bench.header("memory")) == 11, r
        assert all(float(c) > 0 for c in r[2:]), r


def test_allocated_bytes_reads_every_allocation_and_free(bench):
    def fn():
        a = torch.empty(1000)  # 4000 bytes
        b = torch.empty(2000)  # 8000 bytes: 12000 held
        del a
        c = torch.empty(500)  # 2000 bytes: 10000 held
        return b, c

    assert bench.allocated_bytes(fn) == (12000, 10000)


def test_allocated_bytes_leaves_out_what_existed_before(bench):
    before = torch.ones(10_000)
    assert bench.allocated_bytes(lambda: before.zero_()) == (0, 0)
    assert bench.allocated_bytes(lambda: before * before) == (40_000, 40_000)


def test_every_case_builds_at_its_quick_shape_and_matches_its_reference(bench):
    # --quick --only nonlocal/3d once crashed: its quick input was narrower than the module
    for case in bench.CASES:
        assert bench.mismatch(bench.build(case, quick=True)) is None, case.name
