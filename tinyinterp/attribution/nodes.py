"""What each row/column of an attribution graph's adjacency matrix is: one :class:`NodeRef` per node.

The node order is circuit-tracer's (and :class:`~tinyinterp.attribution.graph.AttributionGraph`'s):
``[selected features, error nodes (layer * n_pos + pos), token embeddings (n_pos), logits]``.
Everything that names nodes (pruning's "always keep", the JSON writer, the table, the paths) reads
the layout here, so there is one definition of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyinterp.errors import TinyinterpError

FEATURE, ERROR, EMBEDDING, LOGIT = "feature", "error", "embedding", "logit"


class GraphError(TinyinterpError):
    """An attribution graph (in memory or a JSON file) that cannot be used."""


@dataclass(frozen=True)
class NodeRef:
    index: int
    """Row/column in the adjacency matrix."""
    kind: str
    """``feature``, ``error``, ``embedding`` or ``logit``."""
    layer: int | None
    pos: int
    feature: int | None = None
    """Transcoder feature id (feature nodes)."""
    token: int | None = None
    """Vocabulary id: the input token (embedding nodes) or the predicted token (logit nodes)."""
    active_index: int | None = None
    """Row of ``active_features`` (feature nodes)."""


@dataclass(frozen=True)
class Layout:
    n_features: int
    n_layers: int
    n_pos: int
    n_logits: int

    @property
    def error_start(self) -> int:
        return self.n_features

    @property
    def embed_start(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_start(self) -> int:
        return self.embed_start + self.n_pos

    @property
    def n_nodes(self) -> int:
        return self.logit_start + self.n_logits


def layout(graph) -> Layout:
    return Layout(int(len(graph.selected_features)), int(graph.n_layers), int(len(graph.input_tokens)),
                  int(len(graph.logit_tokens)))


def node_ref(graph, index: int, lay: Layout | None = None) -> NodeRef:
    lay = lay or layout(graph)
    if not 0 <= index < lay.n_nodes:
        raise IndexError(f"node {index} is outside the graph's {lay.n_nodes} nodes")
    if index < lay.error_start:
        active = int(graph.selected_features[index])
        layer, pos, feature = (int(v) for v in graph.active_features[active].tolist())
        return NodeRef(index, FEATURE, layer, pos, feature=feature, active_index=active)
    if index < lay.embed_start:
        layer, pos = divmod(index - lay.error_start, lay.n_pos)
        return NodeRef(index, ERROR, layer, pos)
    if index < lay.logit_start:
        pos = index - lay.embed_start
        return NodeRef(index, EMBEDDING, None, pos, token=int(graph.input_tokens[pos]))
    i = index - lay.logit_start
    return NodeRef(index, LOGIT, None, lay.n_pos - 1, token=int(graph.logit_tokens[i]))


def node_refs(graph) -> list[NodeRef]:
    lay = layout(graph)
    return [node_ref(graph, i, lay) for i in range(lay.n_nodes)]


def token_text(tokenizer, token: int) -> str:
    if tokenizer is None:
        return f"#{token}"
    return tokenizer.token_str(token) if hasattr(tokenizer, "token_str") else tokenizer.decode([token])


def describe(ref: NodeRef, tokenizer=None) -> str:
    """A short readable name: ``L1 #42 @3``, ``err L1 @3``, ``emb 'Lily' @3``, ``logit ' Lily'``."""
    if ref.kind == FEATURE:
        return f"L{ref.layer} #{ref.feature} @{ref.pos}"
    if ref.kind == ERROR:
        return f"err L{ref.layer} @{ref.pos}"
    if ref.kind == EMBEDDING:
        return f"emb {token_text(tokenizer, ref.token)!r} @{ref.pos}"
    return f"logit {token_text(tokenizer, ref.token)!r}"
