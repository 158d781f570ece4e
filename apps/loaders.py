"""Cached loaders: models and analysis results once per process, tables once per file version.

Models, neuron indexes and analysis results are shared read-only objects, so they live in
``st.cache_resource`` (no copy per rerun). Tables derived from them live in ``st.cache_data``.

Pages pass a *run* (its directory, from :mod:`apps.run_picker`); the loaders here own their cache keys:
each public loader finds the file it reads, resolves it through :func:`apps.runs_root.resolve_in_root`
(a symlink out of the runs root or a loop is one line, never a read) and calls a private cached function
keyed by the resolved path and the file's *modification time*, so re-running an analysis shows the new
result without restarting the app. Nothing in this module takes a path from a widget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from apps.runs_root import PathOutsideRoot, confine_folder, resolve_in_root
from tinyinterp.runs import rundir
from tinyinterp.errors import DataError, TinyinterpError
from tinyinterp.interp.categories import PURITY_FILE
from tinyinterp.interp.compare import COMPARISON_FILE
from tinyinterp.interp.heads import HEADS_FILE
from tinyinterp.interp.neuron_index import INDEX_FILE, META_FILE, recorded_corpus_path
from tinyinterp.io.jsonl import read_jsonl
from tinyinterp.runs.layout import COMPARE_SUBDIR, EVAL_SUBDIR, HEADS_SUBDIR, NEURONS_SUBDIR, analysis_dir

# File names and scores of tinyinterp.evaluation.grading (not imported here: it pulls in the LLM client).
GRADES_SUMMARY_FILE, GRADES_FILE, GRADE_CURVE_PNG = "grades_summary.json", "grades.jsonl", "grade_curve.png"
GRADE_SCORES = ("grammar", "creativity", "consistency", "plot")


def mtime(path: Path) -> float:
    """Modification time of ``path`` (0 when absent): the cache key of what was read from it."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def file_key(path: Path) -> tuple[str, float]:
    """``(resolved path, mtime)`` of a file inside the runs root: the cache key of what is read from it."""
    resolved = resolve_in_root(path)
    return str(resolved), mtime(resolved)


def folder_key(folder: Path, *files: str, recursive: bool = False) -> tuple[str, float]:
    """``(resolved folder, newest mtime of files)`` after every file in the folder passed the root check."""
    resolved = confine_folder(folder, recursive=recursive)
    return str(resolved), max((mtime(resolved / f) for f in files), default=mtime(resolved))


def neurons_dir(run: Path) -> Path:
    return analysis_dir(run) / NEURONS_SUBDIR


def heads_dir(run: Path) -> Path:
    return analysis_dir(run) / HEADS_SUBDIR


def eval_dir(run: Path) -> Path:
    return analysis_dir(run) / EVAL_SUBDIR


def has_neuron_index(run: Path) -> bool:
    return (neurons_dir(run) / META_FILE).is_file()


def has_purity(run: Path) -> bool:
    return (neurons_dir(run) / PURITY_FILE).is_file()


def has_heads(run: Path) -> bool:
    return (heads_dir(run) / HEADS_FILE).is_file()


def comparisons(run: Path) -> list[Path]:
    """Saved comparison folders under ``analysis/compare/`` of a run."""
    base = analysis_dir(run) / COMPARE_SUBDIR
    return sorted(p.parent for p in base.glob(f"*/{COMPARISON_FILE}")) if base.is_dir() else []


# ----- models ---------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def load_model(path: str, version: float = 0.0):
    """``tinyinterp.load`` of a run / HF folder (checked path) or an official hub name (fixed list)."""
    from tinyinterp.models.loading import load

    return load(path).eval()


def model_version(run: Path) -> float:
    """Cache key of a run's weights (our safetensors file, or an HF folder's config)."""
    return mtime(run / rundir.WEIGHTS_FILE) or mtime(run / rundir.CONFIG_FILE)


def is_training(run: Path) -> bool:
    from apps.runs_root import is_training_dir

    return is_training_dir(run)


def model_key(run: Path) -> tuple[str, float]:
    """Cache key of a run's model: the run folder (every file in it checked against the root) + version."""
    path, _ = folder_key(run)
    return path, model_version(Path(path))


def model_for(run: Path):
    if is_training(run):
        raise TinyinterpError(f"{Path(run).name}: still being trained, no {rundir.WEIGHTS_FILE} yet; "
                              "its live loss curve is on the Runs page")
    return load_model(*model_key(run))


@st.cache_data(show_spinner=False)
def _run_config(path: str, version: float) -> dict:
    return rundir.read_json(Path(path)) if Path(path).is_file() else {}


def run_config(run: Path) -> dict:
    """The run's ``config.json`` (empty when it has none)."""
    return _run_config(*file_key(Path(run) / rundir.CONFIG_FILE))


@st.cache_data(show_spinner=False)
def _metrics_frame(path: str, version: float) -> pd.DataFrame:
    return pd.DataFrame(read_jsonl(Path(path)))


