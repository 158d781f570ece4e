"""Neuron table page: every MLP neuron of the run in one sortable, filterable table.

Columns: layer, neuron, majority category, purity and type purity (``purity.json``), max activation,
frequency (share of tokens where it is active) and mean (the index), explanation score and text
(``tinyinterp explain``; best explainer, or the one chosen), top tokens. Click a column header to sort
in the browser, or use the sort picker; filters narrow the rows. Selecting a row opens that neuron's
page; the ``open`` column is its stable link (``/neurons?run=&layer=&neuron=``). Tokens and explanations
are drawn by the data grid as canvas text, never as HTML.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from apps import guard, loaders, queries, render, run_picker

BEST = "best of any explainer"
SORTABLE = ("score", "type_purity", "purity", "max", "frequency", "mean", "layer")


def _open_neuron(sel, shown) -> None:
    """A selected row: hand its neuron to the neurons page (pickers + deep link) and go there."""
    state = st.session_state.get("neuron_table")
    rows = list(getattr(getattr(state, "selection", None), "rows", []) or [])
    if not rows or rows[0] >= len(shown):
        return
    row = shown.iloc[rows[0]]
    layer, neuron = int(row.layer), int(row.neuron)
    st.session_state["neuron_layer"], st.session_state["neuron_id"] = layer, neuron  # the page's pickers
    st.session_state.pop("_neuron_bad_link", None)
    st.session_state.pop("_run_requested", None)  # st.switch_page drops the sidebar picker's state: re-read ?run=
    st.switch_page("views/neurons.py", query_params={"run": sel.name, "layer": str(layer), "neuron": str(neuron)})


sel = run_picker.require_selection()
st.title("Neuron table")
if not loaders.has_neuron_index(sel.path):
    st.info(f"No neuron index for {render.md_code(sel.name)} yet: run {render.md_code(f'tinyinterp analyze neurons {sel.path}')}.")
    st.stop()
with_purity = loaders.has_purity(sel.path)
with_explanations = bool(queries.explanations_version(sel.path))
explainer = None
expl_notes: tuple[str, ...] = ()
if with_explanations:
    loaded = guard.attempt("explanations", queries.explanations_with_notes, sel.path)
    slugs = sorted(loaded[0].explainer.dropna().unique()) if loaded is not None else []
    expl_notes = loaded[1] if loaded is not None else ()
    if slugs:
        choice = st.selectbox("Explanations", [BEST, *slugs], key="table_explainer")
        explainer = None if choice == BEST else choice
    else:
        with_explanations = False
table = guard.attempt("neuron table", queries.neuron_table, sel.path, with_purity, with_explanations, explainer)
if table is None:
    st.stop()
notes = list(expl_notes)  # malformed explanation records: skipped, counted, their file named
if not with_purity:
    notes.append("no purity.json: categories and purities are empty (`tinyinterp analyze neurons`)")
if not with_explanations:
    notes.append(f"no explanations: scores are empty ({render.md_code(f'tinyinterp explain {sel.path}')})")
for note in notes:
    st.caption(render.md_text(note))

c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
layers = c1.multiselect("Layers", sorted(table.layer.unique().tolist()), key="table_layers", placeholder="all layers")
categories = c2.multiselect("Categories", sorted(table.category.dropna().unique().tolist()), key="table_categories",
                            placeholder="all categories")
min_type_purity = c3.slider("min type purity", 0.0, 1.0, 0.0, 0.05, key="table_min_type_purity")
query = c4.text_input("Top tokens / explanation contain", key="table_query", placeholder="Lily")
c5, c6, c7 = st.columns([2, 2, 4])
default_sort = "score" if with_explanations else ("type_purity" if with_purity else "max")
sort_by = c5.selectbox("Sort by", SORTABLE, index=SORTABLE.index(default_sort), key="table_sort")
ascending = c6.toggle("ascending", key="table_ascending")

shown = table
if layers:
    shown = shown[shown.layer.isin(layers)]
if categories:
    shown = shown[shown.category.isin(categories)]
if min_type_purity > 0:
    shown = shown[shown.type_purity.fillna(0) >= min_type_purity]
if query:
    needle = query.lower()
    text = shown.top_tokens.fillna("").str.lower() + "\n" + shown.explanation.fillna("").str.lower()
    shown = shown[text.str.contains(needle, regex=False)]
shown = shown.sort_values([sort_by, "layer", "neuron"], ascending=[ascending, True, True], na_position="last",
                          kind="stable").reset_index(drop=True)
shown.insert(0, "open", [f"neurons?{urlencode({'run': sel.name, 'layer': int(l), 'neuron': int(n)})}"
                         for l, n in zip(shown.layer, shown.neuron)])
c7.caption(f"{len(shown):,} of {len(table):,} neurons · select a row to open the neuron")
number = {c: st.column_config.NumberColumn(format="%.3f") for c in ("purity", "type_purity", "max", "frequency", "mean", "score")}
st.dataframe(shown, hide_index=True, key="neuron_table", on_select="rerun", selection_mode="single-row",
             height=520, column_config={**number, "open": st.column_config.LinkColumn("open", display_text="open",
                                                                                     width="small")})
_open_neuron(sel, shown)
st.caption("purity: share of the top-k occurrences in the majority category; type purity: of its distinct "
           "tokens; frequency: share of tokens where the neuron is active; score: simulation correlation")
