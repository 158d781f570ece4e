"""The attribution graph of one prompt: nodes, their values, and the direct-effect adjacency matrix.

Mirrors circuit-tracer 0.5's ``Graph``. Node order (rows = targets, columns = sources):

    [selected features | error nodes (layer * n_pos + pos) | token embeddings (n_pos) | logits (n_logits)]

``adjacency_matrix[t, s]`` is the direct effect of source ``s`` on target ``t`` in the frozen linear
replacement model: a feature's row holds the contributions to its pre-activation, a logit's row the
contributions to its centred (vocabulary-demeaned) logit; error and token rows are empty (they have no
inputs). Every target's row sum plus ``node_biases[t]`` equals ``node_values[t]``. Pruning, JSON,
interventions and the ``top_paths`` / ``to_frame`` / ``save`` helpers live in sibling modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinyinterp.attribution.nodes import EMBEDDING, ERROR, FEATURE, layout, node_ref


@dataclass
class AttributionGraph:
    input_string: str
    input_tokens: torch.Tensor
    """(n_pos,) long: the prompt's tokens (with BOS when it was prepended)."""
    active_features: torch.Tensor
    """(n_active, 3) long: [layer, pos, feature] of every non-zero transcoder feature."""
    activation_values: torch.Tensor
    """(n_active,): their activations."""
    selected_features: torch.Tensor
    """(n_selected,) long: indices into ``active_features`` of the features that are nodes."""
    adjacency_matrix: torch.Tensor
    """(n_nodes, n_nodes) float32 (float64 when attributed in float64): rows targets, columns sources."""
    logit_tokens: torch.Tensor
    """(n_logits,) long: vocabulary ids of the logit nodes."""
    logit_probabilities: torch.Tensor
    """(n_logits,): their probabilities under the model."""
    n_layers: int
    model_name: str
    scan: str
    """Identifier of the transcoder set."""
    node_biases: torch.Tensor
    """(n_nodes,): the constant term of each target in the linear model (positional embeddings, biases,
    transcoder ``b_dec``/``b_enc``, an excluded BOS position); 0 for error and token nodes."""
    node_values: torch.Tensor
    """(n_nodes,): each feature's pre-activation, each logit's centred logit (from the clean pass); for
    error and token nodes the norm of the vector they write."""
    logit_strings: list[str] | None = None
    """Readable text of each logit token (None without a tokenizer)."""

    @property
    def n_pos(self) -> int:
        return len(self.input_tokens)

    @property
    def n_selected(self) -> int:
        return len(self.selected_features)

    @property
    def n_logits(self) -> int:
        return len(self.logit_tokens)

    @property
    def n_nodes(self) -> int:
        return self.adjacency_matrix.shape[0]

    # Offsets of the node kinds: the one layout of the node order is tinyinterp.attribution.nodes.Layout.
    @property
    def error_offset(self) -> int:
        return layout(self).error_start

    @property
    def token_offset(self) -> int:
        return layout(self).embed_start

    @property
    def logit_offset(self) -> int:
        return layout(self).logit_start

    def error_node(self, layer: int, pos: int) -> int:
        return self.error_offset + layer * self.n_pos + pos

    def token_node(self, pos: int) -> int:
        return self.token_offset + pos

    def logit_node(self, i: int) -> int:
        return self.logit_offset + i

    def feature_node(self, layer: int, pos: int, feature: int) -> int | None:
        """The node index of an active, selected feature, or None."""
        f = self.active_features[self.selected_features]
        hit = ((f[:, 0] == layer) & (f[:, 1] == pos) & (f[:, 2] == feature)).nonzero()
        return int(hit[0, 0]) if len(hit) else None

    def node_label(self, node: int) -> str:
        """Short readable name of a node (``L1/p3/f17``, ``err L0/p2``, ``tok p0``, ``logit 'Lily'``)."""
        ref = node_ref(self, node)
        if ref.kind == FEATURE:
            return f"L{ref.layer}/p{ref.pos}/f{ref.feature}"
        if ref.kind == ERROR:
            return f"err L{ref.layer}/p{ref.pos}"
        if ref.kind == EMBEDDING:
            return f"tok p{ref.pos}"
        i = node - layout(self).logit_start
        text = self.logit_strings[i] if self.logit_strings else str(ref.token)
        return f"logit {text!r}"

    # -- thin delegations to the modules that own pruning, paths, tables and JSON ----------------------
    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98):
        """Influence pruning (:func:`tinyinterp.attribution.prune.prune_graph`; defaults circuit-tracer's)."""
        from tinyinterp.attribution.prune import prune_graph

        return prune_graph(self, node_threshold, edge_threshold)

    def top_paths(self, k: int = 5, logit: int = 0, prune=True):
        """The ``k`` strongest token-to-logit paths (:func:`tinyinterp.attribution.prune.top_paths`)."""
        from tinyinterp.attribution.prune import top_paths

        return top_paths(self, k, logit=logit, prune=prune)

    def to_frame(self, prune=None, tokenizer=None):
        """One row per node with activation and influence (:func:`tinyinterp.attribution.prune.graph_frame`)."""
        from tinyinterp.attribution.prune import graph_frame

        return graph_frame(self, prune, tokenizer)

    def save(self, path, slug: str | None = None, prune=None, tokenizer=None, clerps: dict | None = None):
        """Write circuit-tracer's graph JSON (:func:`tinyinterp.attribution.graph_json.save_graph_json`)."""
        from tinyinterp.attribution.graph_json import save_graph_json

        return save_graph_json(self, path, slug=slug, prune=prune, tokenizer=tokenizer, clerps=clerps)