def metrics_frame(run: Path) -> pd.DataFrame:
    """``metrics.jsonl`` as a table (empty when the run has none)."""
    return _metrics_frame(*file_key(Path(run) / rundir.METRICS_FILE))


# ----- neuron index and purity ----------------------------------------------------------------------


def _confined_corpus(path: Path, meta: dict):
    """The corpus ``meta.json`` names, opened only if it (and every file in it) lies inside the runs root
    (None if absent)."""
    where = recorded_corpus_path(path, meta)
    if where is None or not where.exists():
        return None  # NeuronIndex.corpus says "not found" when an example needs it
    try:
        where = confine_folder(where)
    except PathOutsideRoot as e:
        raise PathOutsideRoot(f"{Path(path).name}/{META_FILE}: corpus {meta.get('corpus')!r} refused: {e} "
                              "(rebuild the index on a corpus under the root)") from None
    from tinyinterp.data.corpus import TokenizedCorpus

    return TokenizedCorpus.open(where)


def _check_index_shapes(index) -> None:
    expected = (index.n_layers, index.d_mlp, index.k)
    for name in ("top_values", "top_positions", "top_tokens"):
        got = tuple(index.tensors[name].shape) if name in index.tensors else None
        if got != expected:
            raise DataError(f"{index.path / INDEX_FILE}: {name} has shape {got}, meta.json says {expected}; "
                            "rebuild it with `tinyinterp analyze neurons`")


@st.cache_resource(show_spinner="Loading neuron index…", max_entries=8)
def _neuron_index(path: str, version: float):
    from tinyinterp.interp import NeuronIndex

    index = NeuronIndex.load(path)
    _check_index_shapes(index)
    return index


def index_key(run: Path) -> tuple[str, float]:
    """Cache key of the run's neuron index folder (its files checked against the root)."""
    return folder_key(neurons_dir(run), META_FILE, INDEX_FILE)


def neuron_index(run: Path):
    return _neuron_index(*index_key(run))


def index_version(run: Path) -> float:
    return index_key(run)[1]


@st.cache_resource(show_spinner=False, max_entries=8)
def _index_corpus(path: str, version: float):
    return _confined_corpus(Path(path), _neuron_index(path, version).meta)


def check_index_matches_model(index, model) -> None:
    """Refuse an index built for another shape of model (e.g. the run was retrained since)."""
    cfg = model.cfg
    if (index.n_layers, index.d_mlp) != (cfg.n_layers, cfg.d_mlp):
        raise DataError(f"{index.path / META_FILE}: the index is for {index.n_layers} layers × {index.d_mlp} "
                        f"neurons, the model has {cfg.n_layers} × {cfg.d_mlp}; rebuild it with "
                        "`tinyinterp analyze neurons`")


@st.cache_resource(show_spinner=False, max_entries=8)
def _purity(path: str, version: float):
    from tinyinterp.interp import PurityResult

    return PurityResult.load(path)


def purity_key(run: Path) -> tuple[str, float]:
    return folder_key(neurons_dir(run), PURITY_FILE)


def purity(run: Path):
    return _purity(*purity_key(run))


@st.cache_data(show_spinner=False)
def _purity_top(path: str, version: float, k: int) -> pd.DataFrame:
    return _purity(path, version).top(k)


def purity_top(run: Path, k: int) -> pd.DataFrame:
    return _purity_top(*purity_key(run), k)


@st.cache_data(show_spinner=False)
def _purity_frame(path: str, version: float) -> pd.DataFrame:
    return _purity(path, version).to_frame()


def purity_frame(run: Path) -> pd.DataFrame:
    return _purity_frame(*purity_key(run))


@st.cache_data(show_spinner=False)
def _stats_frame(path: str, version: float) -> pd.DataFrame:
    return _neuron_index(path, version).stats_frame()


def stats_frame(run: Path) -> pd.DataFrame:
    return _stats_frame(*index_key(run))


@st.cache_data(show_spinner=False)
def _neurons_for_token(path: str, version: float, token: str, top: int = 20) -> pd.DataFrame:
    return _neuron_index(path, version).neurons_for_token(token, top=top)


def neurons_for_token(run: Path, token: str, top: int = 20) -> pd.DataFrame:
    return _neurons_for_token(*index_key(run), token, top=top)


@st.cache_data(show_spinner="Finding top examples…")
def top_examples(run: str, version: float, layer: int, neuron: int, k: int, context: int) -> list[dict]:
    """The neuron's top-k examples as plain dicts, with the activations of their context filled in."""
    from tinyinterp.interp import NeuronIndex

    run_path = Path(run)
    index = neuron_index(run_path)
    model = model_for(run_path)
    check_index_matches_model(index, model)
    corpus = _index_corpus(*index_key(run_path))  # confined to the runs root
    if corpus is not None:
        index = NeuronIndex(index.path, index.meta, index.tensors, corpus=corpus, tokenizer=index.tokenizer)
    examples = index.top_examples(layer, neuron, k=k, context=context, model=model)
    return [dict(ex.__dict__) for ex in examples]


