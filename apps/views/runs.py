"""Runs page: every run under the root, and the selected run's config, size and training curves.

An official checkpoint (``roneneldan/TinyStories-*``) can be loaded from a fixed list too; that needs the
Hugging Face hub (or its cache) and says so when it is unreachable.

A run still being trained (``metrics.jsonl``, no ``model.safetensors`` yet) is listed with status
"training" and its loss curve, which follows the file as it grows. A run whose ``config.json`` or
``metrics.jsonl`` cannot be read gets its one-line message in the table's ``problem`` column; the other
runs are listed as usual. The curves are drawn from long-form data (one row per logged value), so the
validation loss, logged on one row in five, is a line through its points rather than isolated dots.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps import guard, loaders, render, run_picker
from tinyinterp.runs import rundir
from tinyinterp.runs.checkpoints import list_checkpoints
from tinyinterp.errors import TinyinterpError
from tinyinterp.models.zoo import OFFICIAL_CHECKPOINTS


LOSS_COLUMNS = ("train_loss", "val_loss")
# How often the Runs page re-reads the metrics of a run being trained. A comment, not a docstring: in a page
# script Streamlit's "magic" shows every bare string expression after the first as body text.
LIVE_REFRESH_S = 10


def _or_problem(problems: list[str], default, fn, *args):
    """``fn(*args)``, or ``default`` with the error's one line added to ``problems`` (one run's bad file
    must not take the table down)."""
    try:
        return fn(*args)
    except Exception as e:
        problems.append(guard.one_line(e))
        return default


def _run_row(sel_root, name: str) -> dict:
    path = sel_root.resolve(name)
    problems: list[str] = []
    config = _or_problem(problems, {}, loaders.run_config, path)
    config = config if isinstance(config, dict) else {}
    metrics = _or_problem(problems, pd.DataFrame(), loaders.metrics_frame, path)
    model_cfg = config.get("model") or {}
    val = metrics["val_loss"].dropna() if "val_loss" in metrics else pd.Series(dtype=float)
    params = None
    if model_cfg:
        try:
            params = rundir.read_model_config(path).n_params()
        except TinyinterpError:
            pass
    return {
        "run": name,
        "status": "training" if loaders.is_training(path) else "done",
        "preset": model_cfg.get("preset") or config.get("model_type", ""),
        "params": params,
        "steps": int(metrics["step"].max()) if "step" in metrics else None,
        "tokens": int(metrics["tokens"].max()) if "tokens" in metrics else None,
        "val loss": float(val.iloc[-1]) if len(val) else None,
        "neurons": loaders.has_neuron_index(path),
        "heads": loaders.has_heads(path),
        "comparisons": len(loaders.comparisons(path)),
        "problem": "; ".join(problems),
    }


def loss_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long-form ``(tokens, curve, loss)``: one row per logged value, NaN rows dropped per curve."""
    present = [c for c in LOSS_COLUMNS if c in metrics]
    if not present or "tokens" not in metrics:
        return pd.DataFrame(columns=["tokens", "curve", "loss"])
    long = metrics[["tokens", *present]].melt(id_vars="tokens", var_name="curve", value_name="loss")
    return long.dropna(subset=["tokens", "loss"]).reset_index(drop=True)


def _training_curves(metrics: pd.DataFrame) -> None:
    if metrics.empty or "tokens" not in metrics:
        st.info("No metrics.jsonl in this run (it was not trained by `tinyinterp train`, or not yet).")
        return
    st.line_chart(loss_curves(metrics), x="tokens", y="loss", color="curve",
                  x_label="tokens seen", y_label="loss (nats/token)")
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
                model = loaders.load_model(name)
            except (TinyinterpError, OSError) as e:
                st.error(f"could not load {name}: {render.md_text(e)}")
                return
            c = model.cfg
            st.write(f"**{name}**: {c.n_layers} layers, d_model {c.d_model}, {c.n_heads} heads, d_mlp {c.d_mlp}, "
                     f"{sum(p.numel() for p in model.parameters()):,} parameters")


sel = run_picker.require_selection()
st.title("Runs")
st.caption(f"Runs under {render.md_code(sel.root.path)}. Pick one in the sidebar; every page shows the selected run.")
rows = [_run_row(sel.root, name) for name in run_picker.list_runs(str(sel.root.path))]
table = pd.DataFrame(rows)
if "problem" in table and not table["problem"].any():
    table = table.drop(columns="problem")
st.dataframe(table, hide_index=True, width="stretch")

st.header(f"Run {render.md_code(sel.name)}")
training = loaders.is_training(sel.path)
if training:
    st.info(f"{render.md_code(sel.name)} is being trained (no {rundir.WEIGHTS_FILE} yet): the curve below follows "
            f"{rundir.METRICS_FILE}; the other pages open the run once training has saved the model.")
left, right = st.columns([1, 2])
with left:
    with guard.panel(rundir.CONFIG_FILE):
        if (sel.path / rundir.CONFIG_FILE).is_file():
            config = loaders.run_config(sel.path)
            try:
                cfg = rundir.read_model_config(sel.path)
                st.metric("parameters", f"{cfg.n_params():,}")
                st.caption(f"{cfg.n_params(include_embeddings=False):,} without embeddings")
            except TinyinterpError:
                st.caption("(a Hugging Face model folder: parameter count shown once loaded)")
            st.json(config, expanded=1)
        else:
            st.caption(f"no {rundir.CONFIG_FILE} yet")


@st.fragment(run_every=LIVE_REFRESH_S if training else None)
def _live_curves(path) -> None:
    """The curves of the selected run; re-read every few seconds while it is being trained."""
    st.subheader("Training curves")
    with guard.panel(rundir.METRICS_FILE):
        _training_curves(loaders.metrics_frame(path))
    ckpts = [c.folder.name for c in list_checkpoints(path)]
    if ckpts:
        st.caption(f"{len(ckpts)} checkpoints, latest `{ckpts[-1]}`")


with right:
    _live_curves(sel.path)
_external_model()
