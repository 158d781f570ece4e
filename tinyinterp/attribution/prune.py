"""Which nodes and edges of an attribution graph matter for the chosen logits (circuit-tracer's pruning).

The method (Ameisen et al. 2025, §"Pruning"; circuit-tracer's ``graph.prune_graph``):

1. **Normalised adjacency** ``Â = |A| / rowsum(|A|)``: row t says which fraction of target t's
   total absolute input comes from each source. Rows are targets, columns sources.
2. **Indirect influence** of every node on the logits: ``w · (Â + Â² + Â³ + …) = w · ((I − Â)⁻¹ − I)``
   with ``w`` = the logit nodes' probabilities (zero elsewhere). ``(Âⁿ)[t, s]`` sums, over all
   paths of n edges from s to t, the product of the normalised edge weights, so a node's influence
   is the probability-weighted fraction of the logits' input that flows through it along any path.
   The graph is acyclic (edges only go forwards in layer/position), so ``Â`` is nilpotent and the
   series ends after at most ``n_nodes`` terms; it is summed as products of a vector with ``Â``.
3. **Node pruning**: keep the most influential nodes that together hold ``node_threshold`` of the
   total influence (sorted, cumulative). Token embeddings and logits are always kept.
4. **Edge pruning** on the graph of kept nodes: an edge's score is its normalised weight times its
   target's influence (plus the target's own logit weight); keep the strongest edges that hold
   ``edge_threshold`` of the total edge score. Then feature/error nodes without a kept outgoing edge
   and features without a kept incoming edge are dropped, repeatedly, until nothing changes.

Defaults (0.8, 0.98) are circuit-tracer's. :func:`top_paths` reads paths off the same normalised
weights: a path's *score* is its logit's probability times the product of its normalised edge
weights, so the scores of all paths leaving a node sum to that node's influence (on that logit).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from tinyinterp.attribution.nodes import GraphError, describe, layout, node_ref

log = logging.getLogger(__name__)

DEFAULT_NODE_THRESHOLD = 0.8
DEFAULT_EDGE_THRESHOLD = 0.98


def normalize_adjacency(matrix: torch.Tensor) -> torch.Tensor:
    """``|A|`` with each row divided by its sum (rows that sum to zero stay zero)."""
    absolute = matrix.abs()
    return absolute / absolute.sum(dim=1, keepdim=True).clamp(min=1e-10)


def indirect_influence(normalized: torch.Tensor, logit_weights: torch.Tensor) -> torch.Tensor:
    """``logit_weights · (Â + Â² + …)``: every node's total influence on the weighted logits."""
    n = normalized.shape[0]
    term = logit_weights @ normalized
    total = term.clone()
    for _ in range(n + 1):  # an acyclic graph's Â is nilpotent: Âⁿ = 0
        if not term.any():
            return total
        term = term @ normalized
        total += term
    raise GraphError(f"the graph's adjacency matrix ({n} nodes) has a cycle: influence does not converge")


def influence_matrix(normalized: torch.Tensor) -> torch.Tensor:
    """``(I − Â)⁻¹ − I`` in closed form (float64): entry [t, s] = the summed path products from s to t."""
    eye = torch.eye(normalized.shape[0], dtype=torch.float64)
    return torch.linalg.inv(eye - normalized.double()) - eye


def logit_weights(graph) -> torch.Tensor:
    """A node vector: the logit nodes' probabilities, zero elsewhere."""
    lay = layout(graph)
    weights = torch.zeros(lay.n_nodes, dtype=graph.adjacency_matrix.dtype)
    weights[lay.logit_start:] = torch.as_tensor(graph.logit_probabilities, dtype=weights.dtype)
    return weights


def node_influence(graph) -> torch.Tensor:
    return indirect_influence(normalize_adjacency(graph.adjacency_matrix), logit_weights(graph))


