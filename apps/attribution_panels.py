"""The Attribution page's panels: choosing a graph (saved, or new from a prompt), the drawing, the node and path
tables, and the intervention sliders.

Every string from a graph file or a tokenizer reaches the page as SVG text escaped by :mod:`apps.graph_view`,
as a table cell, or through ``render.md_text``; links to feature pages are built here from checked integers
and the run's dictionary names (URL-encoded), never taken from the file.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from apps import attribution_queries as aq
from apps import guard, render
from apps.views import PAGE_NAMES
from apps.graph_chart import SELECTION, graph_chart, picked_node
from apps.graph_view import GraphNode, GraphView, describe, graph_svg, strongest_paths, visible_text

FEATURE_PAGE = "features"
GRAPH_PARAM = "graph"
DEFAULT_PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play with her"
OWN_PROMPT = "(type your own)"


def feature_href(run_name: str, names: dict[int, str]):
    """``node -> "features?run=…&dict=…&feature=…"`` (None when the run has no dictionary for its layer)."""
    def href(node: GraphNode) -> str | None:
        name = names.get(node.layer) if node.layer is not None else None
        if name is None or node.feature is None or node.feature < 0:
            return None
        return f"{FEATURE_PAGE}?{urlencode({'run': run_name, 'dict': name, 'feature': int(node.feature)})}"
    return href


# ----- choosing a graph ------------------------------------------------------------------------------


def saved_graph(sel) -> GraphView | None:
    """The saved graph picked in a selectbox (or named by ``?graph=<file name>``, one of the listed files)."""
    saved = guard.attempt("saved graphs", aq.saved_graphs, sel.path) or []
    if not saved:
        command = f'tinyinterp attribute {sel.path} "Once upon a time" --transcoders DIR'
        st.info(f"No saved graph for {render.md_code(sel.name)} yet: run {render.md_code(command)} "
                "or compute one from a prompt here.")
        return None
    names = [p.name for p in saved]
    requested = st.query_params.get(GRAPH_PARAM)
    if requested is not None and st.session_state.get("_attr_graph_requested") != requested:
        st.session_state["_attr_graph_requested"] = requested
        if requested in names:
            st.session_state["attr_graph"] = requested
        else:
            st.error(f"?{GRAPH_PARAM}={render.md_text(requested)}: refused, not one of this run's saved graphs")
    name = st.selectbox("Saved graph", names, key="attr_graph", help="analysis/graphs/*.json of the run, newest first")
    return guard.attempt(f"graph {name}", aq.graph, saved[names.index(name)])


def prompt_input() -> tuple[str, str]:
    """The prompt (typed, or one of the paper's evaluation prompts) and an optional target token."""
    prompts = aq.eval_prompts()

    def use_choice() -> None:
        choice = st.session_state.get("attr_eval_prompt")
        if choice is not None and choice != OWN_PROMPT:
            st.session_state["attr_prompt"] = prompts[int(choice)]

    if prompts:
        st.selectbox("Evaluation prompt", [OWN_PROMPT, *[str(i) for i in range(len(prompts))]], key="attr_eval_prompt",
                     format_func=lambda c: c if c == OWN_PROMPT else f"{int(c) + 1}. {visible_text(prompts[int(c)], 90)}",
                     on_change=use_choice, help="the TinyStories paper's story beginnings (sets the prompt below)")
    else:
        st.caption("the paper's evaluation prompts were not found in the data folder (TINYINTERP_DATA)")
    prompt = st.text_area("Prompt", DEFAULT_PROMPT, key="attr_prompt", height=80)
    target = st.text_input("Target token (optional)", key="attr_target", placeholder=" Lily",
                           help="one token; empty = the most likely next tokens up to 95 % probability")
    return prompt, target


# ----- the graph -------------------------------------------------------------------------------------


def logit_choice(view: GraphView) -> GraphNode | None:
    logits = view.logits()
    if not logits:
        st.caption("this graph has no logit nodes")
        return None
    default = view.default_logit()
    ids = [n.node_id for n in logits]
    chosen = st.selectbox("Logit", ids, index=ids.index(default.node_id), key="attr_logit",
                          format_func=lambda i: describe(view.nodes[i], view.prompt_tokens))
    return view.nodes[chosen]


def by_influence(view: GraphView) -> list[GraphNode]:
    """Feature nodes, most influential first (the cumulative influence share, ascending)."""
    return sorted(view.of_kind("feature"), key=lambda n: (n.influence if n.influence is not None else 1.0, n.node_id))


def nodes_frame(view: GraphView, href) -> pd.DataFrame:
    rows = []
    for n in by_influence(view):
        rows.append({"open": href(n), "node": n.node_id, "layer": n.layer, "pos": n.pos,
                     "token": visible_text(view.prompt_tokens[n.pos]), "feature": n.feature,
                     "activation": n.activation, "influence": n.influence, "explanation": visible_text(n.clerp)})
    return pd.DataFrame(rows, columns=["open", "node", "layer", "pos", "token", "feature", "activation", "influence",
                                       "explanation"])


def paths_frame(view: GraphView, paths) -> pd.DataFrame:
    rows = []
    for rank, p in enumerate(paths, 1):
        labels = [f"{view.nodes[i].label}@{view.nodes[i].pos}" if view.nodes[i].kind in ("feature", "error")
                  else visible_text(repr(view.nodes[i].label)) for i in p.nodes]
        rows.append({"rank": rank, "share %": 100 * p.share, "score": p.score, "sign": "+" if p.sign > 0 else "−",
                     "path": " → ".join(labels), "weights": ", ".join(f"{w:.3g}" for w in p.weights),
                     "nodes": " → ".join(p.nodes)})
    return pd.DataFrame(rows, columns=["rank", "share %", "score", "sign", "path", "weights", "nodes"])


def _links_frame(view: GraphView, links, end: str) -> pd.DataFrame:
    rows = [{"node": getattr(l, end), "what": describe(view.nodes[getattr(l, end)], view.prompt_tokens), "weight": l.weight}
            for l in sorted(links, key=lambda l: -abs(l.weight))[:8]]
    return pd.DataFrame(rows, columns=["node", "what", "weight"])


def node_panel(sel, view: GraphView, node: GraphNode, href) -> None:
    """The clicked node: what it is, its strongest incoming and outgoing links, and its feature page."""
    with st.container(border=True):
        st.markdown(f"**{render.md_text(describe(node, view.prompt_tokens))}**")
        url = href(node) if node.kind == "feature" else None
        if url is not None and FEATURE_PAGE in PAGE_NAMES:
            # a new tab on the stable URL: the feature page reads its ?dict=&feature= as a fresh visit
            st.link_button("Open its feature page", url, key="attr_feature_link")
        elif url is not None:
            st.caption(f"feature page: {render.md_code(url)}")
        elif node.kind == "feature":
            st.caption(f"no feature page: the run has no transcoder of layer {node.layer} in "
                       f"analysis/dictionaries/{aq.TRANSCODERS}/")
        c1, c2 = st.columns(2)
        c1.caption("strongest inputs")
        c1.dataframe(_links_frame(view, view.incoming.get(node.node_id, []), "source"), hide_index=True)
        c2.caption("strongest outputs")
        c2.dataframe(_links_frame(view, [l for l in view.links if l.source == node.node_id], "target"), hide_index=True)
    if node.kind == "feature" and st.session_state.get("_attr_last_pick") != node.node_id:
        st.session_state["_attr_last_pick"] = node.node_id  # a new click adds the feature to the interventions once
        chosen = list(st.session_state.get("attr_iv_features", []))
        if node.node_id not in chosen:
            st.session_state["attr_iv_features"] = (chosen + [node.node_id])[-8:]


def graph_panel(sel, view: GraphView, names: dict[int, str]) -> GraphNode | None:
    """Summary, drawing, node table and strongest paths; returns the chosen logit."""
    counts = view.summary()
    cols = st.columns(5)
    for col, kind in zip(cols, ("feature", "error", "embedding", "logit", "links")):
        col.metric(f"{kind} {'nodes' if kind != 'links' else ''}".strip(), counts[kind])
    st.caption(f"prompt: {render.md_text(visible_text(view.prompt, 300))}"
               + (f" · transcoders: {render.md_text(view.scan)}" if view.scan else "")
               + (f" · node threshold {view.node_threshold:g}" if view.node_threshold is not None else ""))
    c1, c2, c3 = st.columns([3, 2, 1])
    with c1:
        target = logit_choice(view)
    max_links = c2.slider("edges drawn (strongest)", 10, 2000, min(300, max(10, len(view.links))), 10, key="attr_max_links")
    k = c3.number_input("paths", 1, 50, 8, key="attr_k")
    paths = guard.attempt("paths", strongest_paths, view, target, int(k)) or []
    href = feature_href(sel.name, names)
    drawing = dict(max_links=int(max_links), highlight=set(paths[0].nodes) if paths else set())
    event = st.altair_chart(graph_chart(view, **drawing), width="stretch", key="attr_chart", on_select="rerun",
                            selection_mode=SELECTION)
    st.caption("● features · ■ grey: error nodes · ■ blue: token embeddings · ◆ logits · edges: blue = positive, "
               "red = negative, width = |weight| · hover for values, click a node to open it (double-click: none)")
    picked = picked_node(event)
    if picked in view.nodes:
        node_panel(sel, view, view.nodes[picked], href)
    st.download_button("Download the drawing (SVG)", graph_svg(view, feature_href=href, **drawing),
                       file_name="attribution-graph.svg", mime="image/svg+xml", key="attr_svg")
    if not names:
        st.caption(f"feature links need the run's transcoder set in analysis/dictionaries/{aq.TRANSCODERS}/")
    st.subheader("Strongest paths to the logit")
    st.dataframe(paths_frame(view, paths), hide_index=True, width="stretch",
                 column_config={"score": st.column_config.NumberColumn(format="%.4f"),
                                "share %": st.column_config.NumberColumn(format="%.2f")})
    st.caption("share: the product of the normalised link weights along the path (|weight| / the sum of |weights| "
               "into its target, over the links this graph kept; `tinyinterp attribute` normalises over the whole "
               "graph, so its shares are a little smaller); score: share × the logit's probability; sign: the "
               "product of the weights' signs. The top path is ringed in the drawing")
    st.subheader("Feature nodes")
    table = nodes_frame(view, href)
    if table["open"].isna().all():
        table = table.drop(columns="open")  # no transcoder set: no feature pages to open
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"open": st.column_config.LinkColumn("open", display_text="open", width="small"),
                                "activation": st.column_config.NumberColumn(format="%.3f"),
                                "influence": st.column_config.NumberColumn(format="%.3f")})
    return target


