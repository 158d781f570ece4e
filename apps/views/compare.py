"""Compare page: two models' neuron purity distributions and head-class counts side by side.

Either a comparison saved by ``tinyinterp analyze compare`` (``analysis/compare/<a>__vs__<b>/``) or any
two runs under the root that both have neuron purity and head results (their profiles are built with
:meth:`tinyinterp.interp.compare.ModelProfile.from_results`, the same summary a saved comparison keeps).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from apps import data, session
from tinyinterp.interp.compare import COMPARISON_FILE, ComparisonResult, ModelProfile
from tinyinterp.interp.heads import HEAD_CLASSES


@st.cache_resource(show_spinner="Summarising…", max_entries=8)
def _profile(run: str, versions: tuple[float, ...]) -> ModelProfile:
    from pathlib import Path

    path = Path(run)
    return ModelProfile.from_results(data.model_for(path), data.purity(path), data.heads(path))


def _run_profile(sel, name: str) -> ModelProfile | None:
    path = sel.root.resolve_run(name)
    if not (data.has_purity(path) and data.has_heads(path)):
        st.warning(f"`{name}` has no purity or head results; run `tinyinterp analyze neurons` and `heads` on it")
        return None
    return _profile(str(path), (data.mtime(data.neurons_dir(path)), data.mtime(data.heads_dir(path)), data.model_version(path)))


def _side_by_side(a: ModelProfile, b: ModelProfile, label_a: str, label_b: str) -> None:
    cols = st.columns(2)
    for col, p, label in zip(cols, (a, b), (label_a, label_b)):
        with col:
            st.subheader(label)
            st.caption(f"{p.name}: {p.n_layers} layers × {p.d_mlp} neurons, {p.n_heads} heads per layer")
            m = st.columns(3)
            m[0].metric("mean purity", f"{p.mean_purity:.3f}", help=f"chance: {p.chance_purity:.3f}")
            m[1].metric("mean type purity", f"{p.mean_type_purity:.3f}")
            m[2].metric("role neurons", f"{100 * p.share_role:.1f}%")
            h = st.columns(len(HEAD_CLASSES))
            for hc, cls in zip(h, HEAD_CLASSES):
                hc.metric(f"{cls} heads", p.head_counts.get(cls, 0))
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


sel = session.require_selection()
st.title("Compare")
saved = data.comparisons(sel.path)
runs = session.list_runs(str(sel.root.path))
modes = (["saved comparison"] if saved else []) + ["two runs"]
mode = st.radio("Compare", modes, horizontal=True, key="compare_mode")
if mode == "saved comparison":
    names = [p.name for p in saved]
    choice = st.selectbox("Comparison", names, key="compare_saved")
    folder = saved[names.index(choice)]
    result: ComparisonResult = data.comparison(str(folder), data.mtime(folder / COMPARISON_FILE))
    _side_by_side(result.a, result.b, f"A: {result.a.name}", f"B: {result.b.name}")
    with st.expander("Text summary"):
        st.code(result.format(), language=None)
    if result.corpus:
        st.caption(f"corpus: {result.corpus}")
else:
    c1, c2 = st.columns(2)
    name_a = c1.selectbox("Model A", runs, index=runs.index(sel.name), key="compare_a")
    others = [r for r in runs if r != name_a] or runs
    name_b = c2.selectbox("Model B", runs, index=runs.index(others[0]), key="compare_b")
    profile_a, profile_b = _run_profile(sel, name_a), _run_profile(sel, name_b)
    if profile_a is not None and profile_b is not None:
        _side_by_side(profile_a, profile_b, f"A: {name_a}", f"B: {name_b}")
