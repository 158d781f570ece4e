"""Influence, pruning, paths and the node table against hand computations and brute-force path sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.attribution_graphs import hand_graph, make_graph, random_dag
from tinyinterp.attribution.nodes import GraphError, layout
from tinyinterp.attribution.prune import (find_threshold, graph_frame, indirect_influence, influence_matrix,
                                          logit_weights, node_influence, normalize_adjacency, prune_graph, top_paths)


def all_paths(edges: np.ndarray, source: int, target: int) -> list[list[int]]:
    """Every path source -> target by depth-first search (edges [target, source])."""
    if source == target:
        return [[target]]
    out = []
    for t in np.nonzero(edges[:, source])[0]:
        out.extend([source, *p] for p in all_paths(edges, int(t), target))
    return out


def path_product(normalized: np.ndarray, path: list[int]) -> float:
    return float(np.prod([normalized[t, s] for s, t in zip(path, path[1:])]))


def test_hand_graph_influence():
    graph = hand_graph()
    influence = node_influence(graph)
    assert influence.tolist() == pytest.approx([0.6, 0.2, 1.0, 0.0], abs=1e-6)
    normalized = normalize_adjacency(graph.adjacency_matrix)
    assert normalized[3].tolist() == pytest.approx([0.6, 0.2, 0.2, 0.0])
    assert normalized[0].tolist() == pytest.approx([0, 0, 1, 0])


def test_hand_graph_pruning_drops_the_error_node_at_a_low_threshold():
    graph = hand_graph()
    # influences 1.0 (emb), 0.6 (f0), 0.2 (err): 0.55 of the total 1.8 is reached by emb alone, so only
    # the always-kept tokens/logits survive the node stage; f0 needs a threshold above 1/1.8
    result = prune_graph(graph, node_threshold=0.5, edge_threshold=1.0)
    assert result.node_mask.tolist() == [False, False, True, True]
    result = prune_graph(graph, node_threshold=0.8, edge_threshold=1.0)
    assert result.node_mask.tolist() == [True, False, True, True]  # 1.6 / 1.8 = 0.89 >= 0.8
    assert result.edge_mask[3, 0] and result.edge_mask[0, 2] and result.edge_mask[3, 2]
    assert not result.edge_mask[3, 1] and not result.edge_mask[1].any()
    assert result.cumulative_scores.tolist() == pytest.approx([1.6 / 1.8, 1.0, 1.0 / 1.8, 1.0], abs=1e-6)


def test_hand_graph_top_paths():
    graph = hand_graph()
    paths = top_paths(graph, k=5, prune=False)
    assert paths[0].nodes == [2, 0, 3] and paths[0].sign == 1 and paths[0].weights == [2.0, 3.0]
    assert [p.score for p in paths] == pytest.approx([0.6, 0.2, 0.2])
    rest = {tuple(p.nodes): (p.sign, p.weights) for p in paths[1:]}  # a tie at 0.2
    assert rest == {(2, 3): (1, [1.0]), (2, 1, 3): (-1, [0.5, -1.0])}
    assert paths[0].share == pytest.approx(0.6)
    assert paths[0].describe(graph) == "+60.00%  emb '#5' @0 -> L0 #7 @0 -> logit '#9'"


def test_frame_has_one_row_per_node_with_activation_and_influence():
    graph = hand_graph()
    frame = graph_frame(graph)
    assert list(frame["kind"]) == ["feature", "error", "embedding", "logit"]
    assert frame.loc[0, "activation"] == pytest.approx(1.5)
    assert math.isnan(frame.loc[1, "activation"])
    assert frame["influence"].tolist() == pytest.approx([0.6, 0.2, 1.0, 0.0], abs=1e-6)
    assert frame.loc[0, "feature"] == 7 and frame.loc[2, "token"] == 5 and frame.loc[3, "token"] == 9


def test_bad_thresholds_and_k_are_one_line_errors():
    graph = hand_graph()
    with pytest.raises(GraphError, match="node-threshold"):
        prune_graph(graph, node_threshold=1.5)
    with pytest.raises(GraphError, match="edge-threshold"):
        prune_graph(graph, edge_threshold=-0.1)
    with pytest.raises(GraphError, match="k must be"):
        top_paths(graph, k=0)
    with pytest.raises(GraphError, match="logit 3"):
        top_paths(graph, logit=3)


def test_a_cycle_is_refused():
    A = np.zeros((4, 4))
    A[0, 1] = A[1, 0] = 1.0
    A[3, 0] = 1.0
    graph = make_graph(A, features=[(0, 0, 1)], n_layers=1, input_tokens=[1], logit_tokens=[2], logit_probabilities=[1.0])
    with pytest.raises(GraphError, match="cycle"):
        node_influence(graph)


dags = st.builds(lambda seed, f, l, p, k, d: random_dag(np.random.default_rng(seed), f, l, p, k, d),
                 st.integers(0, 2**32 - 1), st.integers(1, 8), st.integers(1, 3), st.integers(1, 3),
                 st.integers(1, 3), st.floats(0.2, 0.9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags)
def test_inverse_equals_the_sum_of_path_products(graph):
    normalized = normalize_adjacency(graph.adjacency_matrix).double().numpy()
    edges = graph.adjacency_matrix.numpy() != 0
    closed = influence_matrix(torch.from_numpy(normalized)).numpy()
    n = len(normalized)
    for s in range(n):
        for t in range(n):
            if s != t:
                expected = sum(path_product(normalized, p) for p in all_paths(edges, s, t))
                assert closed[t, s] == pytest.approx(expected, abs=1e-9)
    weights = logit_weights(graph).double()
    series = indirect_influence(torch.from_numpy(normalized), weights).numpy()
    assert series == pytest.approx(weights.numpy() @ closed, abs=1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags, st.integers(1, 6))
def test_top_paths_are_the_best_of_all_paths(graph, k):
    lay = layout(graph)
    normalized = normalize_adjacency(graph.adjacency_matrix).double().numpy()
    edges = graph.adjacency_matrix.numpy() != 0
    p0 = float(graph.logit_probabilities[0])
    every = [p for pos in range(lay.n_pos) for p in all_paths(edges, lay.embed_start + pos, lay.logit_start)]
    scores = sorted((p0 * path_product(normalized, p) for p in every), reverse=True)
    got = top_paths(graph, k=k, prune=False)
    assert [p.score for p in got] == pytest.approx(scores[:k], rel=1e-9)
    for path in got:
        assert path.nodes[0] >= lay.embed_start and path.nodes[-1] == lay.logit_start
        assert path.score == pytest.approx(p0 * path_product(normalized, path.nodes), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 10), min_size=1, max_size=40), st.floats(0, 1))
def test_threshold_keeps_the_stated_fraction_and_no_more(scores, fraction):
    s = torch.tensor(scores, dtype=torch.float64)
    cut = find_threshold(s, fraction)
    kept = s[s >= cut]
    total = float(s.sum())
    if total == 0:
        assert len(kept) == len(s)
        return
    assert float(kept.sum()) >= fraction * total - 1e-9
    smaller = s[s > cut]  # without the threshold's own value(s) the fraction is not reached
    assert float(smaller.sum()) < fraction * total + 1e-9 or fraction == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags, st.floats(0, 1), st.floats(0, 1))
def test_pruned_graph_is_connected_and_keeps_tokens_and_logits(graph, node_threshold, edge_threshold):
    lay = layout(graph)
    result = prune_graph(graph, node_threshold, edge_threshold)
    assert result.node_mask[lay.embed_start:].all()
    kept = result.node_mask
    edges = result.edge_mask
    assert not edges[~kept].any() and not edges[:, ~kept].any()
    assert not (edges & (graph.adjacency_matrix == 0)).any()
    for i in range(lay.embed_start):
        if kept[i]:
            assert edges[:, i].any()  # an outgoing edge
            if i < lay.n_features:
                assert edges[i].any()  # and an incoming one
    influence = node_influence(graph)
    dropped_at_node_stage = influence < find_threshold(influence, node_threshold)
    assert not kept[: lay.embed_start][dropped_at_node_stage[: lay.embed_start]].any()
