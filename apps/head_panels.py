"""The heads page's per-head panel: QK/OV circuits (``tinyinterp.interp.circuits.head_circuit``) beside the
head's attention pattern, for the head picked in the table (select a row), in the pickers, or by a link
``/heads?layer=&head=`` (validated: a head the model does not have says so and shows none).

Token strings go through :func:`apps.render.escape_token` (the OV/QK tables are HTML); the pattern is an
Altair heatmap, whose axis labels Vega draws as text. No iframe here: the page's only iframe stays the
circuitsvis view of the chosen heads below.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps import guard, loaders, queries, render
from apps.runs_root import checked_int

LAYER_KEY, HEAD_KEY = "circuit_layer", "circuit_head"
BAD_LINK_KEY, APPLIED_KEY = "_head_bad_link", "_heads_table_applied"


def _link_problem(n_layers: int, n_heads: int) -> str | None:
    raw = {name: st.query_params.get(name) for name in ("layer", "head")}
    if all(v is None for v in raw.values()):
        return None
    layer = checked_int(raw["layer"], 0, n_layers - 1) if raw["layer"] is not None else 0
    head = checked_int(raw["head"], 0, n_heads - 1) if raw["head"] is not None else 0
    if layer is not None and head is not None:
        return None
    return (f"The link asks for layer {raw['layer']}, head {raw['head']}, which this model does not have "
            f"(layers 0–{n_layers - 1}, heads 0–{n_heads - 1}). Pick a head in the table or below.")


def _clear_bad_link() -> None:
    st.session_state.pop(BAD_LINK_KEY, None)


def open_head(layer: int, head: int) -> None:
    """Make (layer, head) the chosen head (a click in the class grid); a callback, so before the pickers exist."""
    st.session_state[LAYER_KEY], st.session_state[HEAD_KEY] = int(layer), int(head)
    _clear_bad_link()


def apply_table_selection(selection, shown: pd.DataFrame) -> None:
    """A row selected in the heads table becomes the chosen head (once per new selection)."""
    rows = list(getattr(getattr(selection, "selection", None), "rows", []) or [])
    if not rows or rows[0] >= len(shown):
        st.session_state.pop(APPLIED_KEY, None)
        return
    row = shown.iloc[rows[0]]
    picked = (int(row["layer"]), int(row["head"]))  # not row.head: that is Series.head
    if st.session_state.get(APPLIED_KEY) != picked:
        st.session_state[APPLIED_KEY] = picked
        st.session_state[LAYER_KEY], st.session_state[HEAD_KEY] = picked
        _clear_bad_link()


def _pickers(n_layers: int, n_heads: int) -> tuple[int, int]:
    if LAYER_KEY not in st.session_state:  # first visit: take the deep link, if any
        problem = _link_problem(n_layers, n_heads)
        if problem:
            st.session_state[BAD_LINK_KEY] = problem
        for key, name, high in ((LAYER_KEY, "layer", n_layers - 1), (HEAD_KEY, "head", n_heads - 1)):
            value = checked_int(st.query_params.get(name), 0, high)
            st.session_state[key] = 0 if value is None else value
    st.session_state[LAYER_KEY] = min(st.session_state[LAYER_KEY], n_layers - 1)
    st.session_state[HEAD_KEY] = min(st.session_state[HEAD_KEY], n_heads - 1)
    c1, c2, _ = st.columns([1, 1, 4])
    layer = c1.selectbox("Layer", list(range(n_layers)), key=LAYER_KEY, on_change=_clear_bad_link)
    head = c2.selectbox("Head", list(range(n_heads)), key=HEAD_KEY, on_change=_clear_bad_link)
    return int(layer), int(head)


def _pairs_html(rows, left: str, right: str) -> str:
    def cell(token: str) -> str:
        return f'<td style="font-family:monospace">{render.escape_token(str(token).replace(" ", "␣"))}</td>'

    body = "".join(f"<tr>{cell(a)}<td>→</td>{cell(b)}<td>{float(v):.3f}</td></tr>" for a, b, v in rows)
    return (f'<table class="circuit" style="font-size:0.85em"><tr><th>{left}</th><th></th><th>{right}</th>'
            f"<th>value</th></tr>{body}</table>")


def _pattern_chart(tokens: list[str], pattern) -> None:
    import altair as alt

    labels = [f"{i} {t}" for i, t in enumerate(tokens)]
    T = len(tokens)
    frame = pd.DataFrame({"query": [labels[q] for q in range(T) for _ in range(T)],
                          "key": [labels[k] for _ in range(T) for k in range(T)],
                          "attention": pattern[:T, :T].reshape(-1)})
    chart = alt.Chart(frame[frame.attention > 0]).mark_rect().encode(
        x=alt.X("key:N", sort=labels), y=alt.Y("query:N", sort=labels),
        color=alt.Color("attention:Q", scale=alt.Scale(scheme="blues", domain=[0, 1])),
        tooltip=["query", "key", alt.Tooltip("attention:Q", format=".3f")])
    st.altair_chart(chart, height=360)


def head_panel(sel, result, text: str) -> None:
    """The chosen head: its class (from the analysis, if any), QK/OV circuits, and its pattern on ``text``."""
    st.header("One head: QK/OV circuits beside its pattern")
    model = guard.attempt("model", loaders.model_for, sel.path)
    if model is None:
        return
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    layer, head = _pickers(n_layers, n_heads)
    if st.session_state.get(BAD_LINK_KEY):
        st.error(render.md_text(st.session_state[BAD_LINK_KEY]))  # quotes the link's own values
        return
    st.query_params["layer"], st.query_params["head"] = str(layer), str(head)
    with guard.panel("QK/OV circuits"):
        circuit = queries.head_circuit(sel.path, layer, head)
        cols = st.columns(5)
        cols[0].metric("head", f"L{layer}H{head}")
        if result is not None:
            with guard.panel("heads.json"):
                row = result.to_frame().set_index(["layer", "head"]).loc[(layer, head)]
                cols[1].metric("class", render.md_text(row["head_class"]))
                cols[4].metric("factor", render.md_text(str(row["factor"])) or "—",
                               help="the factor that explains the head, and its explained share alone; '' in "
                                    "results analysed before the factors existed")
        cols[2].metric("OV copying score", f"{circuit['copying_score']:.2f}",
                       help="Σλ/Σ|λ| over the eigenvalues of the full OV circuit: 1 copies, −1 suppresses")
        cols[3].metric("self top-1", f"{circuit['self_top1']:.2f}",
                       help="share of tokens whose own logit is the largest in their OV row")
        left, right = st.columns([2, 3])
        with left:
            st.caption("OV: attending to this token raises that logit most")
            st.html(_pairs_html(circuit["ov_top"][:12], "attended", "output"))
            st.caption("QK: query token → key token it prefers most")
            st.html(_pairs_html(circuit["qk_top"][:12], "query", "key"))
        with right:
            st.caption("positional QK score by distance (query − key)")
            st.line_chart(pd.DataFrame({"positional QK": circuit["qk_distance"]}), height=160,
                          x_label="distance", y_label="score")
            st.caption("the head's attention on the text below")
            tokens, by_layer = loaders.attention_patterns(sel.path, text, (layer,))
            if tokens:
                _pattern_chart(tokens[:48], by_layer[layer][head])
        st.caption("direct path: embeddings through this head's LayerNorm alone (positions and earlier layers "
                   "ignored), ln_final folded into W_U")
