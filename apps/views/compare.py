"""Compare page: two models' neuron purity distributions and head-class counts side by side.

Either a comparison saved by ``tinyinterp analyze compare`` (``analysis/compare/<a>__vs__<b>/``) or any
two runs under the root that both have neuron purity and head results (their profiles are built with
:meth:`tinyinterp.interp.compare.ModelProfile.from_results`, the same summary a saved comparison keeps).
Each side is labelled by its own name (a saved result whose two names are equal, e.g. both
``tinystories-1m``, is labelled from its folder ``<a>__vs__<b>``); two runs whose neuron indexes saw
different numbers of tokens get a warning, since top-k purity depends on the corpus size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from apps import guard, loaders, render, run_picker
from tinyinterp.interp.compare import COMPARISON_FILE, ComparisonResult, ModelProfile, profile_names
from tinyinterp.interp.heads import HEAD_CLASSES


@st.cache_resource(show_spinner="Summarising…", max_entries=8)
def _profile(run: str, versions: tuple[float, ...]) -> ModelProfile:
    from pathlib import Path

    path = Path(run)
    return ModelProfile.from_results(loaders.model_for(path), loaders.purity(path), loaders.heads(path), name=path.name)


def _run_profile(sel, name: str) -> ModelProfile | None:
    path = sel.root.resolve_run(name)
    if not (loaders.has_purity(path) and loaders.has_heads(path)):
        st.warning(f"{render.md_code(name)} has no purity or head results; run `tinyinterp analyze neurons` and `heads` on it")
        return None
    key = guard.attempt(name, lambda: (loaders.purity_key(path), loaders.heads_key(path), loaders.model_key(path)))
    return None if key is None else guard.attempt(name, _profile, key[2][0], tuple(v for _, v in key))


def saved_labels(folder, result: ComparisonResult) -> tuple[str, str]:
    """The two sides' labels: their saved names, or (when equal) the folder's ``<a>__vs__<b>`` parts."""
    a, b = result.a.name, result.b.name
    if a == b and "__vs__" in folder.name:
        a, b = folder.name.split("__vs__", 1)
    return profile_names(a, b)


def index_tokens(run) -> int | None:
    """How many tokens a run's neuron index saw (None without a readable index)."""
    try:
        return int(loaders.neuron_index(run).meta.get("n_tokens", 0))
    except Exception:  # the profile above already reported a broken index in one line
        return None


def corpus_size_warning(sel, name_a: str, name_b: str) -> None:
    sizes = {n: index_tokens(sel.root.resolve_run(n)) for n in (name_a, name_b)}
    if None not in sizes.values() and sizes[name_a] != sizes[name_b]:
        st.warning(f"The neuron indexes were built on different corpus sizes ({render.md_text(name_a)}: "
                   f"{sizes[name_a]:,} tokens, {render.md_text(name_b)}: {sizes[name_b]:,} tokens): top-k purity depends on it, so the numbers are not "
                   "directly comparable. Rebuild both on the same corpus (`tinyinterp analyze neurons --corpus`).")


def _side_by_side(a: ModelProfile, b: ModelProfile, label_a: str, label_b: str) -> None:
    cols = st.columns(2)
    for col, p, label in zip(cols, (a, b), (label_a, label_b)):
        with col:
            st.subheader(render.md_text(label))  # names come from comparison.json / folder names: text only
            st.caption(f"{render.md_text(p.name)}: {p.n_layers} layers × {p.d_mlp} neurons, {p.n_heads} heads per layer")
            m = st.columns(3)
            m[0].metric("mean purity", f"{p.mean_purity:.3f}", help=f"chance: {p.chance_purity:.3f}")
            m[1].metric("mean type purity", f"{p.mean_type_purity:.3f}")
            m[2].metric("role neurons", f"{100 * p.share_role:.1f}%")
            h = st.columns(len(HEAD_CLASSES))
            for hc, cls in zip(h, HEAD_CLASSES):
                hc.metric(f"{cls} heads", render.md_text(p.head_counts.get(cls, 0)))  # metric values are Markdown
    bins = len(a.purity_histogram[0]) if a.purity_histogram else 10
    labels = [f"{i / bins:.1f}–{(i + 1) / bins:.1f}" for i in range(bins)]

    def share(p: ModelProfile) -> np.ndarray:
        counts = np.asarray(p.purity_histogram, dtype=float).sum(0)
        return counts / max(counts.sum(), 1)

    st.subheader("Purity distribution (share of neurons per purity bin, all layers)")
    st.bar_chart(pd.DataFrame({label_a: share(a), label_b: share(b)}, index=labels), stack=False,
                 x_label="purity", y_label="share of neurons", height=280)
    left, right = st.columns(2)
    with left:
        st.subheader("Mean purity per layer")
        per_layer = pd.DataFrame({label_a: pd.Series([r["mean_purity"] for r in a.purity_by_layer]),
                                  label_b: pd.Series([r["mean_purity"] for r in b.purity_by_layer])})
        st.line_chart(per_layer, x_label="layer", y_label="mean purity", height=240)
    with right:
        st.subheader("Head classes")
        heads = pd.DataFrame({label_a: [a.head_counts.get(c, 0) for c in HEAD_CLASSES],
                              label_b: [b.head_counts.get(c, 0) for c in HEAD_CLASSES]}, index=list(HEAD_CLASSES))
        st.bar_chart(heads, stack=False, height=240)
    st.dataframe(pd.DataFrame({"metric": ["mean purity", "chance purity", "mean type purity", "role neurons", *HEAD_CLASSES],
                               label_a: _column(a), label_b: _column(b)}), hide_index=True)


def _column(p: ModelProfile) -> list[str]:
    return [f"{p.mean_purity:.3f}", f"{p.chance_purity:.3f}", f"{p.mean_type_purity:.3f}", f"{100 * p.share_role:.1f}%",
            *[str(p.head_counts.get(c, 0)) for c in HEAD_CLASSES]]


sel = run_picker.require_selection()
st.title("Compare")
saved = loaders.comparisons(sel.path)
runs = run_picker.list_runs(str(sel.root.path))
modes = (["saved comparison"] if saved else []) + ["two runs"]
mode = st.radio("Compare", modes, horizontal=True, key="compare_mode")
if mode == "saved comparison":
    names = [p.name for p in saved]
    choice = st.selectbox("Comparison", names, key="compare_saved")
    folder = saved[names.index(choice)]
    result = guard.attempt(f"{choice}/{COMPARISON_FILE}", loaders.comparison, folder)
    if result is not None:
        with guard.panel(f"{choice}/{COMPARISON_FILE}"):
            label_a, label_b = saved_labels(folder, result)
            _side_by_side(result.a, result.b, f"A: {label_a}", f"B: {label_b}")
            with st.expander("Text summary"):
                st.code(result.format(), language=None)
            if result.corpus:
                st.caption(f"corpus: {render.md_text(result.corpus)}")
        st.caption("choose “two runs” above to compare any two runs instead")
else:
    c1, c2 = st.columns(2)
    name_a = c1.selectbox("Model A", runs, index=runs.index(sel.name), key="compare_a")
    others = [r for r in runs if r != name_a] or runs
    name_b = c2.selectbox("Model B", runs, index=runs.index(others[0]), key="compare_b")
    profile_a, profile_b = _run_profile(sel, name_a), _run_profile(sel, name_b)
    if profile_a is not None and profile_b is not None:
        corpus_size_warning(sel, name_a, name_b)
        with guard.panel("comparison"):
            _side_by_side(profile_a, profile_b, f"A: {name_a}", f"B: {name_b}")
