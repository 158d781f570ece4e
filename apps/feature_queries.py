"""Cached queries on a dictionary's feature index (``<dictionary>/index/``) and on the dictionary itself.

The feature index is the neuron index's format over the dictionary's features (``"units": "features"``,
layer 0, "neuron" = feature id; :class:`tinyinterp.interp.FeatureIndex`), so the neuron page's cached
queries (:mod:`apps.queries`, :mod:`apps.loaders`) answer it unchanged once given the index folder's key;
this module adds what differs: which folder (:func:`apps.dictionary_data.dictionary_dir`, the one gate for a
``?dict=`` name), that the dictionary ``meta.json`` names is the folder the index sits in (a path read from
a data file: resolved inside the runs root, never opened outside it), the feature table, and the model +
dictionary on typed text. Every cache is keyed by resolved paths and modification times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from apps import dictionary_data, loaders, queries
from apps.runs_root import confine_folder
from tinyinterp.dictionaries.formats import CFG_FILE, WEIGHTS_FILE
from tinyinterp.errors import DataError
from tinyinterp.interp.neuron_index import INDEX_FILE, META_FILE
from tinyinterp.runs.layout import feature_explanations_dir, feature_index_dir

UNITS_FEATURES = "features"


def index_dir(run: Path, name: str) -> Path:
    return feature_index_dir(dictionary_data.dictionary_dir(run, name))


def has_index(run: Path, name: str) -> bool:
    return (index_dir(run, name) / META_FILE).is_file()


def default_dictionary(run: Path, names: list[str]) -> str:
    """The dictionary a page opens first: the first with a feature index (else the first one)."""
    for name in names:
        try:
            if has_index(run, name):
                return name
        except Exception:  # refused or broken: the page says so when it is picked
            continue
    return names[0]


def index_key(run: Path, name: str) -> tuple[str, float]:
    """Cache key of the dictionary's feature index folder (its files checked against the root)."""
    return loaders.folder_key(index_dir(run, name), META_FILE, INDEX_FILE)


def feature_index(run: Path, name: str):
    index = loaders._neuron_index(*index_key(run, name))
    if index.meta.get("units") != UNITS_FEATURES:
        raise DataError(f"{name}/index/{META_FILE}: not a feature index (units {index.meta.get('units')!r}); "
                        "rebuild it with `tinyinterp analyze features RUN --dict DIR`")
    return index


@st.cache_resource(show_spinner=False, max_entries=8)
def _index_with_corpus(path: str, version: float):
    """The feature index with its corpus opened inside the runs root, after checking that the dictionary its
    ``meta.json`` names is the folder the index sits in (and lies inside the root)."""
    from tinyinterp.interp import FeatureIndex

    index = loaders._neuron_index(path, version)
    named = confine_folder(index.dictionary_dir)  # every file a query loads from it: inside the root
    if named != Path(path).parent.resolve():
        raise DataError(f"{Path(path).parent.name}/index/{META_FILE}: built from dictionary "
                        f"{index.meta.get('dictionary')!r}, not the folder it is in; rebuild it with "
                        "`tinyinterp analyze features RUN --dict DIR`")
    corpus = loaders._index_corpus(path, version)  # confined to the runs root, None when absent
    return FeatureIndex(index.path, index.meta, index.tensors, corpus=corpus, tokenizer=index.tokenizer)


def corpus_missing(run: Path, name: str) -> bool:
    try:
        return _index_with_corpus(*index_key(run, name)).corpus is None
    except Exception:
        return True


def _key(run: Path, name: str) -> tuple[str, str, float, float]:
    """(run, index folder, index version, model version): the key of queries that need index and model."""
    run_path, model_version = loaders.model_key(run)
    path, version = index_key(run, name)
    return run_path, path, version, model_version


def _examples(examples) -> list[dict]:
    return [dict(ex.__dict__) for ex in examples]


def _with_model(run: str, path: str, version: float):
    index = _index_with_corpus(path, version)
    model = loaders.model_for(Path(run))
    index.unit_source(model)  # the dictionary must fit the model: one line (hook missing, other widths)
    if index.corpus is None:
        raise DataError(f"{Path(path).parent.name}/index/{META_FILE}: the corpus it was built on "
                        f"({index.meta.get('corpus')!r}) is not under the runs root")
    return index, model


@st.cache_data(show_spinner="Finding top examples…")
def _top_examples(run: str, path: str, version: float, model_version: float, feature: int, k: int,
                  context: int) -> list[dict]:
    index, model = _with_model(run, path, version)
    return _examples(index.top_examples(0, feature, k=k, context=context, model=model))


def top_examples(run: Path, name: str, feature: int, k: int, context: int) -> list[dict]:
    return _top_examples(*_key(run, name), feature, k, context)


@st.cache_data(show_spinner="Finding quantile examples…")
def _quantile_examples(run: str, path: str, version: float, model_version: float, feature: int,
                       context: int) -> list[dict]:
    index, model = _with_model(run, path, version)
    return _examples(index.quantile_examples(0, feature, context=context, model=model))