def edge_influence(matrix: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Score of each edge [target, source]: its normalised weight × (target influence + target logit weight)."""
    normalized = normalize_adjacency(matrix)
    through = indirect_influence(normalized, weights) + weights
    return normalized * through[:, None]


def find_threshold(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """The smallest score among the largest scores that together reach ``fraction`` of the total."""
    ordered = torch.sort(scores.flatten(), descending=True).values
    total = ordered.sum()
    if total <= 0:
        return ordered[0]  # nothing carries influence: keep everything (every score is 0)
    cumulative = torch.cumsum(ordered, dim=0) / total
    index = int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype)).item())
    return ordered[min(index, len(ordered) - 1)]


def _check_threshold(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise GraphError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value!r}")


@dataclass
class PruneResult:
    node_mask: torch.Tensor
    """(n_nodes,) bool: kept nodes."""
    edge_mask: torch.Tensor
    """(n_nodes, n_nodes) bool, [target, source]: kept edges."""
    node_influence: torch.Tensor
    """(n_nodes,) each node's indirect influence on the weighted logits (before pruning)."""
    cumulative_scores: torch.Tensor
    """(n_nodes,) share of the total influence held by the nodes at least as influential (circuit-tracer's
    ``influence`` field in the JSON): small = among the most important."""
    node_threshold: float
    edge_threshold: float

    @property
    def n_nodes(self) -> int:
        return int(self.node_mask.sum())

    @property
    def n_edges(self) -> int:
        return int(self.edge_mask.sum())


def prune_graph(graph, node_threshold: float = DEFAULT_NODE_THRESHOLD,
                edge_threshold: float = DEFAULT_EDGE_THRESHOLD) -> PruneResult:
    """Node then edge pruning by influence on the chosen logits (module docstring)."""
    _check_threshold("node_threshold", node_threshold)
    _check_threshold("edge_threshold", edge_threshold)
    lay = layout(graph)
    matrix = graph.adjacency_matrix
    if tuple(matrix.shape) != (lay.n_nodes, lay.n_nodes):
        raise GraphError(f"adjacency matrix is {tuple(matrix.shape)}, the graph's layout has {lay.n_nodes} nodes")
    weights = logit_weights(graph)
    influence = indirect_influence(normalize_adjacency(matrix), weights)

    node_mask = influence >= find_threshold(influence, node_threshold)
    node_mask[lay.embed_start:] = True  # tokens and logits are always kept
    pruned = matrix.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0

    edge_scores = edge_influence(pruned, weights)
    edge_mask = edge_scores >= find_threshold(edge_scores, edge_threshold)
    edge_mask &= pruned != 0  # a zero edge is no edge, whatever the threshold

    inner = slice(0, lay.embed_start)  # features and errors
    while True:  # dropping a node can strand others: at most n_layers + 1 rounds
        before = node_mask.clone()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[inner] &= edge_mask[:, inner].any(0)  # features and errors need an outgoing edge
        node_mask[: lay.n_features] &= edge_mask[: lay.n_features].any(1)  # features an incoming one
        if torch.equal(before, node_mask):
            break

    ordered, order = torch.sort(influence, descending=True)
    total = ordered.sum()
    cumulative = torch.cumsum(ordered, 0) / (total if total > 0 else 1)
    cumulative_scores = torch.zeros_like(influence)
    cumulative_scores[order] = cumulative
    log.info("pruned graph: %d -> %d nodes, %d -> %d edges", lay.n_nodes, int(node_mask.sum()),
             int((matrix != 0).sum()), int(edge_mask.sum()))
    return PruneResult(node_mask, edge_mask, influence, cumulative_scores, float(node_threshold),
                       float(edge_threshold))


# -- paths ------------------------------------------------------------------------------------------


@dataclass
class GraphPath:
    nodes: list[int]
    """Node indices from a token embedding to the logit."""
    score: float
    """Logit probability × product of the normalised edge weights along the path (module docstring)."""
    sign: int
    """Product of the signs of the raw edges: +1 the path pushes the logit up, -1 down."""
    weights: list[float]
    """The raw edge weights (direct effects) along the path."""
    share: float
    """Product of the normalised edge weights: the fraction of the logit's absolute input along this path."""

    def describe(self, graph, tokenizer=None, clerps: dict | None = None) -> str:
        """``+60.00%  emb 'Lily' @3 -> L1 #42 @5 "names" -> logit ' she'`` (``clerps``: {(layer, feature): text})."""
        lay = layout(graph)
        clerps = clerps or {}

        def name(i: int) -> str:
            ref = node_ref(graph, i, lay)
            text = clerps.get((ref.layer, ref.feature)) if ref.feature is not None else None
            return describe(ref, tokenizer) + (f' "{text}"' if text else "")

        names = " -> ".join(name(i) for i in self.nodes)
        return f"{'+' if self.sign > 0 else '-'}{100 * self.share:.2f}%  {names}"


def _topological_order(edges: torch.Tensor) -> list[int]:
    """Sources before targets (Kahn); ``edges`` is [target, source] bool."""
    n = edges.shape[0]
    indegree = edges.sum(1).tolist()
    sources_of = [[] for _ in range(n)]
    targets, srcs = edges.nonzero(as_tuple=True)
    for t, s in zip(targets.tolist(), srcs.tolist()):
        sources_of[s].append(t)
    ready = [i for i in range(n) if indegree[i] == 0]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for t in sources_of[node]:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    if len(order) != n:
        raise GraphError("the graph's edges have a cycle: no paths can be ranked")
    return order


def top_paths(graph, k: int = 5, logit: int = 0, prune: PruneResult | None | bool = True) -> list[GraphPath]:
    """The ``k`` highest-scoring paths from any token embedding to logit node ``logit`` (0 = the top logit).

    ``prune``: True prunes with the defaults, a :class:`PruneResult` uses its kept edges, False or
    None searches the whole graph. Scores use the normalised weights of the whole graph, so they are
    comparable between pruned and unpruned searches. Exact: a dynamic programme over the DAG keeps
    the k best partial paths to the logit at every node.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GraphError(f"k must be a positive integer, got {k!r}")
    lay = layout(graph)
    if not 0 <= logit < lay.n_logits:
        raise GraphError(f"logit {logit} is not one of the graph's {lay.n_logits} logit nodes")
    matrix = graph.adjacency_matrix
    normalized = normalize_adjacency(matrix).double()
    if prune is True:
        prune = prune_graph(graph)
    edges = prune.edge_mask.clone() if isinstance(prune, PruneResult) else matrix != 0
    edges &= matrix != 0
    target = lay.logit_start + logit
    probability = float(graph.logit_probabilities[logit])
    # best[v]: up to k (log score, path from v to the logit) — log space keeps long paths' products exact enough
    best: dict[int, list[tuple[float, list[int]]]] = {target: [(math.log(probability) if probability > 0 else -math.inf,
                                                                  [target])]}
    for node in reversed(_topological_order(edges)):
        if node == target or node >= lay.logit_start:
            continue
        candidates = []
        for t in edges[:, node].nonzero(as_tuple=True)[0].tolist():
            if t in best:
                step = math.log(float(normalized[t, node]))
                candidates.extend((s + step, [node, *p]) for s, p in best[t])
        if candidates:
            candidates.sort(key=lambda c: -c[0])
            best[node] = candidates[:k]
    found = [c for pos in range(lay.n_pos) for c in best.get(lay.embed_start + pos, [])]
    found.sort(key=lambda c: -c[0])
    paths = []
    for log_score, nodes in found[:k]:
        raw = [float(matrix[t, s]) for s, t in zip(nodes, nodes[1:])]
        sign = -1 if sum(w < 0 for w in raw) % 2 else 1
        score = math.exp(log_score)
        paths.append(GraphPath(nodes, score, sign, raw, score / probability if probability > 0 else 0.0))
    return paths


# -- table ----------------------------------------------------------------------------------------


def graph_frame(graph, prune: PruneResult | None = None, tokenizer=None):
    """One row per node: kind, layer, pos, feature, token, activation, influence, cumulative share, kept."""
    import pandas as pd

    from tinyinterp.attribution.nodes import node_refs

    prune = prune or prune_graph(graph)
    influence = prune.node_influence.tolist()
    rows = []
    for ref in node_refs(graph):
        activation = (float(graph.activation_values[ref.active_index]) if ref.active_index is not None else math.nan)
        rows.append({"node": ref.index, "kind": ref.kind, "layer": ref.layer, "pos": ref.pos, "feature": ref.feature,
                     "token": ref.token, "label": describe(ref, tokenizer), "activation": activation,
                     "influence": influence[ref.index], "cumulative_influence": float(prune.cumulative_scores[ref.index]),
                     "kept": bool(prune.node_mask[ref.index])})
    frame = pd.DataFrame(rows).set_index("node")
    return frame.astype({"layer": "Int64", "feature": "Int64", "token": "Int64"})
