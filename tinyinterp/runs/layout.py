"""Run-directory layout: every file and folder name of a run, a sweep and its analyses, in one place.

The role SAELens's ``constants.py`` plays: code that reads or writes a run names its files through
these constants and helpers, never through string literals, so a name changes in one line. Imports
nothing heavy (no torch, no numpy): the app, ``tinyinterp --help`` and the checkpoint lister read it.

A run directory::

    RUN/config.json  tokenizer.json  model.safetensors  metrics.jsonl  .lock
    RUN/checkpoints/step_XXXXXXXX/   config.json tokenizer.json model.safetensors optimizer.pt rng.safetensors state.json
    RUN/snapshots/step_XXXXXXXX/     model.safetensors            (weights only, log-spaced, never pruned)
    RUN/data/tokenizer.json  data/train/  data/val/              (the tokenized corpus)
    RUN/analysis/neurons/ heads/ compare/ eval/ emergence/ explanations/

A sweep folder holds one run directory per grid point and ``sweep_summary.json``.
The names are those of every earlier release: old runs load and resume unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

# ----- a run directory ------------------------------------------------------------------------------
CONFIG_FILE = "config.json"
"""``{"model": ModelConfig, "train": TrainConfig|null, "tokenizer": {...}, "data": {...}, "result": {...}}``."""
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
"""One JSON object a line, append-only (train records and val records, keyed by ``step``)."""
LOCK_FILE = ".lock"
"""Held (flock) by the one trainer of a run; readers never take it."""

# ----- checkpoints and snapshots --------------------------------------------------------------------
CHECKPOINTS_DIR = "checkpoints"
SNAPSHOTS_DIR = "snapshots"
OPTIMIZER_FILE = "optimizer.pt"
"""AdamW state (``torch.save``; read back with ``weights_only=True`` only)."""
OPTIMIZER_CHECKSUM_KEY = "optimizer_sha256"
"""Key in ``state.json`` holding the sha256 of ``optimizer.pt``'s bytes (absent in older checkpoints)."""
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"
"""Trainer state (step, tokens, elapsed, ...); written last, so its presence marks a checkpoint complete."""
STATE_TOKENS_KEY = "tokens"
"""Training tokens seen, in ``state.json`` and in ``config.json``'s ``result`` (the one key for it)."""
TEMP_PREFIX = ".tmp-"
"""Hidden folders of checkpoint writes in progress (never listed as checkpoints)."""
STEP_GLOB = "step_*"
_STEP_NAME = re.compile(r"^step_(\d{8})$")

# ----- the tokenized corpus -------------------------------------------------------------------------
DATA_DIR = "data"
TRAIN_SPLIT, VAL_SPLIT = "train", "val"

# ----- analyses -------------------------------------------------------------------------------------
ANALYSIS_DIR = "analysis"
NEURONS_SUBDIR = "neurons"
HEADS_SUBDIR = "heads"
COMPARE_SUBDIR = "compare"
EVAL_SUBDIR = "eval"
COMPLETIONS_SUBDIR = "completions"
ROUGE_SUBDIR = "rouge"
EMERGENCE_SUBDIR = "emergence"
EMERGENCE_SUMMARY_FILE = "summary.json"
"""``analysis/emergence/step_XXXXXXXX/summary.json``: written last, its presence marks the step analysed."""
EXPLANATIONS_SUBDIR = "explanations"
SCALING_SUBDIR = "scaling"
DICTIONARIES_SUBDIR = "dictionaries"
TRANSCODERS_SET = "transcoders"
"""``analysis/dictionaries/transcoders/``: the default transcoder set (one ``layer_{l:02d}`` per layer)."""
GRAPHS_SUBDIR = "graphs"
GRAPH_METADATA_FILE = "graph-metadata.json"
"""circuit-tracer's list of the graphs in a folder (its viewer reads it beside the ``<slug>.json`` files)."""
FEATURE_INDEX_SUBDIR = "index"
"""``<dictionary dir>/index/``: the dictionary's feature index (the neuron index's format, ``"units": "features"``)."""

