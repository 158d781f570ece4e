"""Automated neuron explanations scored by simulation (explain → simulate → score), after Bills et al. 2023.

See ``tinyinterp/explain/AGENTS.md``. Public API::

    from tinyinterp.explain import ExplainRunner, ExplainRunConfig, RecordConfig, load_explanations, score_summary
    summary = ExplainRunner(model, index, ExplainRunConfig(explainer="baseline"), out_dir).run()
    frame = load_explanations(run_dir)          # one row per (explainer, neuron): explanation, score, ...
"""

from tinyinterp.explain.records import ActivationRecord, NeuronRecords, RecordBuilder, RecordConfig, normalize
from tinyinterp.explain.results import explanations_dir, load_explanations, score_summary
from tinyinterp.explain.runner import ExplainRunConfig, ExplainRunner, select_neurons
from tinyinterp.explain.scoring import Scores, correlation, score_simulations

__all__ = [
    "ActivationRecord", "ExplainRunConfig", "ExplainRunner", "NeuronRecords", "RecordBuilder", "RecordConfig",
    "Scores", "correlation", "explanations_dir", "load_explanations", "normalize", "score_simulations",
    "score_summary", "select_neurons",
]
