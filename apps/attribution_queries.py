"""Cached loaders of the Attribution page: saved graphs, the run's transcoder set, new graphs, interventions.

Same rules as :mod:`apps.loaders`: pages pass a run; every file is reached through :mod:`apps.runs_root`'s
gate (``file_key`` / ``folder_key``), and every cache is keyed by the resolved path and modification time of
what it reads, so a re-saved graph or a retrained transcoder set shows without restarting the app. A saved
graph is read through the graph JSON module of the library and then checked field by field
(:func:`apps.graph_view.parse_graph`); a new graph and an intervention run the library's own ``attribute`` /
``intervene`` on the real model (nothing here computes attributions itself).
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from apps import file_readers, loaders
from apps.graph_view import GraphView, parse_graph
from tinyinterp.errors import DataError, TinyinterpError
from tinyinterp.runlayout import dictionaries_dir

TRANSCODERS = "transcoders"
"""The run's transcoder set: ``analysis/dictionaries/transcoders/<one folder per layer>``."""
GRAPHS_SUBDIR = "graphs"
CFG_FILE = "cfg.json"
_LAYER = re.compile(r"blocks\.(\d+)\.")


def graphs_dir(run: Path) -> Path:
    return loaders.analysis_dir(run) / GRAPHS_SUBDIR


def saved_graphs(run: Path) -> list[Path]:
    """The run's saved graphs (``analysis/graphs/*.json``), newest first."""
    folder = graphs_dir(run)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: (-loaders.mtime(p), p.name))


@st.cache_data(show_spinner="Reading the graph…", max_entries=16)
def _graph(path: str, version: float, shown: str) -> GraphView:
    return parse_graph(file_readers.read_json(path), shown)


def graph(path: Path) -> GraphView:
    """A saved graph file (inside the runs root), checked field by field; a bad one is one DataError line."""
    return _graph(*loaders.file_key(path), Path(path).name)


# ----- the run's transcoder set ---------------------------------------------------------------------


def transcoders_dir(run: Path) -> Path:
    return dictionaries_dir(run) / TRANSCODERS


def has_transcoders(run: Path) -> bool:
    folder = transcoders_dir(run)
    return folder.is_dir() and any((p / CFG_FILE).is_file() for p in folder.iterdir() if p.is_dir())


@st.cache_data(show_spinner=False, max_entries=16)
def _dictionary_names(path: str, version: float) -> dict[int, str]:
    names: dict[int, str] = {}
    for sub in sorted(Path(path).iterdir()):
        if not (sub / CFG_FILE).is_file():
            continue
        cfg = file_readers.read_json(sub / CFG_FILE)
        meta = cfg.get("metadata") if isinstance(cfg, dict) else None
        hook = (meta or {}).get("hook_name") or (cfg.get("hook_name") if isinstance(cfg, dict) else None)
        match = _LAYER.search(hook) if isinstance(hook, str) else None
        if match is not None:
            names.setdefault(int(match.group(1)), f"{TRANSCODERS}/{sub.name}")
    return names


def dictionary_names(run: Path) -> dict[int, str]:
    """``{layer: dictionary name under analysis/dictionaries}`` of the run's transcoder set (the feature
    page's ``dict=``), read from each transcoder's ``cfg.json`` hook name; empty when the run has none."""
    if not has_transcoders(run):
        return {}
    return _dictionary_names(*loaders.folder_key(transcoders_dir(run), recursive=True))


def transcoders_key(run: Path) -> tuple[str, float]:
    """Cache key of the whole transcoder set: every file below it checked against the root, newest mtime."""
    path, _ = loaders.folder_key(transcoders_dir(run), recursive=True)
    newest = max((loaders.mtime(p) for p in Path(path).rglob("*") if p.is_file()), default=0.0)
    return path, newest


def require_transcoders(run: Path) -> None:
    if not has_transcoders(run):
        raise TinyinterpError(f"{Path(run).name}: no transcoder set in analysis/dictionaries/{TRANSCODERS}/")


# ----- evaluation prompts ----------------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def eval_prompts() -> tuple[str, ...]:
    """The paper's story beginnings (completion prompts of ``Evaluation prompts.yaml`` in the data folder)."""
    from tinyinterp.evaluation.prompts import load_prompts

    try:
        return tuple(p.text for p in load_prompts() if p.kind == "completion")
    except (OSError, DataError, TinyinterpError):
        return ()

TRANSCODERS_REL = f"analysis/dictionaries/{TRANSCODERS}/"


def train_hint(run: Path) -> str:
    return f"tinyinterp sae train {run} --transcoder all"
