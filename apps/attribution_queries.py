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
from apps.runs_root import active_root
from apps.graph_view import GraphView, parse_graph
from tinyinterp.errors import DataError, TinyinterpError
from tinyinterp.runs.layout import TRANSCODERS_SET as TRANSCODERS
from tinyinterp.runs.layout import GRAPH_METADATA_FILE, dictionaries_dir, graphs_dir

CFG_FILE = "cfg.json"
_LAYER = re.compile(r"blocks\.(\d+)\.")


def saved_graphs(run: Path) -> list[Path]:
    """The run's saved graphs (``analysis/graphs/*.json`` but ``graph-metadata.json``), newest first."""
    folder = graphs_dir(run)
    if not folder.is_dir():
        return []
    graphs = [p for p in folder.glob("*.json") if p.name != GRAPH_METADATA_FILE]  # the viewer's index, not a graph
    return sorted(graphs, key=lambda p: (-loaders.mtime(p), p.name))


@st.cache_data(show_spinner="Reading the graph…", max_entries=16)
def _graph(path: str, version: float, shown: str) -> GraphView:
    from tinyinterp.attribution.graph_json import load_graph_json

    try:
        saved = load_graph_json(path)  # the library's reader: circuit-tracer's schema, one-line GraphError
    except TinyinterpError as e:  # name the file as the user sees it (relative to the runs root), not its server path
        raise DataError(" ".join(str(e).replace(path, shown).split())) from None
    return parse_graph({"metadata": saved.metadata, "nodes": saved.nodes, "links": saved.links}, shown)


def graph(path: Path) -> GraphView:
    """A saved graph file (inside the runs root, read by ``load_graph_json`` after the root's gate), then
    checked field by field for what the page draws; a bad one is one DataError line."""
    resolved, version = loaders.file_key(path)
    return _graph(resolved, version, active_root().shown(Path(path)))


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


def transcoder_gap(run: Path) -> str | None:
    """Why the run's transcoder set cannot serve attribution yet (None when it has one per layer): missing, or
    layers missing (read from the transcoders' cfg.json and the run's config.json; nothing is loaded)."""
    if not has_transcoders(run):
        return f"the run has no transcoder set in {TRANSCODERS_REL}"
    names = dictionary_names(run)
    model = loaders.run_config(run).get("model")
    n_layers = model.get("n_layers") if isinstance(model, dict) else None
    if not isinstance(n_layers, int) or isinstance(n_layers, bool):
        return None  # not our run layout (an HF folder): the library checks the set when it loads it
    missing = [l for l in range(n_layers) if l not in names]
    if missing:
        have = ", ".join(map(str, sorted(names))) or "none"
        return (f"{TRANSCODERS_REL} has transcoders of layer(s) {have}, the model has {n_layers} layers "
                f"(missing: {', '.join(map(str, missing))})")
    return None


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


# ----- new graphs and interventions (the library's attribute / prune / graph JSON / intervene) ---------


@st.cache_resource(show_spinner="Loading the transcoder set…", max_entries=2)
def _transcoder_set(model_path: str, model_version: float, path: str, version: float):
    from tinyinterp.attribution import load_transcoder_set

    return load_transcoder_set(path, loaders.load_model(model_path, model_version))


@st.cache_resource(show_spinner="Attributing (one backward pass per batch of nodes)…", max_entries=8)
def _attribution(model_path: str, model_version: float, path: str, version: float, prompt: str, target: str | None):
    from tinyinterp.attribution import attribute

    model = loaders.load_model(model_path, model_version)
    return attribute(model, _transcoder_set(model_path, model_version, path, version), prompt, target=target)


def _keys(run: Path) -> tuple:
    require_transcoders(run)
    return (*loaders.model_key(run), *transcoders_key(run))


def attribution_graph(run: Path, prompt: str, target: str | None = None):
    """The library's (unpruned) :class:`~tinyinterp.attribution.AttributionGraph` of ``prompt`` on the run's
    model and transcoder set; cached per model, transcoder set, prompt and target."""
    return _attribution(*_keys(run), prompt, target or None)


