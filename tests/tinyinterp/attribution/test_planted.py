"""A planted circuit is found: name embedding → one transcoder feature → one head → the name's logit.

And the graph's prediction of ablating that feature matches the REAL model's logit change (the real
model recomputes attention patterns, LayerNorm scales and MLPs) within 10 %.
"""

from __future__ import annotations

import torch

from tests.support.planted_circuit import FEATURE, NAME, build_planted_circuit, top_path
from tinyinterp.attribution import attribute


def centred_logit(model, tokens, fwd_hooks=()) -> float:
    with torch.no_grad():
        logits = model.run_with_hooks(tokens[None], fwd_hooks=list(fwd_hooks))[0, -1]
    return float(logits[NAME] - logits.mean())


def predicted_ablation(graph, node: int, logit_node: int) -> float:
    """Logit change when ``node``'s activation goes to 0, propagated through the graph's linear edges
    (a downstream feature changes by its pre-activation change; edges are per full activation)."""
    n = graph.n_selected
    acts = graph.activation_values[graph.selected_features].double()
    per_unit = graph.adjacency_matrix.double().clone()
    per_unit[:, :n] /= acts  # effect per unit of each feature's activation
    change = torch.zeros(n, dtype=torch.float64)
    change[node] = -acts[node]
    for _ in range(graph.n_layers):  # a DAG over layers: one round per layer reaches the fixed point
        downstream = per_unit[:n, :n] @ change
        downstream[node] = 0
        change = downstream
        change[node] = -acts[node]
    return float(per_unit[logit_node, :n] @ change)


def test_planted_circuit_is_the_top_path_and_ablation_matches():
    planted = build_planted_circuit(seed=0)
    model, tokens = planted.model, planted.tokens
    graph = attribute(model, planted.transcoders, tokens, target=NAME)
    feature = graph.feature_node(0, planted.name_pos, FEATURE)
    assert feature is not None
    logit = graph.logit_node(0)
    assert graph.logit_tokens.tolist() == [NAME]
    assert graph.n_selected > 5  # distractor features are nodes too

    path = top_path(graph, logit)
    assert path == [graph.token_node(planted.name_pos), feature, logit], [graph.node_label(i) for i in path]

    # the edge goes through head 1.0: zeroing that head's pattern row removes it from the real model
    before = centred_logit(model, tokens)
    def no_head(pattern, hook):
        pattern = pattern.clone()
        pattern[:, 0] = 0
        return pattern
    assert abs(centred_logit(model, tokens, [("blocks.1.attn.hook_pattern", no_head)]) - before) > 0.8 * abs(
        float(graph.adjacency_matrix[logit, feature]))

    # ablate the feature in the real model: subtract its decoder write at layer 0's MLP output
    index = int(graph.selected_features[feature])
    activation = float(graph.activation_values[index])
    write = activation * planted.transcoders[0].W_dec[FEATURE]

    def ablate(mlp_out, hook):
        mlp_out = mlp_out.clone()
        mlp_out[:, planted.name_pos] -= write
        return mlp_out

    measured = centred_logit(model, tokens, [("blocks.0.hook_mlp_out", ablate)]) - before
    predicted = predicted_ablation(graph, feature, logit)
    assert measured < -1.0  # the feature really carries the name's logit
    assert abs(measured - predicted) <= 0.1 * abs(predicted), (measured, predicted)
