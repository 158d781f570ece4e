"""The Attribution page (issue 20, item 6) on hand-written graphs in circuit-tracer's JSON schema.

A saved graph is drawn (SVG by layer and position, links to feature pages), its strongest paths and feature
nodes are tabled; hostile tokens and prompts stay text in the drawing, the tables and every Markdown element;
a malformed file is one error line; a run without transcoders gets a note; ``?graph=`` cannot leave the run.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from markdown_it import MarkdownIt

from tests.support.graph_fixtures import small_graph, write_graph

HOSTILE_TOKENS = ["<|endoftext|>", "<script>alert(1)</script>", "\u202eevil", '<img src=x onerror=alert(2)>']
_md = MarkdownIt("commonmark", {"html": True})


def chart_tables(at) -> list:
    """The data tables of the page's Vega-Lite drawing (Arrow IPC inside the chart's proto)."""
    import pyarrow as pa

    return [pa.ipc.open_stream(d.data.data).read_pandas() for c in at.get("vega_lite_chart") for d in c.proto.datasets]


def drawing(at) -> tuple:
    """(nodes, edges, tokens) tables of the drawing; fails unless exactly one graph is drawn."""
    (chart,) = at.get("vega_lite_chart")
    tables = chart_tables(at)
    nodes = next(t for t in tables if "about" in t.columns)
    edges = next(t for t in tables if "weight" in t.columns)
    tokens = next(t for t in tables if "token" in t.columns)
    return nodes, edges, tokens


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def open_attribution(**query):
    from tests.support.app_pages import open_page

    return open_page("attribution", run="demo", **query)


@pytest.fixture
def graphs(broken):
    return broken / "demo" / "analysis" / "graphs"


def _add_transcoder_cfgs(run, layers=(0, 1)):
    """The cfg.json of the set's missing layers (what the feature links read; the app runs root's demo has
    ``transcoders/layer_01`` only, trained)."""
    for layer in layers:
        folder = run / "analysis" / "dictionaries" / "transcoders" / f"layer_{layer:02d}"
        if not (folder / "cfg.json").is_file():
            folder.mkdir(parents=True)
            (folder / "cfg.json").write_text(json.dumps({"metadata": {"hook_name": f"blocks.{layer}.ln2.hook_normalized"}}))


def _remove_transcoders(run):
    shutil.rmtree(run / "analysis" / "dictionaries" / "transcoders")


def test_page_draws_a_saved_graph_with_its_paths_and_feature_links(broken, graphs):
    write_graph(graphs / "small.json", small_graph())
    (graphs / "graph-metadata.json").write_text(json.dumps({"graphs": []}))  # circuit-tracer's index: not a graph
    _add_transcoder_cfgs(broken / "demo")
    at = open_attribution()
    assert not errors(at), errors(at)
    assert at.selectbox(key="attr_graph").options == ["small.json"]
    nodes, edges, _ = drawing(at)
    assert (nodes.kind == "feature").sum() == 3 and (nodes.kind == "logit").sum() == 2
    assert len(edges) == 12  # every link (fewer than the slider's default)
    assert set(nodes[nodes.on_path].node) == {"E_103_3", "0_5_3", "1_7_3", "3_200_3"}  # the top path, ringed
    paths, nodes = (d.value for d in at.dataframe)
    assert paths.iloc[0]["nodes"] == "E_103_3 → 0_5_3 → 1_7_3 → 3_200_3"  # the planted strongest path
    assert paths.iloc[0]["sign"] == "+" and paths["score"].is_monotonic_decreasing
    assert list(nodes["node"]) == ["1_7_3", "0_5_3", "0_9_1"]  # by influence
    assert list(nodes["explanation"]) == ["a name is coming", "", ""]
    assert list(nodes["open"]) == ["features?run=demo&dict=transcoders%2Flayer_01&feature=7",
                                   "features?run=demo&dict=transcoders%2Flayer_00&feature=5",
                                   "features?run=demo&dict=transcoders%2Flayer_00&feature=9"]


def test_choosing_the_other_logit_reranks_the_paths(graphs):
    write_graph(graphs / "small.json", small_graph())
    at = open_attribution()
    at.selectbox(key="attr_logit").set_value("3_201_3").run()
    paths = at.dataframe[0].value
    assert paths.iloc[0]["nodes"].endswith("3_201_3") and paths.iloc[0]["sign"] == "−"  # via the -0.8 link


def test_hostile_tokens_and_prompt_stay_text(broken, graphs):
    _remove_transcoders(broken / "demo")
    prompt = "<script>alert(3)</script> ![x](http://203.0.113.9/p.png) \u202eevil"
    write_graph(graphs / "hostile.json", small_graph(HOSTILE_TOKENS, ("</svg><script>alert(4)</script>", "\u202e]"), prompt,
                                                     clerp="<img src=x onerror=alert(5)> ![i](http://203.0.113.9/c.png)"))
    at = open_attribution()
    assert not errors(at), errors(at)
    nodes, edges, tokens = drawing(at)
    shown = [str(v) for t in (nodes, edges, tokens) for v in t.to_numpy().ravel()]
    assert "<script>alert(1)</script>" in list(tokens.text)  # Vega draws it as text (the label cut short)
    assert "</svg><script" in " ".join(nodes.label)  # cut to the label length, as text
    assert not any("\u202e" in v for v in shown) and "⟨U+202E⟩evil" in list(tokens.text)  # cannot flip the labels
    assert "open" not in at.dataframe[1].value.columns  # no transcoder set: no links, and never a URL from the file
    for frame in (d.value for d in at.dataframe):
        cells = [str(c) for c in frame.to_numpy().ravel().tolist()]
        assert not any("\u202e" in c for c in cells)
    assert any("<script>alert(1)</script>" in c for c in at.dataframe[1].value["token"])
    for element in [*at.caption, *at.markdown, *at.info, *at.error]:
        rendered = _md.render(str(element.value))
        assert "<script" not in rendered and "<img" not in rendered, element.value


def _with_first_node(**change) -> dict:
    graph = small_graph()
    graph["nodes"][0].update(change)
    return graph


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    (json.dumps({**small_graph(), "links": [{"source": "E_100_0", "target": "nowhere", "weight": 1.0}]}), "nowhere"),
    (json.dumps(_with_first_node(ctx_idx="3")), "ctx_idx"),
    (json.dumps(_with_first_node(feature_type="<b>x</b>")), "feature_type"),
    (json.dumps(_with_first_node(ctx_idx=99)), "ctx_idx 99"),
])
def test_a_malformed_graph_is_one_error_line(graphs, content, needle):
    graphs.mkdir(parents=True, exist_ok=True)
    (graphs / "bad.json").write_text(content)
    at = open_attribution()
    (error,) = errors(at)
    assert "bad.json" in error and needle in error and "\n" not in error and "Traceback" not in error
    assert not at.get("vega_lite_chart")


def test_missing_transcoders_is_a_note(broken):
    _remove_transcoders(broken / "demo")
    at = open_attribution()
    assert at.radio(key="attr_source").value == "new graph from a prompt"  # no saved graph: compute one
    assert not errors(at)
    (note,) = [i.value for i in at.info]
    assert "no transcoder set in analysis/dictionaries/transcoders/" in note and "--transcoder all" in note
    assert at.selectbox(key="attr_eval_prompt").options[0] == "(type your own)"
    assert not at.button  # nothing to compute with


def test_an_incomplete_transcoder_set_is_a_note(broken, graphs):
    """The demo run has a transcoder of layer 1 only: no graph can be computed, no intervention run."""
    at = open_attribution()
    (note,) = [i.value for i in at.info]
    assert "layer(s) 1, the model has 2 layers (missing: 0)" in note.replace("\\", "")  # shown as text (escaped)
    write_graph(graphs / "small.json", small_graph())
    at = open_attribution()
    assert not errors(at)
    (note,) = [i.value for i in at.info]
    assert note.startswith("Interventions need one transcoder per layer")


def test_evaluation_prompt_fills_the_prompt(broken, shared_data):
    at = open_attribution()
    box = at.selectbox(key="attr_eval_prompt")
    assert len(box.options) > 10
    box.set_value(box.options[1]).run()
    from tinyinterp.evaluation.prompts import load_prompts

    first = next(p.text for p in load_prompts() if p.kind == "completion")
    assert at.text_area(key="attr_prompt").value == first


@pytest.mark.parametrize("value", ["../../../etc/passwd", "/etc/passwd", "small.json/../../config.json", "missing.json"])
def test_graph_query_param_cannot_leave_the_run(graphs, value):
    write_graph(graphs / "small.json", small_graph())
    at = open_attribution(graph=value)
    (error,) = errors(at)
    assert "refused" in error and "\n" not in error
    assert at.selectbox(key="attr_graph").value == "small.json"


def test_graph_query_param_opens_a_saved_graph(graphs):
    write_graph(graphs / "a.json", small_graph())
    write_graph(graphs / "b.json", small_graph(["<|endoftext|>", "One", " day", ","]))
    os.utime(graphs / "b.json", (1, 1))  # a is newest, so the default
    at = open_attribution(graph="b.json")
    assert not errors(at) and at.selectbox(key="attr_graph").value == "b.json"
    assert "One" in list(drawing(at)[2].text)


def test_a_graph_linked_out_of_the_root_is_refused(graphs, tmp_path):
    outside = write_graph(tmp_path / "outside" / "secret.json", small_graph(["<|endoftext|>", "SECRET", " x", " y"]))
    graphs.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, graphs / "linked.json")
    at = open_attribution()
    (error,) = errors(at)
    assert "outside the runs root" in error
    assert not at.get("vega_lite_chart")


def _click(at, node_id: str):
    """What a click on a node of the drawing sends back (the chart's point selection), then the rerun."""
    at.session_state["attr_chart"] = {"selection": {"node_pick": [{"node": node_id}]}}
    return at.run()


def test_clicking_a_feature_opens_it_with_its_feature_page(broken, graphs):
    from apps.views import PAGE_NAMES

    hostile = "<img src=x onerror=alert(5)> ![i](http://203.0.113.9/c.png)"
    write_graph(graphs / "small.json", small_graph(clerp=hostile))
    _add_transcoder_cfgs(broken / "demo")
    at = _click(open_attribution(), "1_7_3")
    assert not at.exception and not errors(at)
    (title,) = [m.value for m in at.markdown if m.value.startswith("**L1 F7")]
    rendered = _md.render(title)
    assert "<img" not in rendered and "onerror=alert(5)" in rendered  # the explanation, as text
    inputs, outputs = (d.value for d in at.dataframe[:2])
    assert list(inputs["node"]) == ["0_5_3", "0_9_1", "E_103_3", "0_0_3"]  # strongest first
    assert list(outputs["node"]) == ["3_200_3", "3_201_3"]
    url = "features?run=demo&dict=transcoders%2Flayer_01&feature=7"
    if "features" in PAGE_NAMES:
        (link,) = at.get("link_button")
        assert link.proto.url == url
    else:
        assert any(url in c.value for c in at.caption)


def test_clicking_an_unknown_node_is_ignored(graphs):
    write_graph(graphs / "small.json", small_graph())
    at = _click(open_attribution(), "<script>")
    assert not at.exception and not errors(at)
    assert not [m for m in at.main.markdown if m.value.startswith("**")]
