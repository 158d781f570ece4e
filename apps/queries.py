"""Cached loaders for the deeper views: the neuron table, the neuron page's distribution / logit / quantile
panels, find-by-word, explanations, head circuits and emergence across training.

Same rules as :mod:`apps.loaders` (whose loaders and cache keys these build on): pages pass a run; every
value comes from a library's public API (``NeuronIndex`` queries, ``circuits.head_circuit``,
``EmergenceResult``), every cache is keyed by the resolved path and modification time of the file it reads,
and every file is reached through :mod:`apps.runs_root`'s check. Explanation logs and emergence summaries
are data someone else wrote: records of the wrong shape are skipped and counted (the page names the file),
never a traceback. Nothing here computes an analysis of its own.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from apps import file_readers, loaders
from apps.runs_root import resolve_in_root
from tinyinterp.runs import rundir
from tinyinterp.errors import DataError, TinyinterpError
from tinyinterp.explain.results import ERRORS_SUFFIX, FINISHED
from tinyinterp.runs.layout import EMERGENCE_SUBDIR, EMERGENCE_SUMMARY_FILE, EXPLANATIONS_SUBDIR, STEP_GLOB



# ----- explanations (tinyinterp.explain) -------------------------------------------------------------


def explanations_dir(run: Path) -> Path:
    return loaders.analysis_dir(run) / EXPLANATIONS_SUBDIR


SHOWN_COLUMNS = ("explainer", "layer", "neuron", "explanation", "score", "status", "id")


def explanation_files(run: Path) -> list[Path]:
    return explanation_files_in(explanations_dir(run))


def explanation_files_in(folder: Path) -> list[Path]:
    """The explanation logs of one folder (a run's neurons, or a dictionary's features: the same format)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.jsonl") if not p.name.endswith(ERRORS_SUFFIX))


def explanations_version(run: Path) -> float:
    """Newest modification time of the run's explanation files (0 when there are none)."""
    return explanations_version_in(explanations_dir(run))


def explanations_version_in(folder: Path) -> float:
    return max((loaders.mtime(p) for p in explanation_files_in(folder)), default=0.0)


def _explanation_row(record: dict, slug: str) -> dict | None:
    """A finished record as a table row, or None when it lacks the shape the pages need."""
    layer, neuron = file_readers.plain_int(record.get("layer")), file_readers.plain_int(record.get("neuron"))
    text, rid, score = record.get("explanation"), record.get("id"), record.get("score")
    if layer is None or neuron is None or not isinstance(text, str) or not isinstance(rid, (str, int)):
        return None
    if score is not None and file_readers.finite_number(score) is None and not (isinstance(score, float) and math.isnan(score)):
        return None
    status = record.get("status")
    return {"explainer": slug, "layer": layer, "neuron": neuron, "explanation": text,
            "score": file_readers.finite_number(score), "status": status if isinstance(status, str) else None,
            "id": str(rid)}


@st.cache_data(show_spinner=False)
def _explanations(files: tuple[str, ...], version: float) -> tuple[pd.DataFrame, tuple[str, ...]]:
    rows, notes = [], []
    for name in files:
        path = Path(name)
        slug = path.name[: -len(".jsonl")]
        log = file_readers.read_jsonl(path)
        seen: set[str] = set()
        n_bad = len(log.skipped)
        for record in log.records:
            row = _explanation_row(record, slug)
            if row is None:
                n_bad += 1
                continue
            if row["id"] in seen or row["status"] not in FINISHED:
                continue  # first record of a neuron wins, unfinished ones are not shown (as the library)
            seen.add(row["id"])
            rows.append(row)
        if n_bad:
            notes.append(f"{file_readers.active_root().shown(path)}: skipped {n_bad} malformed "
                         f"record{'s' if n_bad > 1 else ''}")
    frame = pd.DataFrame(rows, columns=list(SHOWN_COLUMNS))
    return frame.assign(score=pd.to_numeric(frame["score"], errors="coerce")), tuple(notes)


