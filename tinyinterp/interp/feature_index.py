"""Feature index: the neuron index over the features of one sparse dictionary (SAE or transcoder).

Built by the one index pass (:func:`~tinyinterp.interp.neuron_index.build_unit_index`) with a
:class:`~tinyinterp.interp.units.FeatureUnits` source: hooks on the dictionary's ``hook_in`` only (the
forward stops after that block), each batch's activations encoded by the dictionary, and the same
top-k / running stats / histogram with per-bin examples / most-negative / logit-effect state as for
neurons, with the same fixed memory (``d_sae`` units instead of ``n_layers x d_mlp``) and resume.

On disk: ``<dictionary dir>/index/`` (:func:`tinyinterp.runs.layout.feature_index_dir`) holds exactly the
neuron index's files (``index.safetensors``, ``meta.json``, ``tokenizer.json``, ``progress.safetensors``
while building, ``purity.json`` from ``tinyinterp analyze features``); ``meta.json`` adds
``"units": "features"``, ``"dictionary"`` (the dictionary folder, relative to the index folder),
``dictionary_kind``, ``hook_in``, ``hook_out``, ``d_sae``, ``dict_k``. Layer is always 0 and the
"neuron" of every query is the feature id: ``n_layers`` is 1 and ``d_mlp`` is ``d_sae``.

Logit effects of feature ``i``: its decoder row ``W_dec[i]`` (raw units at ``hook_out``, the output
scale folded in) through ``ln_final`` (centred, weight multiplied, scale frozen) and ``W_U``, exactly
the neuron code's direct path (:func:`~tinyinterp.interp.neuron_logits.direction_logit_effects`);
only for dictionaries that write the residual stream.

    >>> index = build_feature_index(model, corpus, dict_dir)           # -> FeatureIndex
    >>> index = FeatureIndex.load(dict_dir)                            # the dictionary folder or its index/
    >>> index.top_examples(0, feature, k=5, model=model); index.logit_effects(0, feature)
    >>> neuron_purity(index)                                           # role purity of every feature
"""

from __future__ import annotations

from pathlib import Path

from tinyinterp.errors import DataError
from tinyinterp.interp.neuron_index import INDEX_CLASSES, META_FILE, NeuronIndex, NeuronIndexConfig, build_unit_index
from tinyinterp.interp.units import UNITS_FEATURES, FeatureUnits
from tinyinterp.runs.layout import feature_index_dir


class FeatureIndex(NeuronIndex):
    """A built feature index: every :class:`NeuronIndex` query, with layer 0 and the feature id as neuron."""

    what = "feature index"
    build_command = "tinyinterp analyze features RUN --dict DIR"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._units: FeatureUnits | None = None

    @classmethod
    def load(cls, path: str | Path, corpus=None, tokenizer=None) -> "FeatureIndex":
        """Load ``<dictionary dir>/index`` (pass the dictionary folder or the index folder itself)."""
        path = Path(path)
        if not (path / META_FILE).is_file() and (feature_index_dir(path) / META_FILE).is_file():
            path = feature_index_dir(path)
        if not (path / META_FILE).is_file():
            raise DataError(f"{path}: no feature index; run `{cls.build_command}` first")
        index = super().load(path, corpus=corpus, tokenizer=tokenizer)
        if index.meta.get("units") != UNITS_FEATURES:
            raise DataError(f"{path}: this is a neuron index, not a feature index; load it with NeuronIndex.load")
        return index

    @property
    def n_features(self) -> int:
        return self.d_mlp

    @property
    def dictionary_dir(self) -> Path:
        """The dictionary folder this index was built from (``meta.json`` records it relative to the index)."""
        return (self.path / self.meta.get("dictionary", "..")).resolve()

    def unit_source(self, model) -> FeatureUnits:
        """The dictionary's features on ``model`` (loaded once per model; one-line error if it does not fit)."""
        if self._units is None or self._units.model is not model:
            where = self.dictionary_dir
            if not where.is_dir():
                raise DataError(f"{self.path / META_FILE}: dictionary {self.meta.get('dictionary')!r} not found")
            self._units = FeatureUnits.load(where, model)
        return self._units


INDEX_CLASSES[UNITS_FEATURES] = FeatureIndex


def build_feature_index(model, corpus, dictionary_dir: str | Path, config: NeuronIndexConfig | None = None,
                        out_dir: str | Path | None = None, progress: bool = True,
                        max_shards: int | None = None) -> FeatureIndex | None:
    """Index the features of the dictionary in ``dictionary_dir`` over ``corpus`` into ``out_dir``
    (default ``<dictionary_dir>/index``); resumable like the neuron index (None while paused)."""
    dictionary_dir = Path(dictionary_dir)
    units = FeatureUnits.load(dictionary_dir, model)
    out = Path(out_dir) if out_dir is not None else feature_index_dir(dictionary_dir)
    index = build_unit_index(model, corpus, out, units, config, progress=progress, max_shards=max_shards,
                             index_cls=FeatureIndex, desc="feature index")
    if index is not None:
        index._units = units
    return index
