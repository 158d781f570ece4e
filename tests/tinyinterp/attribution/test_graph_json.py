"""Graph JSON: circuit-tracer's schema (restated in tests/support/circuit_tracer_schema.py), reopening, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import circuit_tracer_schema as schema
from tests.support.attribution_graphs import hand_graph, make_graph, random_dag
from tinyinterp.runs import layout as runlayout
from tinyinterp.attribution.graph_json import graph_slug, graph_to_json, load_graph_json, save_graph_json
from tinyinterp.attribution.nodes import GraphError
from tinyinterp.attribution.prune import prune_graph


def test_hand_graph_file_has_circuit_tracers_ids_and_values(tmp_path):
    graph = hand_graph()
    path = runlayout.graph_path(tmp_path, "hand")
    save_graph_json(graph, path, prune=prune_graph(graph, 0.8, 1.0), clerps={(0, 7): "the letter e"})
    raw = json.loads(path.read_text())
    assert schema.validate(raw, n_layers=1) == []
    ids = {n["node_id"]: n for n in raw["nodes"]}
    assert set(ids) == {"0_7_0", "E_5_0", "2_9_0"}  # the error node was pruned
    feature = ids["0_7_0"]
    assert feature["feature"] == schema.cantor(0, 7) and feature["activation"] == pytest.approx(1.5)
    assert feature["clerp"] == "the letter e" and feature["influence"] == pytest.approx(1.6 / 1.8, abs=1e-6)
    logit = ids["2_9_0"]
    assert logit["is_target_logit"] and logit["token_prob"] == 1.0 and logit["clerp"] == 'Output "#9" (p=1.000)'
    links = {(link["source"], link["target"]): link["weight"] for link in raw["links"]}
    assert links == {("E_5_0", "0_7_0"): 2.0, ("0_7_0", "2_9_0"): 3.0, ("E_5_0", "2_9_0"): 1.0}
    assert raw["metadata"]["slug"] == "hand" and raw["metadata"]["prompt_tokens"] == ["#5"]
    index = json.loads((path.parent / runlayout.GRAPH_METADATA_FILE).read_text())
    assert [g["slug"] for g in index["graphs"]] == ["hand"]

    back = load_graph_json(path)
    assert back.slug == "hand" and back.node("0_7_0") == feature and len(back.links) == 3
    assert [n["node_id"] for n in back.nodes_of_type("embedding")] == ["E_5_0"]


def test_an_error_node_whose_circuit_tracer_id_is_a_features_gets_its_own(tmp_path):
    # circuit-tracer names the error node of layer 1 at position 0 "0_1_0" -- also feature 1 of layer 0 there
    A = np.zeros((5, 5))  # [feature (L0, pos 0, #1), error L0P0, error L1P0, embedding 0, logit]
    A[0, 3] = 1.0
    A[4, 0], A[4, 2], A[4, 3] = 2.0, 1.0, 1.0
    graph = make_graph(A, features=[(0, 0, 1)], n_layers=2, input_tokens=[5], logit_tokens=[9],
                       logit_probabilities=[1.0])
    path = tmp_path / "clash.json"
    save_graph_json(graph, path, prune=prune_graph(graph, 1.0, 1.0))
    raw = json.loads(path.read_text())
    assert schema.validate(raw, n_layers=2) == []
    ids = {n["node_id"]: n["feature_type"] for n in raw["nodes"]}
    assert ids["0_1_0"] == "cross layer transcoder" and ids["0_1_0_error"] == "mlp reconstruction error"
    links = {(link["source"], link["target"]): link["weight"] for link in raw["links"]}
    assert links[("0_1_0", "3_9_0")] == 2.0 and links[("0_1_0_error", "3_9_0")] == 1.0
    assert {n["node_id"] for n in load_graph_json(path).nodes} == set(ids)


def test_saving_twice_keeps_one_index_entry_per_slug(tmp_path):
    graph = hand_graph()
    save_graph_json(graph, tmp_path / "a.json")
    save_graph_json(graph, tmp_path / "b.json")
    save_graph_json(graph, tmp_path / "a.json")
    index = json.loads((tmp_path / runlayout.GRAPH_METADATA_FILE).read_text())
    assert sorted(g["slug"] for g in index["graphs"]) == ["a", "b"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32 - 1), st.integers(1, 10), st.integers(1, 3), st.integers(1, 4), st.floats(0.3, 1.0))
def test_every_saved_graph_validates_and_reopens(tmp_path, seed, n_features, n_layers, n_pos, node_threshold):
    graph = random_dag(np.random.default_rng(seed), n_features, n_layers, n_pos, 2)
    path = tmp_path / f"g{seed}.json"
    prune = prune_graph(graph, node_threshold)
    save_graph_json(graph, path, prune=prune)
    raw = json.loads(path.read_text())
    assert schema.validate(raw, n_layers) == []
    assert len(raw["nodes"]) <= prune.n_nodes and len(raw["links"]) == prune.n_edges
    kinds = [n["feature_type"] for n in raw["nodes"]]
    assert kinds.count("embedding") == n_pos and kinds.count("logit") == 2
    back = load_graph_json(path)
    assert [n["node_id"] for n in back.nodes] == [n["node_id"] for n in raw["nodes"]]


def test_slugs_are_file_names_and_distinct():
    a, b = graph_slug("Once upon a time, Lily"), graph_slug("Once upon a time, Tom")
    assert a != b and a.startswith("once-upon-a-time-lily-") and "/" not in a
    assert graph_slug("???").startswith("graph-")


def test_not_a_json_name_is_refused(tmp_path):
    with pytest.raises(GraphError, match="must end in .json"):
        save_graph_json(hand_graph(), tmp_path / "graph.txt")


@pytest.mark.parametrize("mutate, message", [
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: [1, 2], "JSON object"),
    (lambda m: {**m, "nodes": {}}, "'nodes' is missing"),
    (lambda m: {**m, "metadata": {**m["metadata"], "prompt": 3}}, "metadata.prompt"),
    (lambda m: {**m, "nodes": [{**m["nodes"][0], "ctx_idx": "0"}, *m["nodes"][1:]]}, r"nodes\[0\].ctx_idx"),
    (lambda m: {**m, "nodes": [{**m["nodes"][0], "activation": "big"}, *m["nodes"][1:]]}, "wrong type"),
    (lambda m: {**m, "nodes": m["nodes"] + m["nodes"][:1]}, "appears twice"),
    (lambda m: {**m, "links": [{**m["links"][0], "source": "nope"}]}, "not a node id"),
    (lambda m: {**m, "links": [{"source": "E_5_0", "target": "2_9_0"}]}, "numeric weight"),
])
def test_malformed_files_are_one_line_errors(tmp_path, mutate, message):
    model = graph_to_json(hand_graph(), "hand")
    broken = mutate(model)
    path = tmp_path / "broken.json"
    path.write_text(broken if isinstance(broken, str) else json.dumps(broken))
    with pytest.raises(GraphError, match=message) as info:
        load_graph_json(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(GraphError, match="no graph file"):
        load_graph_json(tmp_path / "none.json")