def explanations_with_notes(run: Path) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Every finished explanation of the run (one row per explainer and neuron, score numeric), and one
    note per file that had malformed records (skipped, not fatal)."""
    return explanations_with_notes_in(explanations_dir(run))


def explanations_with_notes_in(folder: Path) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """:func:`explanations_with_notes` of one explanations folder (a dictionary's: layer 0, neuron = feature)."""
    files = tuple(str(resolve_in_root(p)) for p in explanation_files_in(folder))  # a link out of the root: one line
    return _explanations(files, explanations_version_in(folder))


def explanations(run: Path) -> pd.DataFrame:
    return explanations_with_notes(run)[0]


def best_explanations(frame: pd.DataFrame, explainer: str | None = None) -> pd.DataFrame:
    """One row per neuron: the chosen explainer's explanation, or the best-scored one of any explainer."""
    if explainer is not None:
        frame = frame[frame.explainer == explainer]
    ordered = frame.sort_values("score", ascending=False, na_position="last", kind="stable")
    return ordered.drop_duplicates(["layer", "neuron"]).reset_index(drop=True)


# ----- the neuron table -----------------------------------------------------------------------------


def neuron_table(run: Path, with_purity: bool, with_explanations: bool, explainer: str | None) -> pd.DataFrame:
    """One row per neuron: layer, neuron, category, purity, type purity, max, frequency, mean, top tokens,
    and the explanation + score where the run has them (NaN / empty otherwise)."""
    purity_version = loaders.purity_key(run)[1] if with_purity else 0.0
    expl_version = explanations_version(run) if with_explanations else 0.0
    path, index_version = loaders.folder_key(run)[0], loaders.index_version(run)
    return _neuron_table(path, index_version, purity_version, expl_version, explainer)


@st.cache_data(show_spinner="Building the neuron table…")
def _neuron_table(run: str, index_version: float, purity_version: float, expl_version: float,
                  explainer: str | None) -> pd.DataFrame:
    run_path = Path(run)
    index = loaders.neuron_index(run_path)
    frame = index.stats_frame()
    frame["top_tokens"] = [" | ".join(index.top_token_strs(int(l), int(n), 5))
                           for l, n in zip(frame.layer, frame.neuron)]
    if purity_version:
        pur = loaders.purity_frame(run_path)[["layer", "neuron", "category", "purity", "type_purity"]]
        frame = frame.merge(pur, on=["layer", "neuron"], how="left")
    else:
        frame = frame.assign(category=None, purity=np.nan, type_purity=np.nan)
    expl = explanations(run_path) if expl_version else None
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
    corpus = loaders._index_corpus(*loaders.index_key(run_path))
    if corpus is not None:
        index = NeuronIndex(index.path, index.meta, index.tensors, corpus=corpus, tokenizer=index.tokenizer)
    return index


@st.cache_data(show_spinner=False)
def _activation_histogram(path: str, version: float, layer: int, neuron: int) -> pd.DataFrame:
    return loaders._neuron_index(path, version).activation_histogram(layer, neuron)


def activation_histogram(run: Path, layer: int, neuron: int) -> pd.DataFrame:
    return _activation_histogram(*loaders.index_key(run), layer, neuron)


@st.cache_data(show_spinner=False)
def _logit_effects(path: str, version: float, layer: int, neuron: int, n: int) -> dict[str, pd.DataFrame]:
    return loaders._neuron_index(path, version).logit_effects(layer, neuron, n=n)


def logit_effects(run: Path, layer: int, neuron: int, n: int) -> dict[str, pd.DataFrame]:
    return _logit_effects(*loaders.index_key(run), layer, neuron, n)


def _example_dicts(examples) -> list[dict]:
    return [dict(ex.__dict__) for ex in examples]


def _run_key(run: Path) -> tuple[str, float]:
    """The run's confined path and its index version: the key of queries that need index and model."""
    path = loaders.folder_key(run)[0]
    return path, loaders.index_version(Path(path))


@st.cache_data(show_spinner="Finding quantile examples…")
def _quantile_examples(run: str, version: float, layer: int, neuron: int, context: int) -> list[dict]:
    run_path = Path(run)
    model = loaders.model_for(run_path)
    index = _index_with_corpus(run_path)
    loaders.check_index_matches_model(index, model)
    return _example_dicts(index.quantile_examples(layer, neuron, context=context, model=model))


def quantile_examples(run: Path, layer: int, neuron: int, context: int) -> list[dict]:
    """One example per activation quantile, neighbours' activations filled in by the model."""
    return _quantile_examples(*_run_key(run), layer, neuron, context)


@st.cache_data(show_spinner="Finding the most negative examples…")
def _negative_examples(run: str, version: float, layer: int, neuron: int, k: int, context: int) -> list[dict]:
    run_path = Path(run)
    model = loaders.model_for(run_path)
    index = _index_with_corpus(run_path)
    loaders.check_index_matches_model(index, model)
    return _example_dicts(index.negative_examples(layer, neuron, k=k, context=context, model=model))


def negative_examples(run: Path, layer: int, neuron: int, k: int, context: int) -> list[dict]:
    return _negative_examples(*_run_key(run), layer, neuron, k, context)


def split_words(text: str) -> list[str]:
    """'dog, puppy, ice cream' -> ['dog', 'puppy', 'ice cream']: comma-separated alternatives (a phrase keeps
    its spaces), as ``find_neurons`` takes them."""
    return [" ".join(w.split()) for w in text.split(",") if w.strip()]


@st.cache_data(show_spinner="Searching the corpus for the word…")
def _find_neurons(run: str, version: float, words: tuple[str, ...], top: int = 20) -> tuple[pd.DataFrame, dict]:
    run_path = Path(run)
    model = loaders.model_for(run_path)
    index = _index_with_corpus(run_path)
    loaders.check_index_matches_model(index, model)
    if index.corpus is None:
        raise TinyinterpError(f"{run_path.name}: the corpus the neuron index was built on is not under the runs root")
    frame = index.find_neurons(list(words), model, top=top)
    return frame, dict(frame.attrs)


def find_neurons(run: Path, words: tuple[str, ...], top: int = 20) -> tuple[pd.DataFrame, dict]:
    """``NeuronIndex.find_neurons`` (selectivity on the words' occurrences) and its attrs."""
    return _find_neurons(*_run_key(run), tuple(words), top)


# ----- heads: QK/OV circuits ------------------------------------------------------------------------


@st.cache_data(show_spinner="Computing the head's QK/OV circuits…", max_entries=64)
def _head_circuit(run: str, version: float, layer: int, head: int) -> dict:
    from tinyinterp.interp.circuits import head_circuit as compute

    return compute(loaders.model_for(Path(run)), layer, head).to_dict()


def head_circuit(run: Path, layer: int, head: int) -> dict:
    """``circuits.head_circuit`` of one head of the run's model, as a dict."""
    return _head_circuit(*loaders.model_key(run), layer, head)


@st.cache_data(show_spinner=False)
def _copying_scores(run: str, version: float) -> np.ndarray:
    from tinyinterp.interp.circuits import copying_scores as compute

    return compute(loaders.model_for(Path(run))).numpy()


def copying_scores(run: Path) -> np.ndarray:
    return _copying_scores(*loaders.model_key(run))


# ----- emergence ------------------------------------------------------------------------------------

ROW_SCALARS = ("role_share", "mean_type_purity", "local", "semantic", "mixed", "prompt_mean_distance",
               "prompt_prev_token", "val_loss", "train_loss")
"""The per-step numbers the page draws: kept when finite, NaN otherwise."""


def emergence_dir(run: Path) -> Path:
    return loaders.analysis_dir(run) / EMERGENCE_SUBDIR


def _summaries(run: Path) -> list[Path]:
    folder = emergence_dir(run)
    return sorted(folder.glob(f"{STEP_GLOB}/{EMERGENCE_SUMMARY_FILE}")) if folder.is_dir() else []


def has_emergence(run: Path) -> bool:
    return bool(_summaries(run))


def emergence_version(run: Path) -> float:
    return max((loaders.mtime(p) for p in _summaries(run)), default=0.0)


def _clean_head(head) -> dict | None:
    if not isinstance(head, dict):
        return None
    out = {}
    for key, value in head.items():
        if isinstance(value, str):
            out[str(key)] = value
        elif not isinstance(value, (list, dict)):
            number = file_readers.finite_number(value)
            out[str(key)] = np.nan if number is None else number
    out["head_class"] = head.get("head_class") if isinstance(head.get("head_class"), str) else "?"
    return out


def _clean_row(row) -> dict | None:
    """A step summary with the shape the page needs (numbers finite, heads a layers × heads grid), or None."""
    if not isinstance(row, dict):
        return None
    step, tokens = file_readers.plain_int(row.get("step")), file_readers.finite_number(row.get("tokens"))
    heads = row.get("heads")
    if step is None or tokens is None or tokens < 0 or not isinstance(heads, list) or not heads:
        return None
    grid = [[_clean_head(h) for h in layer] if isinstance(layer, list) else None for layer in heads]
    if any(layer is None or not layer or None in layer for layer in grid) or len({len(l) for l in grid}) != 1:
        return None
    clean = {"step": step, "tokens": int(min(tokens, 2**62)), "heads": grid}
    for key in ROW_SCALARS:
        number = file_readers.finite_number(row.get(key))
        clean[key] = np.nan if number is None else number
    return clean


@st.cache_resource(show_spinner="Loading the emergence analysis…", max_entries=8)
def _emergence(path: str, version: float):
    """EmergenceResult of the step summaries; the first malformed one is one line naming it (as a torn one
    is for the library's own loader), its non-finite numbers are NaN."""
    from tinyinterp.interp.emergence import EmergenceResult

    rows: dict[int, dict] = {}
    for summary in sorted(Path(path).glob(f"{STEP_GLOB}/{EMERGENCE_SUMMARY_FILE}")):
        shown = f"{summary.parent.name}/{summary.name}"
        row = _clean_row(file_readers.read_json(summary))  # unreadable JSON: DataError naming the file
        shape = [len(layer) for layer in next(iter(rows.values()))["heads"]] if rows else None
        if row is None or (shape is not None and [len(layer) for layer in row["heads"]] != shape):
            raise DataError(f"{shown}: not an emergence step summary (step, tokens and a layers × heads 'heads' "
                            "grid expected); delete it and rerun `tinyinterp analyze emergence RUN`")
        if row["step"] in rows:
            raise DataError(f"{shown}: step {row['step']} is analysed twice; delete one folder")
        rows[row["step"]] = row
    if not rows:
        raise TinyinterpError(f"{Path(path).name}: no emergence results; run `tinyinterp analyze emergence RUN`")
    return EmergenceResult([rows[s] for s in sorted(rows)], Path(path))


def emergence_key(run: Path) -> tuple[str, float]:
    return loaders.folder_key(emergence_dir(run), recursive=True)[0], emergence_version(run)


def emergence(run: Path):
    return _emergence(*emergence_key(run))


@st.cache_data(show_spinner=False)
def _emergence_frame(path: str, version: float) -> pd.DataFrame:
    return _emergence(path, version).to_frame()


def emergence_frame(run: Path) -> pd.DataFrame:
    return _emergence_frame(*emergence_key(run))


@st.cache_data(show_spinner=False)
def _head_track(path: str, version: float, layer: int, head: int) -> pd.DataFrame:
    return _emergence(path, version).head_track(layer, head)


def head_track(run: Path, layer: int, head: int) -> pd.DataFrame:
    return _head_track(*emergence_key(run), layer, head)


@st.cache_data(show_spinner=False)
def _neuron_track(path: str, version: float, layer: int, neuron: int) -> pd.DataFrame:
    return _emergence(path, version).neuron_track(layer, neuron)


def neuron_track(run: Path, layer: int, neuron: int) -> pd.DataFrame:
    return _neuron_track(*emergence_key(run), layer, neuron)


@st.cache_data(show_spinner=False, max_entries=32)
def _step_patterns(path: str, version: float, step: int) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in _emergence(path, version).patterns(step).items()}


def step_patterns(run: Path, step: int) -> dict[str, np.ndarray]:
    return _step_patterns(*emergence_key(run), step)


@st.cache_resource(show_spinner=False, max_entries=8)
def _tokenizer(path: str, version: float):
    from tinyinterp.data.tokenizer import Tokenizer

    return Tokenizer.load(Path(path))


def run_tokenizer(run: Path):
    """The run's own tokenizer (an emergence analysis stores token ids)."""
    return _tokenizer(*loaders.file_key(Path(run) / rundir.TOKENIZER_FILE))


def emergence_prompts() -> tuple[str, ...]:
    from tinyinterp.interp.emergence import DEFAULT_PROMPTS

    return DEFAULT_PROMPTS
