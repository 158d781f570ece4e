"""Cached loaders for the deeper views: the neuron table, the neuron page's distribution / logit / quantile
panels, find-by-word, explanations, head circuits and emergence across training.

Same rules as :mod:`apps.loaders` (whose loaders these build on): every value comes from a library's public
API (``NeuronIndex`` queries, ``tinyinterp.explain.load_explanations``, ``circuits.head_circuit``,
``EmergenceResult``), every cache is keyed by the modification time of the file it reads, and paths
arrive already checked against the runs root. Nothing here computes an analysis of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from apps import loaders
from tinyinterp import rundir
from tinyinterp.errors import TinyinterpError

EMERGENCE_SUBDIR = "emergence"  # tinyinterp.interp.emergence.EMERGENCE_SUBDIR (imported lazily below)
EXPLANATIONS_SUBDIR = "explanations"  # tinyinterp.explain.results.EXPLANATIONS_SUBDIR


# ----- explanations (tinyinterp.explain) -------------------------------------------------------------


def explanations_dir(run: Path) -> Path:
    return loaders.analysis_dir(run) / EXPLANATIONS_SUBDIR


def explanations_version(run: Path) -> float:
    """Newest modification time of the run's explanation files (0 when there are none)."""
    folder = explanations_dir(run)
    return max((loaders.mtime(p) for p in folder.glob("*.jsonl")), default=0.0) if folder.is_dir() else 0.0


@st.cache_data(show_spinner=False)
def explanations(run: str, version: float) -> pd.DataFrame:
    """Every finished explanation of the run (``tinyinterp.explain.load_explanations``), score numeric."""
    from tinyinterp.explain.results import load_explanations

    frame = load_explanations(run)
    return frame.assign(score=pd.to_numeric(frame["score"], errors="coerce"))


def best_explanations(frame: pd.DataFrame, explainer: str | None = None) -> pd.DataFrame:
    """One row per neuron: the chosen explainer's explanation, or the best-scored one of any explainer."""
    if explainer is not None:
        frame = frame[frame.explainer == explainer]
    ordered = frame.sort_values("score", ascending=False, na_position="last", kind="stable")
    return ordered.drop_duplicates(["layer", "neuron"]).reset_index(drop=True)


# ----- the neuron table -----------------------------------------------------------------------------


@st.cache_data(show_spinner="Building the neuron table…")
def neuron_table(run: str, index_version: float, purity_version: float, expl_version: float,
                 explainer: str | None) -> pd.DataFrame:
    """One row per neuron: layer, neuron, category, purity, type purity, max, frequency, mean, top tokens,
    and the explanation + score where the run has them (NaN / empty otherwise)."""
    run_path = Path(run)
    index = loaders.neuron_index(run_path)
    frame = index.stats_frame()
    frame["top_tokens"] = [" | ".join(index.top_token_strs(int(l), int(n), 5))
                           for l, n in zip(frame.layer, frame.neuron)]
    if purity_version:
        path = loaders.neurons_dir(run_path)
        pur = loaders.purity_frame(str(path), purity_version)[["layer", "neuron", "category", "purity", "type_purity"]]
        frame = frame.merge(pur, on=["layer", "neuron"], how="left")
    else:
        frame = frame.assign(category=None, purity=np.nan, type_purity=np.nan)
    expl = explanations(run, expl_version) if expl_version else None
    if expl is not None and not expl.empty:
        best = best_explanations(expl, explainer)[["layer", "neuron", "score", "explanation", "explainer"]]
        best = best.astype({"layer": int, "neuron": int})
        frame = frame.merge(best, on=["layer", "neuron"], how="left")
    else:
        frame = frame.assign(score=np.nan, explanation=None, explainer=None)
    frame = frame.rename(columns={"frac_active": "frequency"})
    columns = ["layer", "neuron", "category", "purity", "type_purity", "max", "frequency", "mean", "score",
               "explanation", "top_tokens", "explainer"]
    return frame[columns]


# ----- neuron page panels ---------------------------------------------------------------------------


def _index_with_corpus(run_path: Path):
    """The run's index with its corpus opened inside the runs root (as :func:`apps.loaders.top_examples`)."""
    from tinyinterp.interp import NeuronIndex

    index = loaders.neuron_index(run_path)
    corpus = loaders._index_corpus(str(loaders.neurons_dir(run_path)), loaders.index_version(run_path))
    if corpus is not None:
        index = NeuronIndex(index.path, index.meta, index.tensors, corpus=corpus, tokenizer=index.tokenizer)
    return index


@st.cache_data(show_spinner=False)
def activation_histogram(run: str, version: float, layer: int, neuron: int) -> pd.DataFrame:
    return loaders.neuron_index(Path(run)).activation_histogram(layer, neuron)


@st.cache_data(show_spinner=False)
def logit_effects(run: str, version: float, layer: int, neuron: int, n: int) -> dict[str, pd.DataFrame]:
    return loaders.neuron_index(Path(run)).logit_effects(layer, neuron, n=n)


