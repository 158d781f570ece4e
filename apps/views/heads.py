"""Heads page: the local / semantic / mixed classification of every attention head, and live patterns.

The table holds every metric of :class:`tinyinterp.interp.HeadResult`, the winning factor beside the
class (sortable by clicking a column, or with the sort picker; filter by class). Next to it a layers x
heads grid coloured by class gives the overview; a click on a cell opens that head in the panel below.
Below that, the chosen heads' attention patterns on any text are drawn with circuitsvis
``attention_heads`` (inlined, offline), and their distance profiles as lines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from apps import guard, head_panels, loaders, render, run_picker
from tinyinterp.interp.heads import HEAD_CLASSES, HEADS_FILE, METRICS

DEFAULT_TEXT = 'One day, Lily saw a big red ball in the park. She ran to the ball and said: "I like it!" Tom smiled at Lily.'


@st.cache_data(show_spinner=False, max_entries=16)
def _attention_html(tokens: tuple[str, ...], patterns: np.ndarray, names: tuple[str, ...]) -> str:
    return render.attention_vis(tokens, patterns, names)  # 1.3 MB of inlined bundle: build it once


def _head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


# Streamlit colour names for the grid cells (markdown ``:colour[...]``); a bare string here would be
# printed on the page by Streamlit's "magic".
CLASS_COLOURS = {"local": "blue", "semantic": "green", "mixed": "gray"}
FIRST_COLUMNS = ["layer", "head", "head_class", "factor", "margin", "factor_margin"]


def _cell_label(cls: str) -> str:
    letter = cls[:1].upper() if cls in CLASS_COLOURS else "?"  # a class from the file is never Markdown here
    return f":{CLASS_COLOURS.get(cls, 'gray')}[**{letter}**]"


def _grid(frame: pd.DataFrame) -> None:
    """Layers x heads, one button per head labelled and coloured by class; a click opens the head."""
    st.caption(" · ".join(f"{_cell_label(c)} {c}" for c in HEAD_CLASSES) + " — click a head to open it")
    n_heads = int(frame["head"].max()) + 1
    rows = frame.set_index(["layer", "head"])
    for layer in sorted(frame.layer.unique()):
        cols = st.columns([1] + [1] * n_heads, gap="small")
        cols[0].markdown(f"`L{layer}`")
        for head in range(n_heads):
            row = rows.loc[(layer, head)]
            factor = row["factor"] or "—"
            cols[1 + head].button(
                _cell_label(str(row["head_class"])), key=f"head_cell_{layer}_{head}",
                help=f"{_head_name(layer, head)}: {render.md_text(str(row['head_class']))} · "
                     f"{render.md_text(str(factor))} (margin {row['margin']:.2f})",  # data-file strings: text
                on_click=head_panels.open_head, args=(int(layer), head), width="stretch")


def _table(frame: pd.DataFrame, result) -> None:
    counts = result.counts()
    cols = st.columns(len(HEAD_CLASSES) + 1)
    for col, cls in zip(cols, HEAD_CLASSES):
        col.metric(f"{cls} heads", counts[cls])
    cols[-1].metric("sample", f"{result.n_samples} × {result.seq_len} tokens")
    c1, c2, c3 = st.columns([2, 2, 1])
    classes = c1.multiselect("Classes", list(HEAD_CLASSES), default=list(HEAD_CLASSES), key="head_classes")
    sort_by = c2.selectbox("Sort by", ["layer", *METRICS], key="head_sort")
    reverse = c3.toggle("reverse", key="head_reverse", help="layer sorts ascending, metrics descending; this flips it")
    ascending = (sort_by == "layer") != reverse
    shown = frame[frame.head_class.isin(classes)].sort_values(sort_by, ascending=ascending, kind="stable")
    shown = shown.reset_index(drop=True)
    shown = shown[FIRST_COLUMNS + [c for c in shown.columns if c not in FIRST_COLUMNS]]
    table, grid = st.columns([3, 2])
    with table:
        picked = st.dataframe(shown, hide_index=True, width="stretch", key="heads_table", on_select="rerun",
                              selection_mode="single-row",
                              column_config={m: st.column_config.NumberColumn(format="%.3f") for m in METRICS})
        head_panels.apply_table_selection(picked, shown)  # a selected row opens that head below
    with grid:
        _grid(frame)
    st.caption(f"{len(shown)} of {len(frame)} heads · select a row or a grid cell to open its circuits · "
               f"thresholds: {render.md_text(result.thresholds)}")


def _default_heads(result, names: list[str]) -> list[str]:
    """One head of each of the first two classes present, else the first two heads."""
    by_class = result.by_class()
    picks = [_head_name(*by_class[c][0]) for c in HEAD_CLASSES if by_class[c]][:2]
    return picks + [n for n in names if n not in picks][: 2 - len(picks)]


def _patterns(sel, result) -> None:
    """Live patterns need only the model; the distance profiles also need the analysis (``result``)."""
    st.header("Attention patterns on your text")
    model = guard.attempt("model", loaders.model_for, sel.path)
    if model is None:
        return
    names = [_head_name(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    defaults = _default_heads(result, names) if result is not None else names[:2]
    chosen = st.multiselect("Heads", names, default=[n for n in defaults if n in names], key="pattern_heads")
    text = st.text_area("Text", DEFAULT_TEXT, key="pattern_text", height=90)
    if not chosen or not text.strip():
        st.caption("choose at least one head and enter some text")
        return
    pairs = [(int(n[1:].split("H")[0]), int(n.split("H")[1])) for n in chosen]
    tokens, by_layer = loaders.attention_patterns(sel.path, text, tuple(sorted({l for l, _ in pairs})))
    if not tokens:
        st.caption("the text is empty after tokenization")
        return
    patterns = np.stack([by_layer[l][h] for l, h in pairs])  # (heads, T, T)
    st.iframe(_attention_html(tuple(tokens), patterns, tuple(chosen)), height=620)
    st.subheader("Distance profile (mean attention by offset, from the analysis sample)")
    if result is None:
        st.caption(f"needs {HEADS_FILE}: run {render.md_code(f'tinyinterp analyze heads {sel.path}')}")
        return
    with guard.panel(HEADS_FILE):
        profile = pd.DataFrame({n: result.kernel[l, h][:24] for n, (l, h) in zip(chosen, pairs)})
        st.line_chart(profile, x_label="query − key distance", y_label="mean attention", height=220)


sel = run_picker.require_selection()
st.title("Heads")
result = None
if not loaders.has_heads(sel.path):
    st.info(f"No head analysis for {render.md_code(sel.name)} yet: run {render.md_code(f'tinyinterp analyze heads {sel.path}')}.")
else:
    with guard.panel(HEADS_FILE):
        frame = loaders.heads_frame(sel.path)
        result = loaders.heads(sel.path)
        _table(frame, result)
head_panels.head_panel(sel, result, st.session_state.get("pattern_text", DEFAULT_TEXT))
_patterns(sel, result)
