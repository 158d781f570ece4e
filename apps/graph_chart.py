"""The Attribution page's drawing: the graph as layered Altair / Vega-Lite marks (bundled with Streamlit: offline).

``st.html`` sanitises with DOMPurify's HTML profile, which drops inline SVG, so the graph is drawn by Vega, which
renders every string (tokens, labels, tooltips) as text: Vega's text marks write SVG/canvas text, and its tooltip
handler escapes HTML. Positions come from :func:`apps.graph_view.layout` (rows: embeddings at the bottom, layers,
logits on top; columns: prompt positions). Edges are rules coloured by sign (blue +, red −) with width and opacity
by |weight|. A click on a node selects it (a Vega point selection; Streamlit reruns the page with it), and the
page opens that node: its details, its feature page's link, and it joins the intervention's features.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from apps.graph_view import MAX_LABEL, PAD_L, PAD_T, ROW_H, GraphView, describe, layout, shown_links, visible_text
from apps.render import NEGATIVE_RGB, POSITIVE_RGB

SELECTION = "node_pick"
"""The chart's click selection (Streamlit reruns with ``{"node_pick": [{"node": id}]}``)."""
KIND_SHAPES = {"feature": "circle", "error": "square", "embedding": "square", "logit": "diamond"}
KIND_COLOURS = {"feature": "#f3c86a", "error": "#bbbbbb", "embedding": "#9ec5e8", "logit": "#7bc47f"}


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def picked_node(event) -> str | None:
    """The node id a click selected (from ``st.altair_chart(..., on_select="rerun")``'s event), else None."""
    selection = getattr(event, "selection", None) or (event.get("selection") if isinstance(event, dict) else None) or {}
    picked = selection.get(SELECTION) if hasattr(selection, "get") else None
    if isinstance(picked, list) and picked and isinstance(picked[0], dict) and isinstance(picked[0].get("node"), str):
        return picked[0]["node"]
    return None


def chart_frames(view: GraphView, max_links: int = 300, highlight: set[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, float, float]:
    """Nodes, edges, row bands and token labels as tables (y grows upwards), plus the drawing's width and height."""
    where, width, height, lefts = layout(view)
    highlight = highlight or set()
    nodes = pd.DataFrame([{
        "node": n.node_id, "kind": n.kind, "x": where[n.node_id][0], "y": height - where[n.node_id][1],
        "label": visible_text(n.label, MAX_LABEL) if n.kind in ("embedding", "logit") else "",
        "about": describe(n, view.prompt_tokens), "on_path": n.node_id in highlight,
    } for n in view.nodes.values()], columns=["node", "kind", "x", "y", "label", "about", "on_path"])
    links = shown_links(view, max_links)
    top = max((abs(l.weight) for l in links), default=0.0) or 1.0
    edges = pd.DataFrame([{
        "x": where[l.source][0], "y": height - where[l.source][1], "x2": where[l.target][0],
        "y2": height - where[l.target][1], "weight": l.weight, "strength": abs(l.weight) / top,
        "sign": "positive" if l.weight >= 0 else "negative", "link": f"{l.source} → {l.target}",
    } for l in sorted(links, key=lambda l: abs(l.weight))],
        columns=["x", "y", "x2", "y2", "weight", "strength", "sign", "link"])
    n_rows = view.n_layers + 2
    rows = pd.DataFrame([{"row": "Emb" if r == 0 else "Lgt" if r == n_rows - 1 else f"L{r - 1}",
                          "x": PAD_L - 8, "y": height - (PAD_T + (n_rows - 1 - r) * ROW_H + ROW_H / 2),
                          "y0": height - (PAD_T + (n_rows - 1 - r) * ROW_H),
                          "y1": height - (PAD_T + (n_rows - r) * ROW_H), "band": r % 2} for r in range(n_rows)])
    rows["x0"], rows["x1"] = float(PAD_L), float(width - 10)
    tokens = pd.DataFrame([{"x": lefts[p] + 4, "y": height - (PAD_T + n_rows * ROW_H + 8), "token": visible_text(t, MAX_LABEL),
                            "text": visible_text(t), "pos": p} for p, t in enumerate(view.prompt_tokens)],
                          columns=["x", "y", "token", "text", "pos"])
    return nodes, edges, rows, tokens, width, height


def graph_chart(view: GraphView, max_links: int = 300, highlight: set[str] | None = None) -> alt.LayerChart:
    nodes, edges, rows, tokens, width, height = chart_frames(view, max_links, highlight)
    x = alt.X("x:Q", scale=alt.Scale(domain=[0, width]), axis=None)
    y = alt.Y("y:Q", scale=alt.Scale(domain=[0, height]), axis=None)
    bands = alt.Chart(rows).mark_rect(opacity=0.5).encode(
        x=alt.X("x0:Q", scale=alt.Scale(domain=[0, width]), axis=None), x2="x1:Q",
        y=alt.Y("y0:Q", scale=alt.Scale(domain=[0, height]), axis=None), y2="y1:Q",
        color=alt.Color("band:N", scale=alt.Scale(domain=[0, 1], range=["#f3f1ea", "#fbfaf7"]), legend=None))
    row_labels = alt.Chart(rows).mark_text(align="right", color="#555").encode(x=x, y=y, text="row:N")
    rules = alt.Chart(edges).mark_rule().encode(
        x=x, y=y, x2="x2:Q", y2="y2:Q",
        color=alt.Color("sign:N", scale=alt.Scale(domain=["positive", "negative"],
                                                  range=[_hex(POSITIVE_RGB), _hex(NEGATIVE_RGB)]), legend=None),
        strokeWidth=alt.StrokeWidth("strength:Q", scale=alt.Scale(domain=[0, 1], range=[1.2, 6.0]), legend=None),
        opacity=alt.Opacity("strength:Q", scale=alt.Scale(domain=[0, 1], range=[0.45, 0.95]), legend=None),
        tooltip=[alt.Tooltip("link:N"), alt.Tooltip("weight:Q", format=".4g")])
    points = alt.Chart(nodes).mark_point(filled=True, size=110, strokeWidth=1.5).encode(
        x=x, y=y,
        shape=alt.Shape("kind:N", scale=alt.Scale(domain=list(KIND_SHAPES), range=list(KIND_SHAPES.values())), legend=None),
        fill=alt.Fill("kind:N", scale=alt.Scale(domain=list(KIND_COLOURS), range=list(KIND_COLOURS.values())),
                      legend=alt.Legend(title=None, orient="top")),
        stroke=alt.condition("datum.on_path", alt.value("#111111"), alt.value("#666666")),
        tooltip=[alt.Tooltip("about:N", title="node"), alt.Tooltip("node:N", title="id")]).add_params(
        alt.selection_point(name=SELECTION, fields=["node"], on="click", clear="dblclick"))
    logit_labels = alt.Chart(nodes[nodes.kind == "logit"]).mark_text(dy=-10, dx=2, angle=330, align="left", color="#222").encode(x=x, y=y, text="label:N")
    token_labels = alt.Chart(tokens).mark_text(align="left", angle=35, baseline="top", color="#333").encode(
        x=x, y=y, text="token:N", tooltip=[alt.Tooltip("pos:Q"), alt.Tooltip("text:N", title="token")])
    return alt.layer(bands, row_labels, rules, points, logit_labels, token_labels).properties(
        width=width, height=height).configure_view(stroke=None)
