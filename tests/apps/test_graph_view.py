"""apps.graph_view: parsing circuit-tracer graph JSON, the layout, the escaped SVG and the strongest paths."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.graph_view import (graph_svg, layout, parse_graph, strongest_paths, svg_text, visible_text)
from tests.support.graph_fixtures import feature_node, logit_node, small_graph, token_node
from tinyinterp.errors import DataError

SVG_TAGS = {"svg", "rect", "text", "line", "title", "circle", "polygon", "a"}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.texts = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)


def test_parse_reads_every_node_kind():
    view = parse_graph(small_graph(), "g.json")
    assert view.n_layers == 2 and view.summary() == {"feature": 3, "error": 2, "embedding": 4, "logit": 2, "links": 12}
    f = view.nodes["1_7_3"]
    assert (f.kind, f.layer, f.pos, f.feature, f.activation, f.label) == ("feature", 1, 3, 7, 3.0, "L1 F7")
    assert view.nodes["0_1_3"].kind == "error" and view.nodes["0_1_3"].layer == 1
    lily = view.default_logit()
    assert (lily.node_id, lily.label, lily.feature, lily.token_prob) == ("3_200_3", " Lily", 200, 0.6)


def test_an_error_id_disambiguated_by_the_writer_parses(tmp_path):
    # feature 1 of layer 0 at position 0 and the error node of layer 1 there share circuit-tracer's id "0_1_0"
    import json

    import numpy as np

    from tests.support.attribution_graphs import make_graph
    from tinyinterp.attribution.graph_json import save_graph_json
    from tinyinterp.attribution.prune import prune_graph

    A = np.zeros((5, 5))
    A[0, 3], A[4, 0], A[4, 2], A[4, 3] = 1.0, 2.0, 1.0, 1.0
    graph = make_graph(A, features=[(0, 0, 1)], n_layers=2, input_tokens=[5], logit_tokens=[9], logit_probabilities=[1.0])
    save_graph_json(graph, tmp_path / "clash.json", prune=prune_graph(graph, 1.0, 1.0))
    view = parse_graph(json.loads((tmp_path / "clash.json").read_text()), "clash.json")
    assert (view.nodes["0_1_0"].kind, view.nodes["0_1_0"].layer, view.nodes["0_1_0"].feature) == ("feature", 0, 1)
    assert (view.nodes["0_1_0_error"].kind, view.nodes["0_1_0_error"].layer) == ("error", 1)


def test_layout_rows_are_embedding_layers_logit_and_columns_are_positions():
    view = parse_graph(small_graph(), "g.json")
    where, width, height, lefts = layout(view)
    ys = {n.node_id: where[n.node_id][1] for n in view.nodes.values()}
    assert ys["E_103_3"] > ys["0_5_3"] > ys["1_7_3"] > ys["3_200_3"]  # y grows downwards: logits on top
    assert ys["0_5_3"] == ys["0_9_1"] == ys["0_0_3"]
    assert where["E_100_0"][0] < where["E_101_1"][0] == where["0_9_1"][0] < where["0_5_3"][0] < width
    assert all(lefts[p] <= where[f"E_{100 + p}_{p}"][0] for p in range(4))


def test_strongest_paths_are_exact_on_a_known_graph():
    view = parse_graph(small_graph(), "g.json")
    paths = strongest_paths(view, view.default_logit(), k=50)
    # every embedding-to-logit path of the graph, scored by hand: prob x prod |w| / sum |w into target|
    into = {t: sum(abs(l.weight) for l in ls) for t, ls in view.incoming.items()}
    def score(nodes):
        w = {(l.source, l.target): l.weight for l in view.links}
        return 0.6 * math.prod(abs(w[(a, b)]) / into[b] for a, b in zip(nodes, nodes[1:]))
    assert paths[0].nodes == ("E_103_3", "0_5_3", "1_7_3", "3_200_3")
    assert paths[0].score == pytest.approx(score(paths[0].nodes))
    assert all(p.score == pytest.approx(score(p.nodes)) for p in paths)
    assert all(p.share == pytest.approx(p.score / 0.6) for p in paths)
    assert [p.score for p in paths] == sorted((p.score for p in paths), reverse=True)
    assert len(paths) == len({p.nodes for p in paths}) == 7  # all of them (from embeddings), each once
    tom = strongest_paths(view, view.nodes["3_201_3"], k=3)
    assert tom[0].sign == -1 and tom[0].weights[-1] == -0.8


def test_a_cycle_is_one_line():
    graph = small_graph()
    graph["links"].append({"source": "1_7_3", "target": "0_5_3", "weight": 1.0})
    view = parse_graph(graph, "g.json")
    with pytest.raises(DataError, match="cycle"):
        strongest_paths(view, view.default_logit())


@pytest.mark.parametrize("change, needle", [
    (lambda g: g.pop("metadata"), "metadata"),
    (lambda g: g["metadata"].update(prompt_tokens="abc"), "prompt_tokens"),
    (lambda g: g["metadata"].update(prompt_tokens=[]), "non-empty"),
    (lambda g: g["nodes"][4].update(node_id="0_x_3"), "node_id"),
    (lambda g: g["nodes"][4].update(ctx_idx=99), "ctx_idx 99"),
    (lambda g: g["nodes"][4].update(influence=float("nan")), "influence"),
    (lambda g: g["nodes"].append(dict(g["nodes"][0])), "duplicate"),
    (lambda g: g["links"][0].update(weight="1"), "weight"),
    (lambda g: g["links"][0].update(weight=True), "weight"),
    (lambda g: g.update(nodes={}), "lists"),
])
def test_malformed_graphs_are_one_line(change, needle):
    graph = small_graph()
    change(graph)
    with pytest.raises(DataError, match=needle) as e:
        parse_graph(graph, "bad.json")
    assert str(e.value).startswith("bad.json") and "\n" not in str(e.value)


def test_visible_text_shows_invisible_characters():
    assert visible_text("a\nb\tc\u202ed\u200b") == "a↵b→c⟨U+202E⟩d⟨U+200B⟩"
    assert visible_text("x" * 20, 5) == "xxxx…"
    assert svg_text('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"


@settings(max_examples=60, deadline=None)
@given(tokens=st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=5), logit=st.text(max_size=12))
def test_any_token_is_text_in_the_svg(tokens, logit):
    """Whatever the tokens, the SVG holds only our own elements, no event handler, and each token as its visible text."""
    last = len(tokens) - 1
    graph = {"metadata": {"prompt_tokens": tokens, "prompt": "".join(tokens)},
             "nodes": [token_node(p, p) for p in range(len(tokens))]
             + [feature_node(0, last, 3, 0.5, 1.0), logit_node(last, 7, logit, 1, 0.9, True)],
             "links": [{"source": f"E_{last}_{last}", "target": f"0_3_{last}", "weight": 1.0},
                       {"source": f"0_3_{last}", "target": f"2_7_{last}", "weight": -2.0}]}
    svg = graph_svg(parse_graph(graph, "g.json"), feature_href=lambda n: f"features?feature={n.feature}")
    parser = _Collect()
    parser.feed(svg)
    assert {t for t, _ in parser.tags} <= SVG_TAGS
    assert not [a for _, attrs in parser.tags for a in attrs if a.startswith("on")]
    texts = "".join(parser.texts)
    for token in [*tokens, logit]:
        assert visible_text(token, 14) in texts
    assert not any(c in svg for c in "\u202e\u2066\u200f")
