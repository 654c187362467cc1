"""docs/language.md stays true: its operator table matches the op table (ops.OPS), and its
complete examples (```attn blocks) check, and compile and run where they say how."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import attnspec
from attnspec.check import PUBLIC_OPS
from attnspec.ops import OPS, REQUIRED

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # a text's `use` resolves from the current directory


# ---------------------------------------------------------------------------- the op table


def _ops_table() -> dict[str, list[str]]:
    """The rows between the ops-table markers: name → its cells."""
    table = DOC.split("<!-- ops-table:begin -->")[1].split("<!-- ops-table:end -->")[0]
    rows = {}
    for line in table.splitlines():
        m = re.match(r"\| `(\w+)` \|", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in line.strip().strip("|").split("|")]
    return rows


@pytest.mark.parametrize("name", PUBLIC_OPS)
def test_every_public_op_has_a_row(name):
    assert re.search(rf"^\| `{name}` \|", DOC, re.M), f"docs/language.md has no row for `{name}`"


def test_the_op_table_names_only_public_ops():
    stale = sorted(set(_ops_table()) - set(PUBLIC_OPS))
    assert not stale, f"docs/language.md documents operators that do not exist: {stale}"


@pytest.mark.parametrize("name", PUBLIC_OPS)
def test_each_row_lists_the_op_arguments_in_order(name):
    cells = _ops_table().get(name)
    assert cells, f"`{name}` is not in the ops table"
    documented = re.findall(r"`(\w+)(?: = [^`]*)?`", cells[1])
    assert documented == [p.name for p in OPS[name].params], cells[1]
    for p in OPS[name].params:  # a default is written `name = ...`, a required one `name`
        has_default = f"`{p.name} = " in cells[1]
        assert has_default == (p.default is not REQUIRED), f"{name}.{p.name}: {cells[1]}"


# ---------------------------------------------------------------------------- the examples

EXAMPLES = re.findall(r"```attn\n(.*?)```", DOC, re.S)
RUN = re.compile(r"^# compile with (?P<params>[^;]*); input (?P<shape>[\d×]+)$", re.M)


def _value(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


@pytest.mark.parametrize("text", EXAMPLES, ids=[f"example{i + 1}" for i in range(len(EXAMPLES))])
def test_every_example_checks(text):
    attnspec.parse(text)


@pytest.mark.parametrize("text", [t for t in EXAMPLES if RUN.search(t)])
def test_runnable_examples_compile_and_run(text):
    how = RUN.search(text)
    params = dict(kv.strip().split("=") for kv in how["params"].split(",") if kv.strip())
    module = attnspec.compile_text(text, **{k: _value(v) for k, v in params.items()})
    shape = tuple(int(v) for v in how["shape"].split("×"))
    out = module(torch.randn(*shape))
    assert out.shape[0] == shape[0] and torch.isfinite(out).all()
