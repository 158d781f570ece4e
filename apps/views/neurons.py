"""Neurons page: pick a layer/neuron (or jump to a pure one, or search by token) and see what it fires on.

Shows the neuron's top-k examples with its activation drawn on every token (escaped HTML; or the
circuitsvis view), the token categories of its top-k and its purity against chance, the most common
top tokens and its activation statistics. ``?layer=&neuron=`` deep-link to a neuron.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps import data, render, session
from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.categories import PURITY_FILE
from tinyinterp.interp.neuron_index import META_FILE

LAYER_KEY, NEURON_KEY = "neuron_layer", "neuron_id"


def _jump(key: str, targets: dict[str, tuple[int, int]]) -> None:
    """on_change of a 'jump to' selectbox: move the layer/neuron pickers, then clear the box."""
    choice = st.session_state.get(key)
    if choice in targets:
        st.session_state[LAYER_KEY], st.session_state[NEURON_KEY] = targets[choice]
    st.session_state[key] = None


def _jump_box(label: str, key: str, frame: pd.DataFrame, describe) -> None:
    targets = {describe(row): (int(row.layer), int(row.neuron)) for row in frame.itertuples()}
    st.selectbox(label, list(targets), index=None, key=key, placeholder="choose a neuron…",
                 on_change=_jump, args=(key, targets))


def _pickers(index, sel) -> tuple[int, int]:
    if LAYER_KEY not in st.session_state:  # first visit: take the deep link, if any
        st.session_state[LAYER_KEY] = session.int_param("layer", 0, index.n_layers - 1, 0)
        st.session_state[NEURON_KEY] = session.int_param("neuron", 0, index.d_mlp - 1, 0)
    st.session_state[LAYER_KEY] = min(st.session_state[LAYER_KEY], index.n_layers - 1)  # after a run switch
    st.session_state[NEURON_KEY] = min(st.session_state[NEURON_KEY], index.d_mlp - 1)
    layer = st.selectbox("Layer", list(range(index.n_layers)), key=LAYER_KEY)
    neuron = st.number_input("Neuron", min_value=0, max_value=index.d_mlp - 1, step=1, key=NEURON_KEY)
    if data.has_purity(sel.path):
        path = data.neurons_dir(sel.path)
        top = data.purity_top(str(path), data.mtime(path / PURITY_FILE), 25)
        with st.expander("Most pure neurons", expanded=True):
            st.caption("role neurons first: type purity over ≥ 3 distinct top tokens")
            _jump_box("Jump to a pure neuron", "jump_pure", top,
                      lambda r: f"L{r.layer} N{r.neuron} · {r.category} {r.type_purity:.2f} · {' '.join(map(str, r.top_tokens[:3]))}")
    with st.expander("Search by token", expanded=True):
        token = st.text_input("Which neurons fire on…", key="token_query", placeholder=" Lily",
                              help="one token, with its leading space as it appears mid-sentence (' Lily')")
        if token:
            path = data.neurons_dir(sel.path)
            try:
                found = data.neurons_for_token(str(path), data.mtime(path / META_FILE), token)
            except TinyinterpError as e:
                st.warning(str(e))
                found = pd.DataFrame()
            if found.empty:
                st.caption(f"no neuron has {token!r} among its top-k tokens")
            else:
                st.dataframe(found, hide_index=True, height=180)
                _jump_box("Jump to a found neuron", "jump_token", found,
                          lambda r: f"L{r.layer} N{r.neuron} · {r.hits} hits · max {r.max_activation:.2f}")
    return int(layer), int(neuron)


def _detail(index, sel, layer: int, neuron: int) -> None:
    st.header(f"Layer {layer} · neuron {neuron}")
    path = data.neurons_dir(sel.path)
    version = data.mtime(path / META_FILE)
    stats = data.stats_frame(str(path), version)
    row = stats[(stats.layer == layer) & (stats.neuron == neuron)].iloc[0]
    cols = st.columns(4)
    for col, key in zip(cols, ("max", "mean", "std", "frac_active")):
        col.metric(key.replace("_", " "), f"{row[key]:.3f}")
    k = st.slider("top examples", 1, index.k, min(10, index.k), key="n_examples")
    context = st.slider("context tokens each side", 1, 32, 8, key="context")
    examples = data.top_examples(str(sel.path), version, layer, neuron, k, context)
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Top examples")
        if not examples:
            st.info("this neuron has no recorded activations")
        elif st.toggle("interactive view (circuitsvis)", key="use_circuitsvis"):
            st.iframe(render.neuron_vis(examples, layer, neuron), height=520)
        else:
            st.html(render.examples_html(examples))
    with right:
        st.subheader("Token categories of the top-k")
        if data.has_purity(sel.path):
            pur = data.purity(sel.path)
            frame = data.purity_frame(str(path), data.mtime(path / PURITY_FILE))
            p = frame[(frame.layer == layer) & (frame.neuron == neuron)].iloc[0]
            c = st.columns(3)
            c[0].metric("purity", f"{p.purity:.2f}", help=f"share of the top-{pur.k} in the majority category")
            c[1].metric("type purity", f"{p.type_purity:.2f}", help="each distinct token counted once")
            c[2].metric("majority", p.category, help=f"{int(p.n_distinct)} distinct top tokens")
            st.caption(f"chance purity of {pur.k} random tokens: {pur.chance_purity:.2f}; "
                       f"base rate of '{p.category}': {pur.base_rates.get(p.category, float('nan')):.2f}")
        else:
            st.caption("purity.json missing: run `tinyinterp analyze neurons` to score purity")
        counts = data.category_counts(sel.path, examples)
        if counts:  # HTML bars, not Vega charts: they draw instantly and escape the labels
            st.html(render.bars_html({c: n for c, n in counts.items() if n}))
        st.subheader("Top tokens")
        hist = index.token_histogram(layer, neuron)
        if hist:
            st.html(render.bars_html(dict(list(hist.items())[:15]), colour="#e0703a"))


sel = session.require_selection()
st.title("Neurons")
if not data.has_neuron_index(sel.path):
    st.info(f"No neuron index for `{sel.name}` yet: run `tinyinterp analyze neurons {sel.path}`.")
    st.stop()
index = data.neuron_index(sel.path)
st.caption(f"{index.n_layers} layers × {index.d_mlp} MLP neurons, top-{index.k} over "
           f"{int(index.meta.get('n_tokens', 0)):,} tokens")
controls, main = st.columns([1, 3])
with controls:
    layer, neuron = _pickers(index, sel)
st.query_params["layer"], st.query_params["neuron"] = str(layer), str(neuron)
with main:
    _detail(index, sel, layer, neuron)
