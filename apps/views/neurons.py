"""Neurons page: pick a layer/neuron (or jump to a pure one, or search by token) and see what it fires on.

Shows the neuron's top-k examples with its activation drawn on every token (escaped HTML; or the
circuitsvis view), the token categories of its top-k and its purity against chance, the most common
top tokens and its activation statistics. ``?layer=&neuron=`` deep-link to a neuron; a link outside the
index says so instead of showing another neuron. Each panel reads its own file through
:mod:`apps.guard`: a broken ``purity.json`` or truncated weights cost that panel one line, not the page.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps import guard, loaders, neuron_panels, render, run_picker, units
from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.categories import PURITY_FILE
from apps.runs_root import checked_int

LAYER_KEY, NEURON_KEY = "neuron_layer", "neuron_id"
BAD_LINK_KEY = "_neuron_bad_link"


def _link_problem(index) -> str | None:
    """A message when ``?layer=&neuron=`` is present but outside this index (None when fine or absent)."""
    raw = {name: st.query_params.get(name) for name in ("layer", "neuron")}
    if all(v is None for v in raw.values()):
        return None
    layer = checked_int(raw["layer"], 0, index.n_layers - 1) if raw["layer"] is not None else 0
    neuron = checked_int(raw["neuron"], 0, index.d_mlp - 1) if raw["neuron"] is not None else 0
    if layer is not None and neuron is not None:
        return None
    return (f"The link asks for layer {raw['layer']}, neuron {raw['neuron']}, which this index does not have "
            f"(layers 0–{index.n_layers - 1}, neurons 0–{index.d_mlp - 1}). Pick a neuron on the left.")


def _clear_bad_link() -> None:
    st.session_state.pop(BAD_LINK_KEY, None)


def _jump(key: str, targets: dict[str, tuple[int, int]]) -> None:
    """on_change of a 'jump to' selectbox: move the layer/neuron pickers, then clear the box."""
    choice = st.session_state.get(key)
    if choice in targets:
        st.session_state[LAYER_KEY], st.session_state[NEURON_KEY] = targets[choice]
        _clear_bad_link()
    st.session_state[key] = None


def _jump_box(label: str, key: str, frame: pd.DataFrame, describe) -> None:
    targets = {describe(row): (int(row.layer), int(row.neuron)) for row in frame.itertuples()}
    st.selectbox(label, list(targets), index=None, key=key, placeholder="choose a neuron…",
                 on_change=_jump, args=(key, targets))


def _pickers(index, sel) -> tuple[int, int]:
    if LAYER_KEY not in st.session_state:  # first visit: take the deep link, if any
        problem = _link_problem(index)
        if problem:
            st.session_state[BAD_LINK_KEY] = problem
        st.session_state[LAYER_KEY] = run_picker.int_param("layer", 0, index.n_layers - 1, 0)
        st.session_state[NEURON_KEY] = run_picker.int_param("neuron", 0, index.d_mlp - 1, 0)
    st.session_state[LAYER_KEY] = min(st.session_state[LAYER_KEY], index.n_layers - 1)  # after a run switch
    st.session_state[NEURON_KEY] = min(st.session_state[NEURON_KEY], index.d_mlp - 1)
    layer = st.selectbox("Layer", list(range(index.n_layers)), key=LAYER_KEY, on_change=_clear_bad_link)
    neuron = st.number_input("Neuron", min_value=0, max_value=index.d_mlp - 1, step=1, key=NEURON_KEY,
                             on_change=_clear_bad_link)
    top = guard.attempt(PURITY_FILE, loaders.purity_top, sel.path, 25) if loaders.has_purity(sel.path) else None
    if top is not None:
        with st.expander("Most pure neurons", expanded=True):
            st.caption("role neurons first: type purity over ≥ 3 distinct top tokens")
            _jump_box("Jump to a pure neuron", "jump_pure", top,
                      lambda r: f"L{r.layer} N{r.neuron} · {r.category} {r.type_purity:.2f} · {' '.join(map(str, r.top_tokens[:3]))}")
    with st.expander("Search by token", expanded=True):
        token = st.text_input("Which neurons fire on…", key="token_query", placeholder=" Lily",
                              help="one token, with its leading space as it appears mid-sentence (' Lily')")
        if token:
            try:
                found = loaders.neurons_for_token(sel.path, token)
            except TinyinterpError as e:
                st.warning(render.md_text(e))
                found = pd.DataFrame()
            if found.empty:
                st.caption(f"no neuron has {render.md_text(repr(token))} among its top-k tokens")
            else:
                st.dataframe(found, hide_index=True, height=180)
                _jump_box("Jump to a found neuron", "jump_token", found,
                          lambda r: f"L{r.layer} N{r.neuron} · {r.hits} hits · max {r.max_activation:.2f}")
    neuron_panels.word_search(sel, _jump_box)
    return int(layer), int(neuron)


def _detail(index, sel, layer: int, neuron: int) -> None:
    st.header(f"Layer {layer} · neuron {neuron}")
    neurons = units.Neurons(sel.path)
    neuron_panels.explanation(neurons, layer, neuron)
    neuron_panels.statistics(neurons, layer, neuron)
    k = st.slider("top examples", 1, index.k, min(10, index.k), key="n_examples")
    context = st.slider("context tokens each side", 1, 32, 8, key="context")

    def circuitsvis(examples: list[dict]) -> bool:
        if not st.toggle("interactive view (circuitsvis)", key="use_circuitsvis"):
            return False
        st.iframe(render.neuron_vis(examples, layer, neuron), height=520)
        return True

    left, right = st.columns([3, 2])
    with left:
        examples = neuron_panels.top_examples(neurons, layer, neuron, k, context, interactive=circuitsvis)
    with right:
        st.subheader("Token categories of the top-k")
        if loaders.has_purity(sel.path):
            with guard.panel(PURITY_FILE):
                _purity(sel, layer, neuron)
        else:
            st.caption("purity.json missing: run `tinyinterp analyze neurons` to score purity")
        with guard.panel("token categories"):
            counts = loaders.category_counts(sel.path, examples)
            if counts:  # HTML bars, not Vega charts: they draw instantly and escape the labels
                st.html(render.bars_html({c: n for c, n in counts.items() if n}))
        st.subheader("Top tokens")
        with guard.panel("top tokens (index.safetensors)"):
            hist = index.token_histogram(layer, neuron)
            if hist:
                st.html(render.bars_html(dict(list(hist.items())[:15]), colour="#e0703a"))
    neuron_panels.all_panels(neurons, layer, neuron, context)


def _purity(sel, layer: int, neuron: int) -> None:
    pur = loaders.purity(sel.path)
    frame = loaders.purity_frame(sel.path)
    p = frame[(frame.layer == layer) & (frame.neuron == neuron)].iloc[0]
    c = st.columns(2)
    c[0].metric("purity", f"{p.purity:.2f}", help=f"share of the top-{pur.k} in the majority category")
    c[1].metric("type purity", f"{p.type_purity:.2f}", help="each distinct token counted once")
    # Its own full-width row: in a third of this column a name such as 'punctuation' was cut off.
    st.metric("majority", render.md_text(p.category), help=f"{int(p.n_distinct)} distinct top tokens")
    st.caption(f"chance purity of {pur.k} random tokens: {pur.chance_purity:.2f}; "
               f"base rate of '{render.md_text(p.category)}': {pur.base_rates.get(p.category, float('nan')):.2f}")


sel = run_picker.require_selection()
st.title("Neurons")
if not loaders.has_neuron_index(sel.path):
    st.info(f"No neuron index for {render.md_code(sel.name)} yet: run {render.md_code(f'tinyinterp analyze neurons {sel.path}')}.")
    st.stop()
index = guard.attempt("neuron index", loaders.neuron_index, sel.path)
if index is None:
    st.stop()
st.caption(f"{index.n_layers} layers × {index.d_mlp} MLP neurons, top-{index.k} over "
           f"{int(index.meta.get('n_tokens', 0)):,} tokens")
controls, main = st.columns([1, 3])
with controls:
    layer, neuron = _pickers(index, sel)
st.query_params["layer"], st.query_params["neuron"] = str(layer), str(neuron)
with main:
    if st.session_state.get(BAD_LINK_KEY):
        st.error(render.md_text(st.session_state[BAD_LINK_KEY]))  # quotes the link's own values
    else:
        _detail(index, sel, layer, neuron)
