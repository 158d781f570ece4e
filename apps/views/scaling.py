"""Scaling page: a sweep's grid, its loss-vs-FLOPs frontier and power-law fit, and each run's curve.

A sweep is a folder under the runs root with a ``sweep_summary.json`` of kind ``scaling`` (written by
``tinyinterp sweep run|summarize``). The numbers come from :mod:`tinyinterp.scaling.analysis`: its saved
``analysis/scaling/scaling.json`` (with bootstrap intervals) when it is newer than the summary, else a
quick fit without intervals computed here by the same functions. Each run links to the Runs page.

The summary is data: before the analysis reads anything, :func:`_checked_summary` reads it through
:mod:`apps.file_readers` and refuses, in one line naming the file, a ``runs`` that is not a list of runs,
a run name that leaves the runs root (``../../outside/secret_run``, a symlink out) or a run whose
``metrics.jsonl`` does. Losses that are not finite numbers are dropped by the analysis' own reader
(``val_loss`` NaN costs that point); anything else that goes wrong is one line, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pandas as pd
import streamlit as st

from apps import file_readers, guard, loaders, render, run_picker
from apps.runs_root import PathOutsideRoot, resolve_in_root
from tinyinterp.runs import rundir
from tinyinterp.errors import DataError

SWEEP_KEY = "scaling_sweep"


@st.cache_data(ttl=15, show_spinner=False)
def _find_sweeps(root: str) -> list[str]:
    """Relative paths of the scaling sweeps under the root (at most two levels down)."""
    from tinyinterp.runs.layout import SWEEP_SUMMARY_FILE as SUMMARY_FILE

    base = Path(root)
    found = []
    for path in sorted([*base.glob(f"*/{SUMMARY_FILE}"), *base.glob(f"*/*/{SUMMARY_FILE}")]):
        try:
            summary = file_readers.read_json(path)  # inside the runs root only
        except (PathOutsideRoot, DataError, OSError):
            continue
        if isinstance(summary, dict) and summary.get("kind") == "scaling":
            found.append(path.parent.relative_to(base).as_posix())
    return found


def _checked_summary(sweep: Path) -> None:
    """Refuse (one line) a summary whose runs the analysis could not read safely: see the module docstring."""
    from training.scaling_sweep import SUMMARY_FILE

    path = sweep / SUMMARY_FILE
    summary = file_readers.read_json(path)
    shown = f"{sweep.name}/{SUMMARY_FILE}"
    runs = summary.get("runs") if isinstance(summary, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise DataError(f"{shown}: 'runs' is not a list of runs; rerun `tinyinterp sweep summarize` on the sweep")
    for r in runs:
        name = r.get("name")
        if not isinstance(name, str) or not name.strip() or "\x00" in name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise PathOutsideRoot(f"{shown}: run name {str(name)[:80]!r} is not a folder of the sweep; "
                                  "the app reads only inside the runs root")
        resolve_in_root(sweep / name)
        resolve_in_root(sweep / name / rundir.METRICS_FILE)
        for key in ("d_model", "n_layers", "n_heads", "n_params", "n_matmul", "budget", "lr", "flops_per_token"):
            if key in r and file_readers.finite_number(r[key]) is None:
                raise DataError(f"{shown}: run {name!r} has {key} = {str(r[key])[:40]!r}, not a finite number")


@st.cache_data(show_spinner="Fitting the scaling law…", max_entries=8)
def _analysis(sweep: str, version: float, saved_version: float):
    """(result dict, curves as dicts, whether intervals are included) for the sweep folder ``sweep``.

    ``version`` / ``saved_version``: mtimes of the summary and of the saved analysis (the cache keys)."""
    from dataclasses import asdict

    from tinyinterp.scaling.analysis import OUT_SUBDIR, ScalingResult, analyze, load_curves

    _checked_summary(Path(sweep))
    saved = Path(sweep) / OUT_SUBDIR
    if saved_version >= version:
        resolve_in_root(saved / "scaling.json")
        result, curves = ScalingResult.load(saved), load_curves(Path(sweep))
        if set(result.runs) == {c.name for c in curves}:
            return asdict(result), [asdict(c) for c in curves], True
    result, curves = analyze(Path(sweep), n_bootstrap=0)
    return asdict(result), [asdict(c) for c in curves], False


def _figure(draw, size=(8, 5)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size)
    draw(fig)
    fig.tight_layout()
    st.pyplot(fig, clear_figure=True)
    plt.close(fig)


def _grid_table(curves, sweep_rel: str) -> pd.DataFrame:
    rows = []
    for c in curves:
        epochs = c.epochs()[-1]
        rows.append({"run": c.name, "d_model": c.d_model, "layers": c.n_layers, "heads": c.n_heads, "lr": c.lr,
                     "seed": c.seed, f"budget ({c.budget_kind})": c.budget, "params": c.n_params, "N matmul": c.n_matmul,
                     "tokens": c.tokens[-1], "FLOPs": c.flops[-1], "epochs": round(float(epochs), 2),
                     "repeats data": bool(epochs > 1), "val loss": round(c.final_loss, 4),
                     "Runs page": f"/?run={quote(f'{sweep_rel}/{c.name}')}"})
    return pd.DataFrame(rows)


st.title("Scaling")
root = run_picker.runs_root()
if root is None:
    st.stop()
sweeps = _find_sweeps(str(root.path))
if not sweeps:
    st.info("No scaling sweep under the runs root. Train one with "
            f"{render.md_code(f'tinyinterp sweep run training/scaling_tiny.yaml --out {root.path}/scaling-tiny')} "
            "(add `--shard i/n` per process), then reload.")
    st.stop()
sel = run_picker.selection()
if SWEEP_KEY not in st.session_state and sel is not None:
    parent = Path(sel.name).parent.as_posix()
    if parent in sweeps:
        st.session_state[SWEEP_KEY] = parent
sweep_rel = st.selectbox("Sweep", sweeps, key=SWEEP_KEY, help="folders with a scaling sweep_summary.json")
try:
    sweep = root.resolve(sweep_rel)
except PathOutsideRoot as e:
    st.error(render.md_text(e))
    st.stop()

from tinyinterp.runs.layout import SWEEP_SUMMARY_FILE as SUMMARY_FILE  # noqa: E402
from tinyinterp.scaling import analysis as sc  # noqa: E402  (after the checks: numpy loads only when there is a sweep)
from tinyinterp.scaling import plots as sc_plots  # noqa: E402


def _load(sweep: Path):
    """(result, curves, with_intervals) of the sweep; every failure is one line on the page."""
    result_dict, curve_dicts, with_intervals = _analysis(str(sweep), loaders.mtime(sweep / SUMMARY_FILE),
                                                         loaders.mtime(sweep / sc.OUT_SUBDIR / sc.RESULT_FILE))
    return sc.ScalingResult(**result_dict), [sc.RunCurve(**c) for c in curve_dicts], with_intervals


loaded = guard.attempt(f"{sweep_rel}/{SUMMARY_FILE}", _load, sweep)
if loaded is None:
    st.stop()
result, curves, with_intervals = loaded

cols = st.columns(4)
cols[0].metric("finished runs", len(curves))
cols[1].metric("frontier points", len(result.frontier))
if result.fit:
    f = result.fit
    cols[2].metric("loss exponent b", f"{f['b']:.3f}", help="L(C) = a·(C/1e12)^-b + c, fitted to the frontier")
    if "b_lo" in f:
        cols[2].caption(f"95% bootstrap [{f['b_lo']:.3f}, {f['b_hi']:.3f}]")
if result.n_opt_exponent:
    e = result.n_opt_exponent
    cols[3].metric("N_opt exponent", f"{e['alpha']:.2f}", help="N_opt ∝ C^alpha across FLOPs budgets (IsoFLOP)")
    if "alpha_lo" in e:
        cols[3].caption(f"95% bootstrap [{e['alpha_lo']:.2f}, {e['alpha_hi']:.2f}]")
if not with_intervals:
    st.caption(f"Intervals come from {render.md_code(f'python -m analyses.scaling {sweep_rel}')} (bootstrap over runs); shown here: a quick fit.")
if result.repeated_runs:
    st.warning(f"{len(result.repeated_runs)} runs trained for more than one epoch of the corpus (they repeat data; "
               "hollow markers in the plots): " + render.md_text(", ".join(map(str, result.repeated_runs))))

st.header("Grid")
st.dataframe(_grid_table(curves, sweep_rel), hide_index=True, width="stretch",
             column_config={"Runs page": st.column_config.LinkColumn("Runs page", display_text="open")})

st.header("Frontier and fit")
st.text(sc.describe(result))
_figure(lambda fig: sc_plots.plot_loss_vs_flops(curves, result, fig.subplots()), size=(9, 5.5))
left, right = st.columns(2)
with left:
    _figure(lambda fig: sc_plots.plot_by_axis(curves, "n_layers", fig.subplots()), size=(6, 4.5))
with right:
    _figure(lambda fig: sc_plots.plot_by_axis(curves, "n_heads", fig.subplots()), size=(6, 4.5))
if result.compute_optimal:
    _figure(lambda fig: sc_plots.plot_isoflop(curves, result, fig.subplots(1, 2)), size=(11, 4.5))

st.header("Run curves")
name = st.selectbox("Run", [c.name for c in curves], key="scaling_run")
curve = next(c for c in curves if c.name == name)
st.line_chart(pd.DataFrame({"FLOPs": curve.flops, "val loss": curve.val_loss}).set_index("FLOPs"),
              x_label="training FLOPs", y_label="validation loss (nats/token)")
# The name from the summary as a code span (shown verbatim), the URL percent-encoded: no markup from the data.
st.markdown(f"[Open {render.md_code(name)} on the Runs page](/?run={quote(f'{sweep_rel}/{name}')})")
