"""Each edge weight equals the effect of ablating (or nudging) its source in the frozen linear model.

The graph comes from batched backward passes; the check is forward-only: ``frozen_forward`` with one
source switched off (a feature's activation, an error vector, a token embedding) and the change of
every target's pre-activation / centred logit measured. The model is affine in the sources, so
single-source ablation and a finite difference must both give the edge exactly.
"""

from __future__ import annotations

import pytest
import torch

from tests.support.attribution_models import build_model, random_transcoders, target_rows
from tinyinterp.attribution import ReplacementModel, attribute


def target_values(graph, logits: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """The values of the graph's target nodes (features, then logits) from one frozen forward pass."""
    last = logits[-1]
    return torch.cat([pre, last[graph.logit_tokens] - last.mean()])


@pytest.mark.parametrize("arch", ["gpt-neo", "gpt2"])
def test_edges_equal_single_source_ablations(arch):
    model = build_model(arch, seed=7, d_vocab=30, d_model=16, n_heads=2, n_layers=3).double()
    transcoders = random_transcoders(model, d_sae=20, k=3, seed=8)
    tokens = torch.randint(0, 30, (11,), generator=torch.Generator().manual_seed(9))
    graph = attribute(model, transcoders, tokens, dtype=torch.float64, batch_size=5)
    rm = ReplacementModel(model, transcoders, tokens)
    rows = target_rows(graph)
    A = graph.adjacency_matrix[rows]
    base = target_values(graph, *rm.frozen_forward())
    assert torch.allclose(base, graph.node_values[rows], atol=1e-10)
    L, P, n = graph.n_layers, graph.n_pos, graph.n_selected

    checked = 0
    for f in range(n):  # every feature source
        values = rm.activation_values.clone()
        values[f] = 0
        measured = base - target_values(graph, *rm.frozen_forward(values))
        assert torch.allclose(measured, A[:, f], atol=1e-10), f"feature {f}"
        checked += 1
    for layer in range(L):  # every error node
        for pos in range(P):
            scale = torch.ones(L, P, dtype=torch.float64)
            scale[layer, pos] = 0
            measured = base - target_values(graph, *rm.frozen_forward(error_scale=scale))
            assert torch.allclose(measured, A[:, graph.error_node(layer, pos)], atol=1e-10)
            checked += 1
    for pos in range(P):  # every token node, by a finite difference this time
        eps = 1e-3
        scale = torch.ones(P, dtype=torch.float64)
        scale[pos] = 1 + eps
        measured = (target_values(graph, *rm.frozen_forward(token_scale=scale)) - base) / eps
        assert torch.allclose(measured, A[:, graph.token_node(pos)], atol=1e-7)
        checked += 1
    assert checked == n + L * P + P
    assert A.abs().max() > 0.1  # real edges, not an all-zero graph


def test_frozen_model_is_affine_in_the_sources():
    """Switching off all sources leaves exactly the bias; halving all of them moves every target half-way."""
    model = build_model("gpt-neo", seed=10, d_vocab=30, d_model=16, n_heads=2).double()
    transcoders = random_transcoders(model, d_sae=20, k=3, seed=11)
    tokens = torch.randint(0, 30, (9,), generator=torch.Generator().manual_seed(12))
    graph = attribute(model, transcoders, tokens, dtype=torch.float64)
    rm = ReplacementModel(model, transcoders, tokens)
    rows = target_rows(graph)
    full = target_values(graph, *rm.frozen_forward())
    half = target_values(graph, *rm.frozen_forward(rm.activation_values / 2, error_scale=0.5, token_scale=0.5))
    bias = graph.node_biases[rows]
    assert torch.allclose(half, bias + graph.adjacency_matrix[rows].sum(1) / 2, atol=1e-10)
    assert torch.allclose(full, bias + graph.adjacency_matrix[rows].sum(1), atol=1e-10)