def new_graph(sel) -> GraphView | None:
    """A graph computed here from a prompt (needs the run's transcoder set); kept until the next "Compute"."""
    prompt, target = prompt_input()
    gap = guard.attempt("transcoder set", aq.transcoder_gap, sel.path)
    if gap is not None:
        st.info(f"Computing a graph needs one transcoder per layer: {render.md_text(gap)}. Train the set with "
                f"{render.md_code(aq.train_hint(sel.path))}; saved graphs can still be opened.")
        return None
    with st.expander("pruning"):
        c1, c2 = st.columns(2)
        node_threshold = c1.number_input("node threshold", 0.1, 1.0, 0.8, 0.01, key="attr_node_threshold",
                                         help="keep the nodes carrying this share of the logits' influence")
        edge_threshold = c2.number_input("edge threshold", 0.1, 1.0, 0.98, 0.01, key="attr_edge_threshold",
                                         help="keep the edges carrying this share of the kept nodes' influence")
    if st.button("Compute graph", type="primary", key="attr_compute"):
        st.session_state["attr_request"] = (prompt, target, float(node_threshold), float(edge_threshold))
    request = st.session_state.get("attr_request")
    if request is None:
        st.caption("press Compute graph (a few seconds on a small model)")
        return None
    if not request[0].strip():
        st.warning("enter a prompt")
        return None
    return guard.attempt("attribution", aq.compute_graph, sel.path, *request)


