"""Runs page: every run under the root, and the selected run's config, size and training curves.

An official checkpoint (``roneneldan/TinyStories-*``) can be loaded from a fixed list too; that needs the
Hugging Face hub (or its cache) and says so when it is unreachable.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps import data, session
from tinyinterp import rundir
from tinyinterp.errors import TinyinterpError
from tinyinterp.zoo import OFFICIAL_CHECKPOINTS


def _run_row(sel_root, name: str) -> dict:
    path = sel_root.resolve(name)
    config = data.run_config(str(path), data.mtime(path / rundir.CONFIG_FILE))
    model_cfg = config.get("model") or {}
    metrics = data.metrics_frame(str(path), data.mtime(path / rundir.METRICS_FILE))
    val = metrics["val_loss"].dropna() if "val_loss" in metrics else pd.Series(dtype=float)
    params = None
    if model_cfg:
        try:
            params = rundir.read_model_config(path).n_params()
        except TinyinterpError:
            pass
    return {
        "run": name,
        "preset": model_cfg.get("preset") or config.get("model_type", ""),
        "params": params,
        "steps": int(metrics["step"].max()) if "step" in metrics else None,
        "tokens": int(metrics["tokens"].max()) if "tokens" in metrics else None,
        "val loss": float(val.iloc[-1]) if len(val) else None,
        "neurons": data.has_neuron_index(path),
        "heads": data.has_heads(path),
        "comparisons": len(data.comparisons(path)),
    }


def _training_curves(metrics: pd.DataFrame) -> None:
    if metrics.empty or "tokens" not in metrics:
        st.info("No metrics.jsonl in this run (it was not trained by `tinyinterp train`, or not yet).")
        return
    curves = metrics.set_index("tokens")[[c for c in ("train_loss", "val_loss") if c in metrics]]
    st.line_chart(curves, x_label="tokens seen", y_label="loss (nats/token)")
    last = metrics.iloc[-1]
    cols = st.columns(3)
    cols[0].metric("steps", f"{int(last['step']):,}")
    cols[1].metric("tokens seen", f"{int(last['tokens']):,}")
    if "tokens_per_s" in metrics:
        cols[2].metric("tokens/s (last)", f"{float(last['tokens_per_s']):,.0f}")


def _external_model() -> None:
    with st.expander("Load an official TinyStories checkpoint (needs the Hugging Face hub or its cache)"):
        name = st.selectbox("checkpoint", sorted(set(OFFICIAL_CHECKPOINTS.values())), key="external_name")
        if st.button("Load", key="external_load"):
            try:
                model = data.load_model(name)
            except (TinyinterpError, OSError) as e:
                st.error(f"could not load {name}: {e}")
                return
            c = model.cfg
            st.write(f"**{name}**: {c.n_layers} layers, d_model {c.d_model}, {c.n_heads} heads, d_mlp {c.d_mlp}, "
                     f"{sum(p.numel() for p in model.parameters()):,} parameters")


sel = session.require_selection()
st.title("Runs")
st.caption(f"Runs under `{sel.root.path}`. Pick one in the sidebar; every page shows the selected run.")
rows = [_run_row(sel.root, name) for name in session.list_runs(str(sel.root.path))]
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

st.header(f"Run `{sel.name}`")
config = data.run_config(str(sel.path), data.mtime(sel.path / rundir.CONFIG_FILE))
left, right = st.columns([1, 2])
with left:
    try:
        cfg = rundir.read_model_config(sel.path)
        st.metric("parameters", f"{cfg.n_params():,}")
        st.caption(f"{cfg.n_params(include_embeddings=False):,} without embeddings")
    except TinyinterpError:
        st.caption("(a Hugging Face model folder: parameter count shown once loaded)")
    st.json(config, expanded=1)
with right:
    st.subheader("Training curves")
    _training_curves(data.metrics_frame(str(sel.path), data.mtime(sel.path / rundir.METRICS_FILE)))
    ckpts = sorted(p.name for p in (sel.path / rundir.CHECKPOINTS_DIR).glob("step_*") if p.is_dir())
    if ckpts:
        st.caption(f"{len(ckpts)} checkpoints, latest `{ckpts[-1]}`")
_external_model()
