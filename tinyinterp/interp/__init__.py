"""Interpretability core: neuron index (and the same index over dictionary features), token categories and purity, head classes, model comparison.

See ``tinyinterp/interp/AGENTS.md`` for the public API and the on-disk layout.
"""

from tinyinterp.interp.categories import CATEGORIES, PurityResult, TokenCategorizer, neuron_purity
from tinyinterp.interp.compare import ComparisonResult, compare
from tinyinterp.interp.feature_index import FeatureIndex, build_feature_index
from tinyinterp.interp.heads import HeadConfig, HeadResult, HeadThresholds, analyze_heads
from tinyinterp.interp.neuron_index import NeuronIndex, NeuronIndexConfig, build_neuron_index, build_unit_index
from tinyinterp.interp.units import FeatureUnits, NeuronUnits, UnitSource
from tinyinterp.interp.summary import summarize

__all__ = [
    "CATEGORIES", "ComparisonResult", "FeatureIndex", "FeatureUnits", "HeadConfig", "HeadResult", "HeadThresholds", "NeuronIndex",
    "NeuronIndexConfig", "NeuronUnits", "PurityResult", "TokenCategorizer", "UnitSource", "analyze_heads",
    "build_feature_index", "build_neuron_index", "build_unit_index",
    "compare", "neuron_purity", "summarize",
]
