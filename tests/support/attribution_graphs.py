"""Hand-made :class:`~tinyinterp.attribution.graph.AttributionGraph` objects, for pruning/JSON/prediction tests.

:func:`make_graph` fills the dataclass from a dense adjacency matrix in the shared node order
``[features, errors (layer * n_pos + pos), embeddings, logits]`` (biases and values zero);
:func:`random_dag` draws one whose edges only go forwards (embeddings -> layer 0 -> ... -> logits, never to an earlier position), as in
a real graph. :func:`hand_graph` is the 4-node graph whose influences the tests compute by hand.
"""

from __future__ import annotations

import numpy as np
import torch

from tinyinterp.attribution.graph import AttributionGraph


def make_graph(adjacency, *, features, n_layers, input_tokens, logit_tokens, logit_probabilities,
               activations=None, input_string="hand-made", model_name="test-model", scan="test-scan"):
    """``features``: [(layer, pos, feature id)] of the feature nodes, in node order."""
    n_features = len(features)
    n_nodes = len(adjacency)
    values = dict(
        input_string=input_string,
        input_tokens=torch.tensor(input_tokens, dtype=torch.long),
        active_features=torch.tensor(features, dtype=torch.long).reshape(n_features, 3),
        activation_values=torch.tensor(activations if activations is not None else [1.0] * n_features,
                                       dtype=torch.float32),
        selected_features=torch.arange(n_features, dtype=torch.long),
        adjacency_matrix=torch.as_tensor(np.asarray(adjacency, dtype=np.float32)),
        logit_tokens=torch.tensor(logit_tokens, dtype=torch.long),
        logit_probabilities=torch.tensor(logit_probabilities, dtype=torch.float32),
        n_layers=n_layers, model_name=model_name, scan=scan,
        node_biases=torch.zeros(n_nodes), node_values=torch.zeros(n_nodes),
    )
    return AttributionGraph(**values)


def hand_graph():
    """Nodes [f0 (L0, pos 0), err(L0, pos 0), emb 0, logit 0]; edges emb->f0 2, emb->err 0.5,
    f0->logit 3, err->logit -1, emb->logit 1. Normalised logit row (3, 1, 1)/5, so with p = 1:
    influence f0 = 0.6, err = 0.2, emb = 0.2 + 0.6 + 0.2 = 1.0."""
    A = np.zeros((4, 4))
    A[0, 2] = 2.0
    A[1, 2] = 0.5
    A[3, 0], A[3, 1], A[3, 2] = 3.0, -1.0, 1.0
    return make_graph(A, features=[(0, 0, 7)], n_layers=1, input_tokens=[5], logit_tokens=[9],
                      logit_probabilities=[1.0], activations=[1.5])


def random_dag(rng: np.random.Generator, n_features: int, n_layers: int, n_pos: int, n_logits: int,
               density: float = 0.5):
    """A random graph in the shared layout whose edges go forwards in layer and never back in position."""
    features = [(int(rng.integers(n_layers)), int(rng.integers(n_pos)), int(rng.integers(100))) for _ in range(n_features)]
    features = sorted(set(features))
    n_features = len(features)
    rank, pos = [], []
    for layer, p, _ in features:
        rank.append(layer + 1), pos.append(p)
    for layer in range(n_layers):
        for p in range(n_pos):
            rank.append(layer + 1), pos.append(p)
    for p in range(n_pos):
        rank.append(0), pos.append(p)
    for _ in range(n_logits):
        rank.append(n_layers + 1), pos.append(n_pos - 1)
    rank, pos = np.array(rank), np.array(pos)
    n = len(rank)
    allowed = (rank[None, :] < rank[:, None]) & (pos[None, :] <= pos[:, None])  # [target, source]
    A = np.where(allowed & (rng.random((n, n)) < density), rng.normal(size=(n, n)), 0.0)
    probs = rng.random(n_logits) + 0.05
    probs = probs / probs.sum() * 0.95
    return make_graph(A, features=features, n_layers=n_layers, input_tokens=list(rng.integers(50, size=n_pos)),
                      logit_tokens=list(range(n_logits)), logit_probabilities=list(probs),
                      activations=list(rng.random(n_features) + 0.1))