def neuron_top_examples(run: Path, layer: int, neuron: int, k: int, context: int) -> list[dict]:
    """:func:`top_examples` of the run, keyed by its confined path and index version."""
    path, _ = folder_key(run)
    return top_examples(path, index_version(Path(path)), layer, neuron, k, context)


@st.cache_resource(show_spinner=False, max_entries=4)
def _categorizer(path: str, version: float):
    from tinyinterp.interp import TokenCategorizer

    return TokenCategorizer(_neuron_index(path, version).tokenizer)


def category_counts(run: Path, examples: list[dict]) -> dict[str, int]:
    """How many of the top-k occurrences fall in each token category (the purity's denominator)."""
    from tinyinterp.interp import CATEGORIES

    if not examples:
        return {}
    cat = _categorizer(*index_key(run))
    tokens = np.array([ex["tokens"][ex["center"]] for ex in examples])
    prev = np.array([ex["tokens"][ex["center"] - 1] if ex["center"] > 0 else -1 for ex in examples])
    labels = cat.label(tokens, prev)
    counts = np.bincount(labels[labels >= 0], minlength=len(CATEGORIES))
    return {c: int(n) for c, n in zip(CATEGORIES, counts)}


# ----- heads, comparisons ---------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=8)
def _heads(path: str, version: float):
    from tinyinterp.interp import HeadResult

    return HeadResult.load(path)


def heads_key(run: Path) -> tuple[str, float]:
    return folder_key(heads_dir(run), HEADS_FILE)


def heads(run: Path):
    return _heads(*heads_key(run))


@st.cache_data(show_spinner=False)
def _heads_frame(path: str, version: float) -> pd.DataFrame:
    return _heads(path, version).to_frame()


def heads_frame(run: Path) -> pd.DataFrame:
    return _heads_frame(*heads_key(run))


@st.cache_resource(show_spinner=False, max_entries=8)
def _comparison(path: str, version: float):
    from tinyinterp.interp import ComparisonResult

    return ComparisonResult.load(path)


def comparison(folder: Path):
    """A saved comparison folder (one of :func:`comparisons`)."""
    return _comparison(*folder_key(folder, COMPARISON_FILE))


def attention_patterns(run: Path, text: str, layers: tuple[int, ...]) -> tuple[list[str], dict]:
    """Token strings of ``text`` and ``{layer: (heads, T, T) pattern}`` for the requested layers."""
    return _attention_patterns(*model_key(run), text, tuple(layers))


@st.cache_data(show_spinner="Running the model…")
def _attention_patterns(run: str, version: float, text: str, layers: tuple[int, ...]) -> tuple[list[str], dict]:
    """Token strings of ``text`` and ``{layer: (heads, T, T) pattern}`` for the requested layers."""
    model = load_model(run, version)
    tokenizer = model.tokenizer
    ids = tokenizer.encode(text)[: model.cfg.n_ctx]
    if not ids:
        return [], {}
    names = {f"blocks.{l}.attn.hook_pattern" for l in layers}
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n in names)
    return [tokenizer.token_str(i) for i in ids], {l: cache[f"blocks.{l}.attn.hook_pattern"][0].float().numpy() for l in layers}


def generate_texts(run: Path, **settings) -> list[str]:
    """Stories sampled from the run's model (same settings and seed: the same, cached, stories)."""
    return _generate_texts(*model_key(run), **settings)


@st.cache_data(show_spinner="Generating…")
def _generate_texts(run: str, version: float, prompt: str, n: int, max_new_tokens: int, temperature: float,
                   top_k: int | None, seed: int) -> list[str]:
    from tinyinterp.models.generation import SamplingConfig, generate

    model = load_model(run, version)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed)
    return generate(model, [prompt] * n, cfg)


def neuron_activations(run: Path, text: str, layer: int, neuron: int) -> tuple[list[str], list[float]]:
    """Token strings of ``text`` and one MLP neuron's activation on each."""
    return _neuron_activations(*model_key(run), text, layer, neuron)


@st.cache_data(show_spinner=False)
def _neuron_activations(run: str, version: float, text: str, layer: int, neuron: int) -> tuple[list[str], list[float]]:
    """Token strings of ``text`` and one MLP neuron's activation on each (the forward stops after ``layer``)."""
    from tinyinterp.interp.activations import sequence_activations

    model = load_model(run, version)
    ids = model.tokenizer.encode(text)[: model.cfg.n_ctx]
    if not ids:
        return [], []
    name = f"blocks.{layer}.mlp.hook_post"
    (acts,) = sequence_activations(model, [ids], [name], reduce=lambda _, a, batch: a[..., neuron].float().cpu())
    return [model.tokenizer.token_str(i) for i in ids], acts[name].tolist()
