"""Attribution graphs: trace one next-token prediction through transcoder features.

    from tinyinterp.attribution import attribute, load_transcoder_set
    transcoders = load_transcoder_set("runs/demo/analysis/dictionaries/transcoders", model)
    graph = attribute(model, transcoders, "Lily and Tom went to the park. Lily gave the ball to")

MLPs are replaced by per-layer transcoders, attention patterns and LayerNorm scales are frozen from
the real forward pass, and an error node per (layer, position) keeps the real MLP output, so the
linearised replacement model reproduces the model's logits on this prompt. The graph's edges are the
direct linear effects between token embeddings, active features, error nodes and the top logits
(Ameisen et al. 2025, "Circuit Tracing"; the method of circuit-tracer's ``attribute``).
"""

from tinyinterp.attribution.attribute import attribute
from tinyinterp.attribution.graph import AttributionGraph
from tinyinterp.attribution.replacement import ReplacementModel
from tinyinterp.attribution.transcoders import TranscoderSet, load_transcoder_set

__all__ = ["AttributionGraph", "ReplacementModel", "TranscoderSet", "attribute", "load_transcoder_set"]
