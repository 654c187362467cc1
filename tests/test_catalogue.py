"""docs/catalogue.md stays current, its rows say what the specs are, and neither
`attnspec catalogue` nor `attnspec list` ever drops a spec that fails to build."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnspec import catalogue, cli
from attnspec.diagnostics import SpecError
from attnspec.source import SourceFile

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.attn"))
SE = (ROOT / "specs" / "se.attn").read_text(encoding="utf-8")
BROKEN = SE.replace("sigmoid(", "sigmod(")


@pytest.fixture(scope="module")
def shipped():
    return catalogue.shipped()


@pytest.fixture(scope="module")
def rows(shipped):
    return catalogue.rows(shipped)


def test_the_checked_in_catalogue_is_current(shipped):
    problems = catalogue.stale(ROOT / "docs", shipped)
    assert not problems, "\n".join(problems) + "\nrun `attnspec catalogue`"


def test_every_shipped_spec_has_a_row_and_a_diagram(rows, shipped):
    assert sorted({row["spec"] for row in rows}) == SPECS
    page = catalogue.markdown(shipped)
    for name in SPECS:
        assert f"![{name}](gallery/{name}.svg)" in page


def test_every_row_fills_every_column(rows):
    for row in rows:
        assert tuple(row) == catalogue.COLUMNS
        assert all(row.values()), row


def _only_row(rows, spec):
    (row,) = [r for r in rows if r["spec"] == spec]
    return row


def test_se_is_a_sigmoid_gate_over_channels(rows):
    row = _only_row(rows, "se")
    assert row["mechanism"] == "Squeeze-and-Excitation"
    assert row["paper"] == '"Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507'
    assert (row["year"], row["over"], row["Ω_q"]) == ("2018", "channels(C)", "self")
    assert (row["terms"], row["normaliser"], row["M"]) == ("gate", "sigmoid", "1")
    assert row["params@64"] == "580"  # C·C/16 + C/16 + C/16·C + C


@pytest.mark.parametrize("spec, function", [
    ("sk", "softmax"),  # over the branches, after the squeeze's relu
    ("sanet", "sigmoid"),  # in a `let`, then upsampled to the map
    ("epsa", "softmax"),  # softmax(sigmoid(...), over = K): the last one
])
def test_a_gate_s_normaliser_is_the_last_function_its_weight_went_through(rows, spec, function):
    assert _only_row(rows, spec)["normaliser"] == function


def test_mhsa_is_e1_under_a_softmax_with_eight_heads(rows):
    row = _only_row(rows, "mhsa")
    assert row["paper"] == '"Attention Is All You Need", NeurIPS 2017, arXiv:1706.03762'
    assert (row["over"], row["Ω_q"]) == ("positions(N)", "all")
    assert (row["terms"], row["normaliser"], row["M"]) == ("E1", "softmax", "8")
    assert row["params@64"] == "16,640"  # four 64×64 linear layers with biases


def test_a_block_has_a_row_per_attention(rows):
    names = [r["attention"] for r in rows if r["spec"] == "cbam"]
    assert names == ["ChannelGate", "SpatialGate"]


def test_list_prints_a_row_per_spec(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["spec", "mechanism", "year"]
    for name in SPECS:
        assert sum(line.startswith(name + " ") for line in lines) == 1, name


# ---------------------------------------------------------------------------- the check


@pytest.fixture(scope="module")
def written(tmp_path_factory, shipped):
    docs = tmp_path_factory.mktemp("docs")
    catalogue.write(docs, shipped)
    return docs


def test_write_then_check_is_clean(written, shipped):
    assert catalogue.stale(written, shipped) == []
    assert sorted(p.stem for p in (written / "gallery").glob("*.svg")) == SPECS


def test_check_names_a_stale_page_a_missing_diagram_and_an_orphan(tmp_path, written, shipped):
    docs = tmp_path / "docs"
    (docs / "gallery").mkdir(parents=True)
    page = (written / "catalogue.md").read_text(encoding="utf-8")
    (docs / "catalogue.md").write_text(page.replace("| 580 |", "| 581 |"), encoding="utf-8")
    for name in SPECS[1:]:
        (docs / "gallery" / f"{name}.svg").write_text("<svg/>")
    (docs / "gallery" / "gone.svg").write_text("<svg/>")
    problems = catalogue.stale(docs, shipped)
    assert len(problems) == 3, problems
    assert "catalogue.md is out of date" in problems[0] and "+| [se](#se)" in problems[0]
    assert problems[1].endswith(f"{SPECS[0]}.svg is missing")
    assert problems[2].endswith("gone.svg draws no shipped spec")


def test_the_command_exits_1_and_says_how_to_fix(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(catalogue, "docs_dir", lambda: tmp_path)
    assert cli.main(["catalogue", "--check"]) == 1
    err = capsys.readouterr().err
    assert "catalogue.md is missing" in err and "run `attnspec catalogue`" in err


def test_a_spec_that_fails_to_build_stops_the_catalogue(capsys, monkeypatch, tmp_path):
    (tmp_path / "se.attn").write_text(SE)
    (tmp_path / "broken.attn").write_text(BROKEN)
    monkeypatch.setattr(catalogue, "specs_dir", lambda: tmp_path)
    with pytest.raises(SpecError, match="broken.attn"):
        catalogue.shipped()
    for argv in (["catalogue", "--check"], ["list"]):
        assert cli.main(argv) == 1
        out, err = capsys.readouterr()
        assert "broken.attn:" in err and "sigmod" in err and out == ""


# ---------------------------------------------------------------------------- the header


def _header(text: str):
    return catalogue.header(SourceFile("t.attn", text + "attention A() {}\n"))


def test_a_citation_may_span_lines_and_leave_out_arxiv():
    mechanism, paper = _header('# Pooling\n# "Hierarchical Attention Networks for Document\n'
                               '# Classification", Yang, Yang, Dyer, He, Smola, Hovy,\n'
                               '# NAACL 2016\n# What it does.\n')
    assert mechanism == "Pooling"
    assert paper.title == "Hierarchical Attention Networks for Document Classification"
    assert (paper.venue, paper.year, paper.arxiv) == ("NAACL", "2016", None)


@pytest.mark.parametrize("text", [
    "",
    "# Pooling\n# What it does.\n",
    '# Pooling\n# "A title", Someone, 2016\n',
])
def test_a_header_without_its_citation_is_an_error(text):
    with pytest.raises(SpecError, match=r"t.attn:1:1: error\[no-citation\]"):
        _header(text)
