"""Interpretability core: neuron index, token categories and purity, head classes, model comparison.

See ``tinyinterp/interp/AGENTS.md`` for the public API and the on-disk layout.
"""

from tinyinterp.interp.categories import CATEGORIES, PurityResult, TokenCategorizer, neuron_purity
from tinyinterp.interp.compare import ComparisonResult, compare
from tinyinterp.interp.heads import HeadConfig, HeadResult, HeadThresholds, analyze_heads
from tinyinterp.interp.neuron_index import NeuronIndex, NeuronIndexConfig, build_neuron_index
from tinyinterp.interp.summary import summarize

__all__ = [
    "CATEGORIES", "ComparisonResult", "HeadConfig", "HeadResult", "HeadThresholds", "NeuronIndex",
    "NeuronIndexConfig", "PurityResult", "TokenCategorizer", "analyze_heads", "build_neuron_index",
    "compare", "neuron_purity", "summarize",
]