def _example_dicts(examples) -> list[dict]:
    return [dict(ex.__dict__) for ex in examples]


@st.cache_data(show_spinner="Finding quantile examples…")
def quantile_examples(run: str, version: float, layer: int, neuron: int, context: int) -> list[dict]:
    """One example per activation quantile, neighbours' activations filled in by the model."""
    run_path = Path(run)
    model = loaders.model_for(run_path)
    index = _index_with_corpus(run_path)
    loaders.check_index_matches_model(index, model)
    return _example_dicts(index.quantile_examples(layer, neuron, context=context, model=model))


@st.cache_data(show_spinner="Finding the most negative examples…")
def negative_examples(run: str, version: float, layer: int, neuron: int, k: int, context: int) -> list[dict]:
    run_path = Path(run)
    model = loaders.model_for(run_path)
    index = _index_with_corpus(run_path)
    loaders.check_index_matches_model(index, model)
    return _example_dicts(index.negative_examples(layer, neuron, k=k, context=context, model=model))


def split_words(text: str) -> list[str]:
    """'dog, puppy, ice cream' -> ['dog', 'puppy', 'ice cream']: comma-separated alternatives (a phrase keeps
    its spaces), as ``find_neurons`` takes them."""
    return [" ".join(w.split()) for w in text.split(",") if w.strip()]


@st.cache_data(show_spinner="Searching the corpus for the word…")
def find_neurons(run: str, version: float, words: tuple[str, ...], top: int = 20) -> tuple[pd.DataFrame, dict]:
    """``NeuronIndex.find_neurons`` (selectivity on the words' occurrences) and its attrs."""
    run_path = Path(run)
    model = loaders.model_for(run_path)
    index = _index_with_corpus(run_path)
    loaders.check_index_matches_model(index, model)
    if index.corpus is None:
        raise TinyinterpError(f"{loaders.neurons_dir(run_path)}: the corpus the index was built on is not under the runs root")
    frame = index.find_neurons(list(words), model, top=top)
    return frame, dict(frame.attrs)


# ----- heads: QK/OV circuits ------------------------------------------------------------------------


@st.cache_data(show_spinner="Computing the head's QK/OV circuits…", max_entries=64)
def head_circuit(run: str, version: float, layer: int, head: int) -> dict:
    """``circuits.head_circuit`` of one head of the run's model, as a dict."""
    from tinyinterp.interp.circuits import head_circuit as compute

    return compute(loaders.model_for(Path(run)), layer, head).to_dict()


@st.cache_data(show_spinner=False)
def copying_scores(run: str, version: float) -> np.ndarray:
    from tinyinterp.interp.circuits import copying_scores as compute

    return compute(loaders.model_for(Path(run))).numpy()


# ----- emergence ------------------------------------------------------------------------------------


def emergence_dir(run: Path) -> Path:
    return loaders.analysis_dir(run) / EMERGENCE_SUBDIR


def has_emergence(run: Path) -> bool:
    folder = emergence_dir(run)
    return folder.is_dir() and any(folder.glob("step_*/summary.json"))


def emergence_version(run: Path) -> float:
    return max((loaders.mtime(p) for p in emergence_dir(run).glob("step_*/summary.json")), default=0.0)


@st.cache_resource(show_spinner="Loading the emergence analysis…", max_entries=8)
def _emergence(path: str, version: float):
    from tinyinterp.interp.emergence import EmergenceResult

    return EmergenceResult.load(path)


def emergence(run: Path):
    return _emergence(str(emergence_dir(run)), emergence_version(run))


@st.cache_data(show_spinner=False)
def emergence_frame(path: str, version: float) -> pd.DataFrame:
    return _emergence(path, version).to_frame()


@st.cache_data(show_spinner=False)
def head_track(path: str, version: float, layer: int, head: int) -> pd.DataFrame:
    return _emergence(path, version).head_track(layer, head)


@st.cache_data(show_spinner=False)
def neuron_track(path: str, version: float, layer: int, neuron: int) -> pd.DataFrame:
    return _emergence(path, version).neuron_track(layer, neuron)


@st.cache_data(show_spinner=False, max_entries=32)
def step_patterns(path: str, version: float, step: int) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in _emergence(path, version).patterns(step).items()}


@st.cache_resource(show_spinner=False, max_entries=8)
def _tokenizer(run: str, version: float):
    from tinyinterp.tokenizer import Tokenizer

    return Tokenizer.load(Path(run) / rundir.TOKENIZER_FILE)


def run_tokenizer(run: Path):
    """The run's own tokenizer (an emergence analysis stores token ids)."""
    return _tokenizer(str(run), loaders.mtime(Path(run) / rundir.TOKENIZER_FILE))


def emergence_prompts() -> tuple[str, ...]:
    from tinyinterp.interp.emergence import DEFAULT_PROMPTS

    return DEFAULT_PROMPTS