def quantile_examples(run: Path, name: str, feature: int, context: int) -> list[dict]:
    return _quantile_examples(*_key(run, name), feature, context)


@st.cache_data(show_spinner="Finding the most negative examples…")
def _negative_examples(run: str, path: str, version: float, model_version: float, feature: int, k: int,
                       context: int) -> list[dict]:
    index, model = _with_model(run, path, version)
    return _examples(index.negative_examples(0, feature, k=k, context=context, model=model))


def negative_examples(run: Path, name: str, feature: int, k: int, context: int) -> list[dict]:
    return _negative_examples(*_key(run, name), feature, k, context)


def activation_histogram(run: Path, name: str, feature: int) -> pd.DataFrame:
    return queries._activation_histogram(*index_key(run, name), 0, feature)


def logit_effects(run: Path, name: str, feature: int, n: int) -> dict[str, pd.DataFrame]:
    return queries._logit_effects(*index_key(run, name), 0, feature, n)


def stats_frame(run: Path, name: str) -> pd.DataFrame:
    return loaders._stats_frame(*index_key(run, name))


def token_histogram(run: Path, name: str, feature: int) -> dict:
    return feature_index(run, name).token_histogram(0, feature)


# ----- explanations (same format as the neurons', in <dictionary>/explanations/) ----------------------


def explanations_folder(run: Path, name: str) -> Path:
    return feature_explanations_dir(dictionary_data.dictionary_dir(run, name))


# ----- the feature table ------------------------------------------------------------------------------


def feature_table(run: Path, name: str, explainer: str | None) -> pd.DataFrame:
    """One row per feature: density (share of indexed tokens it is active on), L0 share (its share of all
    active (token, feature) pairs: density / Σ density), max, mean, top tokens, and explanation + score
    where the dictionary has them."""
    folder = explanations_folder(run, name)
    return _feature_table(*index_key(run, name), str(folder), queries.explanations_version_in(folder), explainer)


@st.cache_data(show_spinner="Building the feature table…")
def _feature_table(path: str, version: float, explanations: str, expl_version: float,
                   explainer: str | None) -> pd.DataFrame:
    index = loaders._neuron_index(path, version)
    frame = index.stats_frame().rename(columns={"neuron": "feature", "frac_active": "density"})
    total = float(frame["density"].sum())
    frame["L0 share"] = frame["density"] / total if total > 0 else np.nan
    frame["top_tokens"] = [" | ".join(index.top_token_strs(0, int(f), 5)) for f in frame.feature]
    expl = queries.explanations_with_notes_in(Path(explanations))[0] if expl_version else None
    if expl is not None and not expl.empty:
        best = queries.best_explanations(expl, explainer)
        best = best[best.layer == 0][["neuron", "score", "explanation", "explainer"]].astype({"neuron": int})
        frame = frame.merge(best.rename(columns={"neuron": "feature"}), on="feature", how="left")
    else:
        frame = frame.assign(score=np.nan, explanation=None, explainer=None)
    return frame[["feature", "density", "L0 share", "max", "mean", "score", "explanation", "top_tokens", "explainer"]]


# ----- the dictionary itself: the model + dictionary on typed text ------------------------------------


def dictionary_key(run: Path, name: str) -> tuple[str, float]:
    return loaders.folder_key(dictionary_data.dictionary_dir(run, name), CFG_FILE, WEIGHTS_FILE)


@st.cache_resource(show_spinner="Loading the dictionary…", max_entries=8)
def _coder(path: str, version: float):
    from tinyinterp.dictionaries import load_dictionary

    return load_dictionary(path).eval()


def coder(run: Path, name: str):
    return _coder(*dictionary_key(run, name))


@st.cache_data(show_spinner=False)
def _feature_activations(run: str, version: float, path: str, dict_version: float, text: str,
                         feature: int) -> tuple[list[str], list[float]]:
    from tinyinterp.interp import FeatureUnits
    from tinyinterp.interp.activations import sequence_activations

    model = loaders.load_model(run, version)
    units = FeatureUnits(_coder(path, dict_version), model, path)  # one line if it does not fit the model
    if not 0 <= feature < units.width:
        raise DataError(f"feature {feature}: the dictionary has features 0–{units.width - 1}")
    ids = model.tokenizer.encode(text)[: model.cfg.n_ctx]
    if not ids:
        return [], []
    hook = units.hook(0)
    (acts,) = sequence_activations(model, [ids], [hook], reduce=lambda _, a, batch: units.activations(0, a)[..., feature].cpu())
    return [model.tokenizer.token_str(i) for i in ids], acts[hook].tolist()


def feature_activations(run: Path, name: str, text: str, feature: int) -> tuple[list[str], list[float]]:
    """Token strings of ``text`` and one feature's activation on each (the model's forward, then the
    dictionary's encoder on its ``hook_in``)."""
    return _feature_activations(*loaders.model_key(run), *dictionary_key(run, name), text, feature)
