"""Feature page: one feature of one sparse dictionary of the run, drawn like a neuron on the neuron page.

Pick a dictionary (``RUN/analysis/dictionaries/<name>``) and a feature; the page shows its explanation and
simulation score (``tinyinterp explain RUN --dict DIR``), activation statistics, top examples with the
feature's activation on every token, top tokens, the activation histogram with an example per quantile,
the most negative examples, its logit effects (decoder direction through the unembedding) and the feature
on your own text (the model, then the dictionary's encoder). The panels are the neuron page's
(:mod:`apps.neuron_panels` with :class:`apps.units.Features`). Stable URL:
``/features?run=<run>&dict=<name>&feature=<id>``; a ``dict`` that leaves the run's dictionaries folder
(``..``, absolute, a symlink out) or a feature the dictionary does not have is one line, never another
feature. Without a feature index (``tinyinterp analyze features RUN --dict DIR``) only the own-text panel
runs.
"""

from __future__ import annotations

import streamlit as st

from apps import dictionary_data, feature_queries, guard, neuron_panels, render, run_picker, units
from apps.runs_root import checked_int
from tinyinterp.errors import TinyinterpError

DICT_KEY, FEATURE_KEY = "feature_dict", "feature_id"
BAD_LINK_KEY = "_feature_bad_link"
LINKED_KEY = "_feature_linked"  # the (run, dict) whose ?feature= was already taken


def _clear_bad_link() -> None:
    st.session_state.pop(BAD_LINK_KEY, None)


def _take_dict_link(names: list[str]) -> None:
    """First visit (or a new ?dict=): check the linked dictionary name; refuse it in one line."""
    requested = st.query_params.get("dict")
    if requested is None or st.session_state.get("_feature_dict_requested") == (sel.name, requested):
        return
    st.session_state["_feature_dict_requested"] = (sel.name, requested)
    try:
        dictionary_data.dictionary_dir(sel.path, requested)
        if requested not in names:
            raise TinyinterpError(f"dictionary {requested!r}: not one of this run's dictionaries")
    except TinyinterpError as e:
        st.session_state[BAD_LINK_KEY] = f"The link's dictionary was refused: {e}. Pick one on the left."
        return
    st.session_state[DICT_KEY] = requested
    st.session_state.pop(LINKED_KEY, None)


def _take_feature_link(name: str, width: int) -> None:
    if st.session_state.get(LINKED_KEY) == (sel.name, name):
        return
    st.session_state[LINKED_KEY] = (sel.name, name)
    raw = st.query_params.get("feature")
    if raw is None or st.session_state.get(BAD_LINK_KEY):
        st.session_state.setdefault(FEATURE_KEY, 0)
        return
    feature = checked_int(raw, 0, width - 1)
    if feature is None:
        st.session_state[BAD_LINK_KEY] = (f"The link asks for feature {raw}, which {name} does not have "
                                          f"(features 0–{width - 1}). Pick a feature on the left.")
        feature = 0
    st.session_state[FEATURE_KEY] = feature


def _width(name: str) -> int | None:
    """The dictionary's number of features (its cfg.json; else its index), or None after one line."""
    return guard.attempt(f"dictionary {name}", _width_of, name)


def _width_of(name: str) -> int:
    info = dictionary_data.info(sel.path, name)  # a folder that leaves the root or a corrupt cfg.json: raises
    if info.d_sae:
        return info.d_sae
    return feature_queries.feature_index(sel.path, name).n_features


def _detail(name: str, feature: int) -> None:
    features = units.Features(sel.path, name)
    st.header(f"{render.md_text(name)} · feature {feature}")
    info = guard.attempt(f"{name}/cfg.json", dictionary_data.info, sel.path, name)
    if info is not None:
        hooks = info.hook_in if info.hook_in == info.hook_out else f"{info.hook_in} → {info.hook_out}"
        st.caption(f"{render.md_text(info.kind)} on {render.md_code(hooks)} · {info.d_sae} features, k = {info.k}")
    if not feature_queries.has_index(sel.path, name):
        command = f"tinyinterp analyze features {sel.path} --dict {dictionary_data.dictionary_dir(sel.path, name)}"
        st.info(f"No feature index for this dictionary yet: run {render.md_code(command)} for its examples, "
                "histogram and logit effects.")
        neuron_panels.own_text(features, 0, feature)
        return
    index = guard.attempt("feature index", feature_queries.feature_index, sel.path, name)
    if index is None:
        neuron_panels.own_text(features, 0, feature)
        return
    neuron_panels.explanation(features, 0, feature)
    neuron_panels.statistics(features, 0, feature)
    k = st.slider("top examples", 1, index.k, min(10, index.k), key="feature_n_examples")
    context = st.slider("context tokens each side", 1, 32, 8, key="feature_context")
    left, right = st.columns([3, 2])
    with left:
        neuron_panels.top_examples(features, 0, feature, k, context)
    with right:
        st.subheader("Top tokens")
        with guard.panel(f"top tokens ({features.index_file})"):
            hist = feature_queries.token_histogram(sel.path, name, feature)
            if hist:
                st.html(render.bars_html(dict(list(hist.items())[:15]), colour="#e0703a"))
    neuron_panels.all_panels(features, 0, feature, context)


sel = run_picker.require_selection()
st.title("Features")
names = dictionary_data.dictionary_names(sel.path)
if not names:
    st.info(f"No dictionaries for {render.md_code(sel.name)} yet: train one with "
            f"{render.md_code(f'tinyinterp sae train {sel.path} --hook blocks.0.hook_resid_post --k 16')}.")
    st.stop()
_take_dict_link(names)
if st.session_state.get(DICT_KEY) not in names:  # first visit, or another run
    st.session_state[DICT_KEY] = feature_queries.default_dictionary(sel.path, names)
controls, main = st.columns([1, 3])
with controls:
    name = st.selectbox("Dictionary", names, key=DICT_KEY, on_change=_clear_bad_link)
    width = _width(name)
    if width is not None:
        _take_feature_link(name, width)
        st.session_state[FEATURE_KEY] = min(st.session_state.get(FEATURE_KEY, 0), width - 1)
        feature = int(st.number_input("Feature", min_value=0, max_value=width - 1, step=1, key=FEATURE_KEY,
                                      on_change=_clear_bad_link))
        st.caption(f"features 0–{width - 1}; the Feature table lists them all, sortable")
if width is None:
    st.stop()
st.query_params["dict"], st.query_params["feature"] = name, str(feature)
st.session_state["_feature_dict_requested"] = (sel.name, name)  # our own value: not a new link
with main:
    if st.session_state.get(BAD_LINK_KEY):
        st.error(render.md_text(st.session_state[BAD_LINK_KEY]))  # quotes the link's own values
    else:
        _detail(name, feature)
