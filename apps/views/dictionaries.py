"""Dictionaries page: the run's sparse dictionaries (TopK SAEs, transcoders) side by side.

One row per dictionary under ``RUN/analysis/dictionaries/`` (``cfg.json``; ``eval.json`` from
``tinyinterp sae eval``): kind, hooks, width, k, training tokens, and SAELens's metrics — explained
variance, L0, CE-loss score, KL score, dead and dense features. Two scatters place every evaluated
dictionary by L0 against explained variance and against CE-loss score (the sparsity/fidelity trade-off);
the training curves (``train_log.jsonl``: FVU, AuxK loss, L0, dead fraction over tokens) overlay the
chosen dictionaries; the density histogram of one shows how often its features fire. Each file is read
through :mod:`apps.guard`: a corrupt ``eval.json`` is one line and its row keeps its config; a torn
``train_log.jsonl`` loses only its bad lines (counted). The ``features`` and ``table`` columns open the
dictionary's feature page (``/features?run=&dict=``) and feature table.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from apps import dictionary_data, guard, render, run_picker
from tinyinterp.dictionaries.evaluation import EVAL_FILE
from tinyinterp.dictionaries.formats import CFG_FILE
from tinyinterp.dictionaries.training import TRAIN_LOG

MAX_CURVES = 6
CURVE_TITLES = {"loss": "loss", "fvu": "FVU (fraction of variance unexplained)", "aux": "AuxK loss (dead features)",
                "l0": "L0 (active features per token)", "dead_fraction": "dead fraction (training)"}


def _row(name: str) -> dict:
    dictionary_data.dictionary_dir(sel.path, name)  # a name that leaves the folder: one line, no row
    row: dict = {"dictionary": name}
    info = guard.attempt(f"{name}/{CFG_FILE}", dictionary_data.info, sel.path, name)
    if info is not None:
        hook = info.hook_in if info.hook_in == info.hook_out else f"{info.hook_in} → {info.hook_out}"
        row.update(kind=info.kind, hook=hook, width=info.d_sae, k=info.k, training_tokens=info.training_tokens)
    evaluation = None
    if dictionary_data.has_eval(sel.path, name):
        evaluation = guard.attempt(f"{name}/{EVAL_FILE}", dictionary_data.evaluation, sel.path, name)
    if evaluation is not None:
        row.update({"explained variance": evaluation["explained_variance"], "L0": evaluation["l0"],
                    "CE-loss score": evaluation["ce_loss_score"], "KL score": evaluation["kl_div_score"],
                    "dead": evaluation["dead_features"], "dense": evaluation["dense_features"],
                    "eval tokens": evaluation["n_tokens"], "_histogram": evaluation.get("density_histogram"),
                    "_dense_threshold": evaluation["dense_threshold"]})
    row["features"] = f"features?{urlencode({'run': sel.name, 'dict': name})}"
    row["table"] = f"feature_table?{urlencode({'run': sel.name, 'dict': name})}"
    return row


def _scatter(table: pd.DataFrame, y: str) -> None:
    import altair as alt

    points = table.dropna(subset=["L0", y])
    if points.empty:
        st.caption(f"no evaluated dictionary has both L0 and {y}")
        return
    chart = alt.Chart(points[["dictionary", "kind", "L0", y]]).mark_point(filled=True, size=90).encode(
        x=alt.X("L0:Q", title="L0 (active features per token)", scale=alt.Scale(zero=False)),
        y=alt.Y(f"{y}:Q", title=y, scale=alt.Scale(zero=False)),
        color=alt.Color("kind:N"), tooltip=["dictionary", "kind", "L0", y])
    st.altair_chart(chart, height=260)


def _curves(names: list[str]) -> None:
    frames = []
    for name in names:
        read = guard.attempt(f"{name}/{TRAIN_LOG}", dictionary_data.train_log, sel.path, name)
        if read is None:
            continue
        frame, note = read
        if note:
            st.warning(render.md_text(note))
        if not frame.empty:
            frames.append(frame.assign(dictionary=name))
    if not frames:
        st.caption(f"no {TRAIN_LOG} to draw (dictionaries trained elsewhere have none)")
        return
    import altair as alt

    data = pd.concat(frames, ignore_index=True)
    x = "tokens" if "tokens" in data and data["tokens"].notna().all() else "step"
    metrics = [m for m in dictionary_data.CURVE_METRICS if m in data]
    # One faceted chart (one element, independent y per metric) draws faster than a chart per metric.
    long = data.melt(id_vars=[x, "dictionary"], value_vars=metrics, var_name="metric", value_name="value").dropna()
    long["metric"] = long["metric"].map(CURVE_TITLES)
    chart = alt.Chart(long).mark_line(point=len(long) < 240).encode(
        x=alt.X(f"{x}:Q", title="training tokens" if x == "tokens" else "step"),
        y=alt.Y("value:Q", title=None), color="dictionary:N", tooltip=["dictionary", "metric", x, "value"],
    ).properties(width=300, height=180).facet(
        facet=alt.Facet("metric:N", title=None, sort=[CURVE_TITLES[m] for m in metrics]), columns=2,
    ).resolve_scale(y="independent")
    st.altair_chart(chart)


def _density(rows: list[dict]) -> None:
    with_hist = {r["dictionary"]: r for r in rows if isinstance(r.get("_histogram"), pd.DataFrame)}
    if not with_hist:
        return
    st.subheader("Feature density")
    name = st.selectbox("Dictionary", list(with_hist), key="density_dict")
    row = with_hist[name]
    hist = row["_histogram"].assign(bin=lambda f: [f"[{lo:g}, {hi:g})" for lo, hi in zip(f.log10_lo, f.log10_hi)])
    import altair as alt

    chart = alt.Chart(hist).mark_bar().encode(
        x=alt.X("bin:N", sort=None, title="log10(share of tokens a feature fires on)"),
        y=alt.Y("features:Q", title="features"), tooltip=["bin", "features"])
    st.altair_chart(chart, height=220)
    dead = row.get("dead")
    threshold = row.get("_dense_threshold")
    st.caption(f"{dead if dead is not None else '?'} dead features (never active in the {row.get('eval tokens') or '?'} "
               f"evaluated tokens) are not in the histogram; dense = active on more than "
               f"{threshold if threshold is not None else '?'} of tokens")


sel = run_picker.require_selection()
st.title("Dictionaries")
names = dictionary_data.dictionary_names(sel.path)
if not names:
    st.info(f"No dictionaries for {render.md_code(sel.name)} yet: train one with "
            f"{render.md_code(f'tinyinterp sae train {sel.path} --hook blocks.0.hook_resid_post --k 16')}, then "
            f"{render.md_code('tinyinterp sae eval RUN --dict DIR')}.")
    st.stop()
rows = [row for row in (guard.attempt(f"dictionary {name}", _row, name) for name in names) if row is not None]
if not rows:
    st.stop()
table = pd.DataFrame(rows)
for column in ("kind", "hook", "width", "k", "training_tokens", "explained variance", "L0", "CE-loss score",
               "KL score", "dead", "dense", "eval tokens"):
    if column not in table:
        table[column] = None
st.caption(f"{len(rows)} dictionaries under {render.md_code('analysis/dictionaries')} · metrics from "
           f"{render.md_code('tinyinterp sae eval')} (SAELens's formulas, held-out tokens)")
shown = table[["dictionary", "kind", "hook", "width", "k", "training_tokens", "explained variance", "L0",
               "CE-loss score", "KL score", "dead", "dense", "features", "table"]]
number = {c: st.column_config.NumberColumn(format="%.3f") for c in ("explained variance", "L0", "CE-loss score", "KL score")}
st.dataframe(shown, hide_index=True, key="dictionary_table", column_config={
    **number, "features": st.column_config.LinkColumn("features", display_text="features", width="small"),
    "table": st.column_config.LinkColumn("feature table", display_text="table", width="small")})
not_evaluated = table[table["L0"].isna()]["dictionary"].tolist()
if not_evaluated:
    st.caption(f"not evaluated yet: {render.md_text(', '.join(not_evaluated))} "
               f"({render.md_code('tinyinterp sae eval RUN --dict DIR')} writes {render.md_code(EVAL_FILE)})")

st.subheader("Sparsity against fidelity")
left, right = st.columns(2)
with left:
    _scatter(table, "explained variance")
with right:
    _scatter(table, "CE-loss score")

st.subheader("Dead and dense features")
counts = table[["dictionary", "width", "dead", "dense", "eval tokens"]].copy()
width = pd.to_numeric(counts["width"], errors="coerce")
counts.insert(3, "dead share", pd.to_numeric(counts["dead"], errors="coerce") / width)
counts.insert(5, "dense share", pd.to_numeric(counts["dense"], errors="coerce") / width)
st.dataframe(counts, hide_index=True, key="dead_dense_table", column_config={
    c: st.column_config.NumberColumn(format="%.3f") for c in ("dead share", "dense share")})
st.caption("dead: never active in the evaluated tokens; dense: active on more than 10 % of them")

_density(rows)

st.subheader("Training curves")
chosen = st.multiselect("Dictionaries", [r["dictionary"] for r in rows], default=[r["dictionary"] for r in rows][:MAX_CURVES],
                        key="curve_dicts", max_selections=MAX_CURVES)
if chosen:
    _curves(chosen)
st.caption("curves from each dictionary's train_log.jsonl, as the trainer logged them")