@st.cache_data(show_spinner="Pruning…", max_entries=16)
def _pruned_json(model_path: str, model_version: float, path: str, version: float, prompt: str, target: str | None,
                 node_threshold: float, edge_threshold: float) -> dict:
    from tinyinterp.attribution.graph_json import graph_slug, graph_to_json
    from tinyinterp.attribution.prune import prune_graph

    from tinyinterp.attribution.cli import feature_clerps

    graph = _attribution(model_path, model_version, path, version, prompt, target)
    pruned = prune_graph(graph, node_threshold=node_threshold, edge_threshold=edge_threshold)
    clerps = feature_clerps(Path(path), graph.n_layers)  # explanations inside the (confined) set, as the CLI adds them
    return graph_to_json(graph, graph_slug(prompt), prune=pruned, clerps=clerps,
                         tokenizer=loaders.load_model(model_path, model_version).tokenizer)


def compute_graph(run: Path, prompt: str, target: str, node_threshold: float, edge_threshold: float) -> GraphView:
    """A new pruned graph of ``prompt``, in the saved graphs' JSON form (what the page draws either way)."""
    data = _pruned_json(*_keys(run), prompt, target.strip("\n") or None, float(node_threshold), float(edge_threshold))
    return parse_graph(data, "new graph")


def graph_json(run: Path, prompt: str, target: str, node_threshold: float, edge_threshold: float) -> dict:
    """The JSON document of :func:`compute_graph` (for the download button)."""
    return _pruned_json(*_keys(run), prompt, target.strip("\n") or None, float(node_threshold), float(edge_threshold))


@st.cache_data(show_spinner="Running the model with the interventions…", max_entries=32)
def _intervention(model_path: str, model_version: float, path: str, version: float, prompt: str, target: str | None,
                  changes: tuple[tuple[int, int, int, float], ...], targets: tuple[int, ...], k: int) -> dict:
    from tinyinterp.attribution.interventions import FeatureIntervention, intervene, predict_logit_change

    model = loaders.load_model(model_path, model_version)
    transcoders = _transcoder_set(model_path, model_version, path, version)
    ivs = [FeatureIntervention(layer, feature, pos=pos, mode="ablate" if scale == 0 else "scale", value=scale)
           for layer, feature, pos, scale in changes]
    result = intervene(model, transcoders, prompt, ivs, list(targets))
    graph = _attribution(model_path, model_version, path, version, prompt, target)
    in_graph = [t for t in targets if t in set(graph.logit_tokens.tolist())]
    predicted = predict_logit_change(graph, ivs, in_graph) if in_graph else None
    by_token = dict(zip(in_graph, predicted.tolist())) if predicted is not None else {}
    tok = model.tokenizer
    return {
        "targets": [{"token": tok.token_str(t), "id": t, "logit before": float(b), "logit after": float(a),
                     "measured change": float(m), "graph's prediction": by_token.get(t)}
                    for t, b, a, m in zip(targets, result.logits_before, result.logits_after, result.measured)],
        "before": [(tok.token_str(i), p) for i, p in result.top_tokens(k, after=False)],
        "after": [(tok.token_str(i), p) for i, p in result.top_tokens(k, after=True)],
        "activations": result.activations,
    }


def intervention(run: Path, prompt: str, target: str | None, changes: tuple[tuple[int, int, int, float], ...],
                 targets: tuple[int, ...], k: int = 8) -> dict:
    """``intervene`` in the REAL model: each change ``(layer, feature, pos, scale)`` (scale 0 = ablate); the
    targets' logit changes measured and as the graph predicts them, and the top-k next tokens before / after."""
    return _intervention(*_keys(run), prompt, target or None, tuple(changes), tuple(targets), int(k))


def prompt_token_strings(run: Path, prompt: str) -> list[str]:
    """The prompt as the run's model tokenizes it for attribution (BOS first), as token strings."""
    from tinyinterp.models.generation import prompt_ids

    model = loaders.model_for(run)
    return [model.tokenizer.token_str(i) for i in prompt_ids(model.tokenizer, prompt)]
