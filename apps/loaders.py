"""Cached loaders: models and analysis results once per process, tables once per file version.

Models, neuron indexes and analysis results are shared read-only objects, so they live in
``st.cache_resource`` (no copy per rerun). Tables derived from them live in ``st.cache_data``. Every
loader takes the *modification time* of the file it reads as an argument, so re-running an analysis
shows the new result without restarting the app. Paths arrive here already checked against the runs
root by :mod:`apps.runs_root`; nothing in this module takes a path from a widget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from tinyinterp import rundir
from tinyinterp.errors import DataError, TinyinterpError
from tinyinterp.interp.categories import PURITY_FILE
from tinyinterp.interp.compare import COMPARISON_FILE
from tinyinterp.interp.heads import HEADS_FILE
from tinyinterp.interp.neuron_index import INDEX_FILE, META_FILE, recorded_corpus_path
from tinyinterp.interp.summary import COMPARE_SUBDIR, HEADS_SUBDIR, NEURONS_SUBDIR, analysis_dir

EVAL_SUBDIR = "eval"
# File names and scores of tinyinterp.evaluation.grading (not imported here: it pulls in the LLM client).
GRADES_SUMMARY_FILE, GRADES_FILE, GRADE_CURVE_PNG = "grades_summary.json", "grades.jsonl", "grade_curve.png"
GRADE_SCORES = ("grammar", "creativity", "consistency", "plot")


def mtime(path: Path) -> float:
    """Modification time of ``path`` (0 when absent): the cache key of what was read from it."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


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
    from tinyinterp.loading import load

    return load(path).eval()


def model_version(run: Path) -> float:
    """Cache key of a run's weights (our safetensors file, or an HF folder's config)."""
    return mtime(run / rundir.WEIGHTS_FILE) or mtime(run / rundir.CONFIG_FILE)


def is_training(run: Path) -> bool:
    from apps.runs_root import is_training_dir

    return is_training_dir(run)


def model_for(run: Path):
    if is_training(run):
        raise TinyinterpError(f"{Path(run).name}: still being trained, no {rundir.WEIGHTS_FILE} yet; "
                              "its live loss curve is on the Runs page")
    return load_model(str(run), model_version(run))


@st.cache_data(show_spinner=False)
def run_config(run: str, version: float) -> dict:
    path = Path(run) / rundir.CONFIG_FILE
    return rundir.read_json(path) if path.is_file() else {}


@st.cache_data(show_spinner=False)
def metrics_frame(run: str, version: float) -> pd.DataFrame:
    """``metrics.jsonl`` as a table (empty when the run has none)."""
    return pd.DataFrame(rundir.read_jsonl(Path(run) / rundir.METRICS_FILE))


# ----- neuron index and purity ----------------------------------------------------------------------


def _runs_root() -> Path:
    from apps.runs_root import RunsRoot

    return RunsRoot.from_env().path


def _confined_corpus(path: Path, meta: dict):
    """The corpus ``meta.json`` names, opened only if it lies inside the runs root (None if absent)."""
    where = recorded_corpus_path(path, meta)
    if where is None or not where.exists():
        return None  # NeuronIndex.corpus says "not found" when an example needs it
    root = _runs_root()
    if not where.resolve().is_relative_to(root):
        from apps.runs_root import PathOutsideRoot

        raise PathOutsideRoot(f"{path / META_FILE}: corpus {meta.get('corpus')!r} lies outside the runs root "
                              f"{root}; the app reads only inside it (rebuild the index on a corpus under the root)")
    from tinyinterp.corpus import TokenizedCorpus

    return TokenizedCorpus.open(where.resolve())


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


def neuron_index(run: Path):
    path = neurons_dir(run)
    return _neuron_index(str(path), index_version(run))


def index_version(run: Path) -> float:
    path = neurons_dir(run)
    return max(mtime(path / META_FILE), mtime(path / INDEX_FILE))


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


