"""Drawing: golden DOT per shipped spec, the layout's clusters read back from graphviz, and
render()'s formats and errors (the graphviz `dot` program is installed wherever tests run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from graphviz.quoting import quote

import attnspec
from attnspec.api import spec_path
from attnspec.catalogue import example_widths
from attnspec.diagnostics import UsageError
from attnspec.draw import FORMATS, ROLE_STYLE, render, to_dot
from attnspec.ir import ROLES

# golden name → (shipped spec, parameters)
GOLDEN_CASES = {
    "se": ("se", dict(C=64)),
    "eca": ("eca", dict(C=64)),
    "cbam": ("cbam", dict(C=64)),
    "mhsa": ("mhsa", dict(D=64)),
    "mhsa_causal": ("mhsa", dict(D=64, M=4, causal=True)),
    "nonlocal": ("nonlocal", dict(C=64)),
    "external": ("external", dict(D=64)),
    "gcnet": ("gcnet", dict(C=64)),
}


def ir_of(name: str, **params):
    return attnspec.build_ir(spec_path(name), **params)


def layout(ir) -> dict:
    """graphviz's own reading of the DOT: {(cluster id, label): node ids directly in it}."""
    objects = json.loads(to_dot(ir).pipe(format="json0"))["objects"]
    names = {o["_gvid"]: o["name"] for o in objects}
    clusters = {o["_gvid"]: o for o in objects if o["name"].startswith("cluster")}
    direct = {}
    for cluster in clusters.values():
        nested = {n for c in cluster.get("subgraphs", []) if c in clusters
                  for n in clusters[c].get("nodes", [])}
        direct[cluster["name"], cluster["label"]] = [names[n] for n in cluster["nodes"]
                                                     if n not in nested]
    return direct


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_dot_golden(case, golden):
    spec, params = GOLDEN_CASES[case]
    golden(f"dot/{case}.dot", to_dot(ir_of(spec, **params)).source)


@pytest.mark.parametrize("name", attnspec.shipped())
def test_every_shipped_spec_draws(name):
    program = attnspec.parse(spec_path(name))
    params = example_widths(program, program.main_definition())  # as `attnspec draw` does
    ir = ir_of(name, **params)
    source = to_dot(ir).source
    assert source == to_dot(ir_of(name, **params)).source  # deterministic
    assert "0x" not in source  # no memory addresses
    for node in ir.nodes():  # ids are IR names; a result renamed for its caller is an edge
        drawn = not (node.op == "rename" and node.role != "input")
        assert (f"\t{quote(node.name)} [label=" in source) == drawn
    assert layout(ir)  # graphviz lays it out, with clusters


def test_every_role_has_a_style():
    assert set(ROLE_STYLE) == set(ROLES)


def test_mhsa_parts_are_grouped():
    attention = "MHSA\\lΩ_q = all    M = 8\\lq, k over positions(N)\\l"
    assert layout(ir_of("mhsa", D=64)) == {
        ("cluster_0", attention): [],  # every node sits in a part; inputs stay outside
        ("cluster_0_query", "query"): ["linear"],
        ("cluster_0_key", "key"): ["linear_2"],
        ("cluster_0_value", "value"): ["linear_3"],
        ("cluster_0_weight_A", "weight A"): ["e1", "scale", "range", "softmax"],
        ("cluster_0_context", "context"): ["aggregate"],
        ("cluster_0_output", "output"): ["linear_4"],
    }


def test_cbam_has_one_cluster_per_attention():
    ir = ir_of("cbam", C=64)
    source = to_dot(ir).source
    identities = "W′ = I    W = I\\l"
    assert 'label="ChannelGate\\lΩ_q = self    M = 1\\lq, k over channels(C)\\l' \
        + identities + '"' in source
    assert 'label="SpatialGate\\lΩ_q = self    M = 1\\lq, k over positions(H W)\\l' \
        + identities + '"' in source
    assert "label=CBAM" in source  # a block is titled with its own name
    clusters = layout(ir)
    inner = {n for nodes in clusters.values() for n in nodes}
    assert {n.name for n in ir.nodes()} - inner == {"channel_gate.x"}  # inputs outside
    for (cluster, _), nodes in clusters.items():
        scope = "channel_gate." if cluster.startswith("cluster_0") else "spatial_gate."
        assert all(n.startswith(scope) for n in nodes)


def test_lets_are_drawn_in_a_box_of_their_own_and_name_their_layers():
    # triplet composes three gates from `let`s: no weight A of its own to put them in
    clusters = layout(ir_of("triplet"))
    assert ("cluster_0_weight_A", "weight A") not in clusters
    lets = clusters[("cluster_0_let", "let")]
    assert {"conv", "conv_2", "conv_3", "sigmoid", "sigmoid_2", "sigmoid_3"} <= set(lets)
    source = to_dot(ir_of("triplet")).source
    for gate in ("cw", "hc", "hw"):  # `let cw = sigmoid(batchnorm(conv(...)))`
        assert f"conv\\n{gate}_conv" in source and f"batchnorm\\n{gate}_batchnorm" in source


def test_labels_show_layers_and_edges_show_types():
    source = to_dot(ir_of("mhsa", D=64)).source
    assert 'linear [label="linear\\nquery_linear"' in source
    assert 'x -> linear [label="[B, N, D=64]"]' in source
    assert 'softmax -> aggregate [label="[B, M=8, N, N\']"]' in source
    assert '"(return)" [label=y' in source


def test_render_svg(tmp_path):
    out = render(ir_of("cbam", C=64), tmp_path / "cbam.svg")
    assert out == tmp_path / "cbam.svg"
    text = out.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "ChannelGate" in text and "SpatialGate" in text


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_render_binary_formats(tmp_path, suffix, magic):
    out = render(ir_of("se", C=64), tmp_path / f"se{suffix.upper()}")  # case-insensitive
    assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize("suffix", [".dot", ".gv"])
def test_render_dot_source(tmp_path, suffix):
    ir = ir_of("mhsa", D=64)
    out = render(ir, tmp_path / f"mhsa{suffix}")
    assert out.read_text(encoding="utf-8") == to_dot(ir).source


def test_missing_dot_program_writes_source_and_says_how_to_install(tmp_path, monkeypatch):
    ir = ir_of("se", C=64)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no `dot` to be found
    with pytest.raises(UsageError) as error:
        render(ir, tmp_path / "se.svg")
    message = str(error.value)
    assert "`dot` program was not found" in message
    assert str(tmp_path / "se.dot") in message
    for hint in ("apt-get install graphviz", "brew install graphviz", "conda install graphviz"):
        assert hint in message
    assert (tmp_path / "se.dot").read_text(encoding="utf-8") == to_dot(ir).source
    assert not (tmp_path / "se.svg").exists()


def test_unknown_extension(tmp_path):
    with pytest.raises(UsageError, match=r"unknown extension `\.jpg`") as error:
        render(ir_of("se", C=64), tmp_path / "se.jpg")
    assert "supported: " + " ".join(FORMATS) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination(tmp_path):
    with pytest.raises(UsageError, match="cannot write"):
        render(ir_of("se", C=64), tmp_path / "no" / "such" / "dir" / "se.dot")


def test_drawing_does_not_import_torch():
    code = "import sys, attnspec.draw; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
