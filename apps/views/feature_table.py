"""Feature table page: every feature of one dictionary of the run in one sortable, filterable table.

Columns: feature, density (share of the indexed tokens where it is active), L0 share (its share of all
active (token, feature) pairs: density / Σ density, so the column sums to 1), max and mean activation
(the feature index), explanation score and text (``tinyinterp explain RUN --dict DIR``; best explainer, or
the one chosen), top tokens. Sort with the picker or a column header; selecting a row opens that feature's
page, and the ``open`` column is its stable link (``/features?run=&dict=&feature=``). Tokens and
explanations are drawn by the data grid as canvas text, never as HTML.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from apps import dictionary_data, feature_queries, guard, queries, render, run_picker
from tinyinterp.errors import TinyinterpError

BEST = "best of any explainer"
SORTABLE = ("density", "L0 share", "score", "max", "mean", "feature")
DICT_KEY = "ftable_dict"


def _open_feature(name: str, shown) -> None:
    """A selected row: hand its feature to the feature page (pickers + stable link) and go there."""
    state = st.session_state.get("feature_table")
    rows = list(getattr(getattr(state, "selection", None), "rows", []) or [])
    if not rows or rows[0] >= len(shown):
        return
    feature = int(shown.iloc[rows[0]].feature)
    st.session_state["feature_dict"], st.session_state["feature_id"] = name, feature  # the page's pickers
    st.session_state["_feature_linked"] = (sel.name, name)
    st.session_state["_feature_dict_requested"] = (sel.name, name)
    st.session_state.pop("_feature_bad_link", None)
    st.session_state.pop("_run_requested", None)  # st.switch_page drops the sidebar picker's state: re-read ?run=
    st.switch_page("views/features.py", query_params={"run": sel.name, "dict": name, "feature": str(feature)})


sel = run_picker.require_selection()
st.title("Feature table")
names = dictionary_data.dictionary_names(sel.path)
if not names:
    st.info(f"No dictionaries for {render.md_code(sel.name)} yet: train one with "
            f"{render.md_code(f'tinyinterp sae train {sel.path} --hook blocks.0.hook_resid_post --k 16')}.")
    st.stop()
requested = st.query_params.get("dict")
if DICT_KEY not in st.session_state and requested in names:  # a link to one dictionary's table
    st.session_state[DICT_KEY] = requested
if st.session_state.get(DICT_KEY) not in names:
    st.session_state[DICT_KEY] = feature_queries.default_dictionary(sel.path, names)
name = st.selectbox("Dictionary", names, key=DICT_KEY)
st.query_params["dict"] = name
try:
    indexed = feature_queries.has_index(sel.path, name)
except TinyinterpError as e:
    guard.show(f"dictionary {name}", e)
    st.stop()
if not indexed:
    command = f"tinyinterp analyze features {sel.path} --dict {dictionary_data.dictionary_dir(sel.path, name)}"
    st.info(f"No feature index for this dictionary yet: run {render.md_code(command)}.")
    st.stop()
folder = feature_queries.explanations_folder(sel.path, name)
explainer, notes, hint = None, [], None
loaded = guard.attempt("explanations", queries.explanations_with_notes_in, folder) if queries.explanations_version_in(folder) else None
if loaded is not None:
    notes = list(loaded[1])
    slugs = sorted(loaded[0].explainer.dropna().unique())
    if slugs:
        choice = st.selectbox("Explanations", [BEST, *slugs], key="ftable_explainer")
        explainer = None if choice == BEST else choice
else:
    hint = f"no explanations: scores are empty ({render.md_code(f'tinyinterp explain {sel.path} --dict DIR')})"
table = guard.attempt("feature table", feature_queries.feature_table, sel.path, name, explainer)
if table is None:
    st.stop()
for note in notes:  # malformed explanation records: skipped, counted, their file named
    st.caption(render.md_text(note))
if hint:
    st.caption(hint)

c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
query = c1.text_input("Top tokens / explanation contain", key="ftable_query", placeholder="Lily")
min_density = c2.number_input("min density", 0.0, 1.0, 0.0, 0.01, key="ftable_min_density", format="%.3f")
with_explanations = table["score"].notna().any()
sort_by = c3.selectbox("Sort by", SORTABLE, index=SORTABLE.index("score" if with_explanations else "density"),
                       key="ftable_sort")
ascending = c4.toggle("ascending", key="ftable_ascending")

shown = table
if min_density > 0:
    shown = shown[shown.density >= min_density]
if query:
    needle = query.lower()
    text = shown.top_tokens.fillna("").str.lower() + "\n" + shown.explanation.fillna("").str.lower()
    shown = shown[text.str.contains(needle, regex=False)]
shown = shown.sort_values([sort_by, "feature"], ascending=[ascending, True], na_position="last",
                          kind="stable").reset_index(drop=True)
shown.insert(0, "open", [f"features?{urlencode({'run': sel.name, 'dict': name, 'feature': int(f)})}" for f in shown.feature])
dead = int((table.density == 0).sum())
st.caption(f"{len(shown):,} of {len(table):,} features · {dead} never active in the indexed tokens · "
           "select a row to open the feature")
number = {c: st.column_config.NumberColumn(format="%.4f") for c in ("density", "L0 share", "max", "mean", "score")}
st.dataframe(shown, hide_index=True, key="feature_table", on_select="rerun", selection_mode="single-row",
             height=520, column_config={**number, "open": st.column_config.LinkColumn("open", display_text="open",
                                                                                     width="small")})
_open_feature(name, shown)
st.caption("density: share of indexed tokens where the feature is active; L0 share: its share of all active "
           "(token, feature) pairs; score: simulation correlation of its explanation")