# ----- sweeps ---------------------------------------------------------------------------------------
SWEEP_SUMMARY_FILE = "sweep_summary.json"
"""One schema for both sweep programs: ``{"kind": "grid"|"scaling", "runs": [...], "pending": [...], "best": name}``."""


def step_name(step: int) -> str:
    """``step_00000012``: the folder name of a checkpoint, snapshot or emergence step."""
    return f"step_{int(step):08d}"


def parse_step_name(name: str) -> int | None:
    """The step of a ``step_XXXXXXXX`` name, else None (temp folders and stray names never parse)."""
    match = _STEP_NAME.match(name)
    return int(match.group(1)) if match else None


def step_folders(parent: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every ``step_XXXXXXXX/`` folder directly under ``parent``, by step."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    found = []
    for path in parent.iterdir():
        step = parse_step_name(path.name)
        if step is not None and path.is_dir():
            found.append((step, path))
    return sorted(found)


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return checkpoints_dir(run_dir) / step_name(step)


def snapshots_dir(run_dir: Path) -> Path:
    return Path(run_dir) / SNAPSHOTS_DIR


def snapshot_dir(run_dir: Path, step: int) -> Path:
    return snapshots_dir(run_dir) / step_name(step)


def run_data_dir(run_dir: Path) -> Path:
    """``RUN/data``: the run's tokenizer copy and tokenized corpus."""
    return Path(run_dir) / DATA_DIR


def corpus_dir(run_dir: Path, split: str = TRAIN_SPLIT) -> Path:
    """``RUN/data/train`` (or ``val``): a tokenized corpus the trainer built."""
    return run_data_dir(run_dir) / split


def analysis_dir(run_dir: str | Path) -> Path:
    """``run_dir/analysis``, or ``run_dir`` itself when it already is an analysis folder."""
    run_dir = Path(run_dir)
    if (run_dir / NEURONS_SUBDIR).is_dir() and not (run_dir / ANALYSIS_DIR).is_dir():
        return run_dir
    return run_dir / ANALYSIS_DIR


def eval_dir(run_dir: Path) -> Path:
    """``RUN/analysis/eval``: every evaluation output lives here (read by the app)."""
    return Path(run_dir) / ANALYSIS_DIR / EVAL_SUBDIR


def explanations_dir(run_dir: Path) -> Path:
    return Path(run_dir) / ANALYSIS_DIR / EXPLANATIONS_SUBDIR


def dictionaries_dir(run_dir: Path) -> Path:
    """``RUN/analysis/dictionaries``: one folder per SAE / transcoder (SAELens layout)."""
    return Path(run_dir) / ANALYSIS_DIR / DICTIONARIES_SUBDIR


def transcoder_layer_name(layer: int) -> str:
    """Sub-folder of one layer's transcoder in a transcoder set."""
    return f"layer_{layer:02d}"


def graphs_dir(run_dir: Path) -> Path:
    """``RUN/analysis/graphs``: attribution graphs in circuit-tracer's JSON schema, one ``<slug>.json`` each."""
    return Path(run_dir) / ANALYSIS_DIR / GRAPHS_SUBDIR


def graph_path(run_dir: Path, slug: str) -> Path:
    return graphs_dir(run_dir) / f"{slug}.json"


def feature_index_dir(dictionary_dir: Path) -> Path:
    """``<dictionary dir>/index``: the feature index of one dictionary (``tinyinterp analyze features``)."""
    return Path(dictionary_dir) / FEATURE_INDEX_SUBDIR


def feature_explanations_dir(dictionary_dir: Path) -> Path:
    """``<dictionary dir>/explanations``: its features' explanations (``tinyinterp explain RUN --dict DIR``),
    in the neuron explanations' format (``<slug>.jsonl``, id ``L0N<feature>``)."""
    return Path(dictionary_dir) / EXPLANATIONS_SUBDIR


def emergence_dir(run_dir: Path) -> Path:
    return Path(run_dir) / ANALYSIS_DIR / EMERGENCE_SUBDIR


def scaling_dir(sweep_dir: Path) -> Path:
    """``SWEEP/analysis/scaling``: the saved scaling analysis of a sweep."""
    return Path(sweep_dir) / ANALYSIS_DIR / SCALING_SUBDIR
