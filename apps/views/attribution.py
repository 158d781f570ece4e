"""Attribution page: how the model produces its next token, as an attribution graph over transcoder features.

A graph is either one saved under the run (``analysis/graphs/*.json``, written by ``tinyinterp attribute``) or
computed here from a typed prompt or one of the paper's evaluation prompts (this needs the run's transcoder set
in ``analysis/dictionaries/transcoders/``). The pruned graph is drawn by layer (rows) and prompt position
(columns) as an inline SVG: edges blue (positive) / red (negative), width by |weight|; a feature node links to
its feature page. Below it: the strongest paths to the chosen logit, the feature nodes, and intervention
sliders that rerun the real model with chosen features scaled (0 = ablated) and show the new top tokens.
docs/attribution.md explains how to read all of it.
"""

from __future__ import annotations

import streamlit as st

from apps import attribution_panels as panels
from apps import attribution_queries as aq
from apps import guard, render, run_picker

SAVED, NEW = "saved graph", "new graph from a prompt"

sel = run_picker.require_selection()
st.title("Attribution")
st.caption("nodes: token embeddings (bottom), transcoder features and error nodes per layer, logits (top); "
           "edges: direct effects in the replacement model (attention patterns and LayerNorm scales frozen) — "
           "see docs/attribution.md")
names = guard.attempt("transcoder set", aq.dictionary_names, sel.path) or {}
has_saved = bool(aq.saved_graphs(sel.path)) if aq.graphs_dir(sel.path).is_dir() else False
source = st.radio("Graph", (SAVED, NEW), index=0 if has_saved else 1, horizontal=True, key="attr_source")
view = panels.saved_graph(sel) if source == SAVED else panels.new_graph(sel)
if view is None:
    st.stop()
target = panels.graph_panel(sel, view, names)
request = st.session_state.get("attr_request") if source == NEW else None
panels.intervention_panel(sel, view, target, computed_target=(request[1] or None) if request else None)