def _feature_label(node: GraphNode) -> str:
    return f"L{node.layer} F{node.feature} @ pos {node.pos}"  # integers only: slider labels are Markdown


def intervention_panel(sel, view: GraphView, target: GraphNode | None, computed_target: str | None = None) -> None:
    """Sliders per chosen feature (scale −2…2, 0 = ablate) that rerun the REAL model; new top tokens vs before."""
    st.subheader("Interventions in the real model")
    features = by_influence(view)
    if not features:
        st.caption("this graph has no feature nodes to intervene on")
        return
    gap = guard.attempt("transcoder set", aq.transcoder_gap, sel.path)
    if gap is not None:
        st.info(f"Interventions need one transcoder per layer (the features' decoder directions): "
                f"{render.md_text(gap)}; train the set with {render.md_code(aq.train_hint(sel.path))}.")
        return
    tokens = guard.attempt("prompt", aq.prompt_token_strings, sel.path, view.prompt)
    if tokens is None:
        return
    if tokens != view.prompt_tokens:
        st.warning("this graph's prompt tokens differ from the run's tokenization of its prompt (made with another "
                   "model or tokenizer?): interventions would not hit its positions")
        return
    ids = [n.node_id for n in features]
    graph_id = (view.slug, view.prompt, len(view.nodes))
    if st.session_state.get("_attr_iv_graph") != graph_id:  # another graph: start from its most influential feature
        st.session_state["_attr_iv_graph"] = graph_id
        st.session_state["attr_iv_features"] = [i for i in st.session_state.get("attr_iv_features", []) if i in ids] or ids[:1]
    st.session_state["attr_iv_features"] = [i for i in st.session_state.get("attr_iv_features", []) if i in ids][:8]
    chosen = st.multiselect("Features", ids, key="attr_iv_features", max_selections=8,
                            format_func=lambda i: describe(view.nodes[i], view.prompt_tokens),
                            help="most influential first; several at once act as one supernode")
    changes = []
    cols = st.columns(max(1, min(len(chosen), 4)))
    for i, node_id in enumerate(chosen):
        node = view.nodes[node_id]
        scale = cols[i % len(cols)].slider(_feature_label(node), -2.0, 2.0, 0.0, 0.1, key=f"attr_iv_{node_id}",
                                           help="activation × this: 0 = ablate, 1 = unchanged, −1 = flipped")
        changes.append((int(node.layer), int(node.feature), int(node.pos), float(scale)))
    if not changes:
        st.caption("choose at least one feature")
        return
    targets = tuple(int(n.feature) for n in view.logits())
    if st.button("Run intervention", type="primary", key="attr_iv_run"):
        st.session_state["attr_iv_request"] = (view.prompt, tuple(changes))
    if st.session_state.get("attr_iv_request") != (view.prompt, tuple(changes)):
        st.caption("set the sliders and press Run intervention")
        return
    result = guard.attempt("intervention", aq.intervention, sel.path, view.prompt, computed_target, tuple(changes), targets)
    if result is None:
        return
    st.dataframe(pd.DataFrame(result["targets"]).assign(token=lambda f: f["token"].map(visible_text)),
                 hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("logit before", "logit after", "measured change", "graph's prediction")})
    st.caption("measured: the change of each logit node's centred logit in the real model (attention, LayerNorm "
               "and later MLPs react); graph's prediction: the linear replacement model's answer (empty when the "
               "feature or token is not a node of the full graph)")
    top = pd.DataFrame({"rank": range(1, len(result["before"]) + 1),
                        "before": [visible_text(t) for t, _ in result["before"]], "p before": [p for _, p in result["before"]],
                        "after": [visible_text(t) for t, _ in result["after"]], "p after": [p for _, p in result["after"]]})
    st.subheader("Top next tokens, before and after")
    st.dataframe(top, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("p before", "p after")})