def purity(run: Path):
    path = neurons_dir(run)
    return _purity(str(path), mtime(path / PURITY_FILE))


@st.cache_data(show_spinner=False)
def purity_top(path: str, version: float, k: int) -> pd.DataFrame:
    return _purity(path, version).top(k)


@st.cache_data(show_spinner=False)
def purity_frame(path: str, version: float) -> pd.DataFrame:
    return _purity(path, version).to_frame()


@st.cache_data(show_spinner=False)
def stats_frame(path: str, version: float) -> pd.DataFrame:
    return _neuron_index(path, version).stats_frame()


@st.cache_data(show_spinner=False)
def neurons_for_token(path: str, version: float, token: str, top: int = 20) -> pd.DataFrame:
    return _neuron_index(path, version).neurons_for_token(token, top=top)


@st.cache_data(show_spinner="Finding top examples…")
def top_examples(run: str, version: float, layer: int, neuron: int, k: int, context: int) -> list[dict]:
    """The neuron's top-k examples as plain dicts, with the activations of their context filled in."""
    from tinyinterp.interp import NeuronIndex

    run_path = Path(run)
    index = neuron_index(run_path)
    model = model_for(run_path)
    check_index_matches_model(index, model)
    corpus = _index_corpus(str(neurons_dir(run_path)), index_version(run_path))  # confined to the runs root
    if corpus is not None:
        index = NeuronIndex(index.path, index.meta, index.tensors, corpus=corpus, tokenizer=index.tokenizer)
    examples = index.top_examples(layer, neuron, k=k, context=context, model=model)
    return [dict(ex.__dict__) for ex in examples]


@st.cache_resource(show_spinner=False, max_entries=4)
def _categorizer(path: str, version: float):
    from tinyinterp.interp import TokenCategorizer

    return TokenCategorizer(_neuron_index(path, version).tokenizer)


def category_counts(run: Path, examples: list[dict]) -> dict[str, int]:
    """How many of the top-k occurrences fall in each token category (the purity's denominator)."""
    from tinyinterp.interp import CATEGORIES

    if not examples:
        return {}
    path = neurons_dir(run)
    cat = _categorizer(str(path), index_version(run))
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


def heads(run: Path):
    path = heads_dir(run)
    return _heads(str(path), mtime(path / HEADS_FILE))


@st.cache_data(show_spinner=False)
def heads_frame(path: str, version: float) -> pd.DataFrame:
    return _heads(path, version).to_frame()


@st.cache_resource(show_spinner=False, max_entries=8)
def comparison(path: str, version: float):
    from tinyinterp.interp import ComparisonResult

    return ComparisonResult.load(path)


@st.cache_data(show_spinner="Running the model…")
def attention_patterns(run: str, version: float, text: str, layers: tuple[int, ...]) -> tuple[list[str], dict]:
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


@st.cache_data(show_spinner="Generating…")
def generate_texts(run: str, version: float, prompt: str, n: int, max_new_tokens: int, temperature: float,
                   top_k: int | None, seed: int) -> list[str]:
    from tinyinterp.generation import SamplingConfig, generate

    model = load_model(run, version)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed)
    return generate(model, [prompt] * n, cfg)


@st.cache_data(show_spinner=False)
def neuron_activations(run: str, version: float, text: str, layer: int, neuron: int) -> tuple[list[str], list[float]]:
    """Token strings of ``text`` and one MLP neuron's activation on each."""
    model = load_model(run, version)
    ids = model.tokenizer.encode(text)[: model.cfg.n_ctx]
    if not ids:
        return [], []
    got = {}

    def grab(acts, hook):
        got["a"] = acts[0, :, neuron].float().tolist()

    with torch.no_grad():
        model.run_with_hooks(torch.tensor([ids]), fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", grab)], return_type=None)
    return [model.tokenizer.token_str(i) for i in ids], got["a"]
