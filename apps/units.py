"""What the unit panels (:mod:`apps.neuron_panels`) show, for MLP neurons or a dictionary's features.

The neuron page and the feature page draw the same panels (explanation + score, statistics, top
examples, top tokens, histogram, logit effects, quantile / most negative examples, own text) through
one code path; a *units* object says where each panel's data comes from and how the page names things:

- :class:`Neurons`: the run's neuron index (``analysis/neurons``), explanations in ``analysis/explanations``,
  ``blocks.{l}.mlp.hook_post`` on typed text (the loaders the neuron page always used);
- :class:`Features`: one dictionary's feature index (``<dictionary>/index``; layer 0, unit = feature id),
  explanations in ``<dictionary>/explanations``, the model + dictionary encoder on typed text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from apps import loaders, queries


def _features():
    """apps.feature_queries, imported when a feature page needs it (it pulls in the feature index)."""
    from apps import feature_queries

    return feature_queries


@dataclass(frozen=True)
class Neurons:
    """The run's MLP neurons."""

    run: Path
    noun = "neuron"
    signed = True  # GELU neurons go negative: the most negative examples mean something
    own_text_key = "neuron_own_text"
    index_file = "index.safetensors"
    logit_note = "W_out through ln_final (centred, scale frozen) and W_U; later layers ignored"

    def explain_command(self) -> str:
        return f"tinyinterp explain {self.run}"

    def explanations_version(self) -> float:
        return queries.explanations_version(self.run)

    def explanations(self) -> tuple[pd.DataFrame, tuple[str, ...]]:
        return queries.explanations_with_notes(self.run)

    def stats_frame(self) -> pd.DataFrame:
        return loaders.stats_frame(self.run)

    def top_examples(self, layer: int, unit: int, k: int, context: int) -> list[dict]:
        return loaders.neuron_top_examples(self.run, layer, unit, k, context)

    def histogram(self, layer: int, unit: int) -> pd.DataFrame:
        return queries.activation_histogram(self.run, layer, unit)

    def logit_effects(self, layer: int, unit: int, n: int) -> dict[str, pd.DataFrame]:
        return queries.logit_effects(self.run, layer, unit, n)

    def quantile_examples(self, layer: int, unit: int, context: int) -> list[dict]:
        return queries.quantile_examples(self.run, layer, unit, context)

    def negative_examples(self, layer: int, unit: int, k: int, context: int) -> list[dict]:
        return queries.negative_examples(self.run, layer, unit, k, context)

    def corpus_missing(self) -> bool:
        """Whether the index's corpus is missing or refused (e.g. it lies outside the runs root)."""
        try:
            return loaders._index_corpus(*loaders.index_key(self.run)) is None
        except Exception:
            return True

    def model(self):
        return loaders.model_for(self.run)

    def on_text(self, text: str, layer: int, unit: int) -> tuple[list[str], list[float]]:
        return loaders.neuron_activations(self.run, text, layer, unit)


@dataclass(frozen=True)
class Features:
    """The features of dictionary ``name`` (under ``analysis/dictionaries``) of the run."""

    run: Path
    name: str
    noun = "feature"
    signed = False  # TopK(ReLU(...)) features are never negative
    own_text_key = "feature_own_text"
    index_file = "index/index.safetensors"
    logit_note = "decoder direction through ln_final (centred, scale frozen) and W_U; later layers ignored"

    def explain_command(self) -> str:
        return f"tinyinterp explain {self.run} --dict {_features().dictionary_data.dictionary_dir(self.run, self.name)}"

    def explanations_version(self) -> float:
        return queries.explanations_version_in(_features().explanations_folder(self.run, self.name))

    def explanations(self) -> tuple[pd.DataFrame, tuple[str, ...]]:
        return queries.explanations_with_notes_in(_features().explanations_folder(self.run, self.name))

    def stats_frame(self) -> pd.DataFrame:
        return _features().stats_frame(self.run, self.name)

    def top_examples(self, layer: int, unit: int, k: int, context: int) -> list[dict]:
        return _features().top_examples(self.run, self.name, unit, k, context)

    def histogram(self, layer: int, unit: int) -> pd.DataFrame:
        return _features().activation_histogram(self.run, self.name, unit)

    def logit_effects(self, layer: int, unit: int, n: int) -> dict[str, pd.DataFrame]:
        return _features().logit_effects(self.run, self.name, unit, n)

    def quantile_examples(self, layer: int, unit: int, context: int) -> list[dict]:
        return _features().quantile_examples(self.run, self.name, unit, context)

    def negative_examples(self, layer: int, unit: int, k: int, context: int) -> list[dict]:
        return _features().negative_examples(self.run, self.name, unit, k, context)

    def corpus_missing(self) -> bool:
        return _features().corpus_missing(self.run, self.name)

    def model(self):
        return loaders.model_for(self.run)

    def on_text(self, text: str, layer: int, unit: int) -> tuple[list[str], list[float]]:
        return _features().feature_activations(self.run, self.name, text, unit)
