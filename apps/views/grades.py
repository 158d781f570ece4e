"""Grades page: the evaluation results of the selected run (``analysis/eval/``), whatever exists of them.

``grades_summary.json`` (per checkpoint: mean and 95% CI of grammar, creativity, consistency, plot, and
age groups) becomes a table and a curve over training; ``grades.jsonl`` and the other JSONL/JSON files
the evaluation writes (completions, probes, memorisation) can be browsed as tables. Missing files are
reported, never an error: a run that was not evaluated simply says how to evaluate it. A bad line in a
log (torn, hand-edited, not an object) is skipped and counted (``grades.jsonl: skipped 1 unreadable line
(line 3)``), the rest of the log is shown; every file is read through :mod:`apps.file_readers` (inside the
runs root only).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from apps import file_readers, guard, loaders, render, run_picker
from apps.runs_root import resolve_in_root

SUMMARY_FILE, CURVE_PNG, SCORES = loaders.GRADES_SUMMARY_FILE, loaders.GRADE_CURVE_PNG, loaders.GRADE_SCORES
GRADES_FILE = loaders.GRADES_FILE
MAX_ROWS = 500


@st.cache_data(show_spinner=False)
def _json(path: str, version: float):
    return file_readers.read_json(Path(path))


@st.cache_data(show_spinner=False)
def _jsonl(path: str, version: float) -> tuple[pd.DataFrame, str | None]:
    """The first MAX_ROWS good records as a table, and the note on skipped lines (None when none were)."""
    log = file_readers.read_jsonl(Path(path), max_records=MAX_ROWS)
    frame = pd.json_normalize(log.records) if log.records else pd.DataFrame()
    # mixed types in one column (a number here, a string there) would stop the Arrow table: show them as text
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    return frame, file_readers.skipped_note(Path(path), log.skipped)


def read_json(path: Path):
    return _json(*loaders.file_key(path))


def read_log(path: Path) -> tuple[pd.DataFrame, str | None]:
    return _jsonl(*loaders.file_key(path))


def _summary_table(summary: dict) -> pd.DataFrame:
    rows = []
    for tag, s in summary.items():
        row = {"checkpoint": tag, "step": s.get("step"), "tokens seen": s.get("tokens_seen"),
               "graded": f"{s.get('n_ok', 0)}/{s.get('n', 0)}"}
        for name in SCORES:
            score = (s.get("scores") or {}).get(name) or {}
            mean, lo, hi = score.get("mean"), score.get("ci_low"), score.get("ci_high")
            row[name] = None if mean is None else round(mean, 2)
            row[f"{name} 95% CI"] = "" if lo is None else f"{lo:.2f}–{hi:.2f}"
        row["cost $"] = round(s.get("cost_usd") or 0.0, 4)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(["step"], na_position="last", kind="stable") if "step" in frame else frame


def _summary(folder: Path) -> None:
    summary = read_json(folder / SUMMARY_FILE)
    if not isinstance(summary, dict) or not summary:
        st.warning(f"{SUMMARY_FILE} is empty")
        return
    table = _summary_table(summary)
    st.subheader("Grades per checkpoint (0–10, mean over prompts)")
    st.dataframe(table, hide_index=True, width="stretch")
    curve = table.dropna(subset=["step"]) if "step" in table else pd.DataFrame()
    if len(curve) > 1:
        st.line_chart(curve.set_index("step")[list(SCORES)], x_label="step", y_label="grade", height=260)
    ages = {tag: s.get("age_groups") or {} for tag, s in summary.items()}
    if any(ages.values()):
        st.subheader("Age groups the grader assigned")
        st.dataframe(pd.DataFrame(ages).fillna(0).astype(int), width="stretch")


def _browse(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".json", ".jsonl") and p.name != SUMMARY_FILE)
    if not files:
        return
    st.subheader("All evaluation files")
    names = [p.relative_to(folder).as_posix() for p in files]
    choice = st.selectbox("File", names, key="eval_file")
    path = files[names.index(choice)]
    with guard.panel(path.name):
        _show_file(path)


def _show_file(path: Path) -> None:
    if path.suffix == ".jsonl":
        frame, note = read_log(path)
        if note and path != path.parent.parent / "eval" / GRADES_FILE:  # grades.jsonl's note is at the top
            st.warning(render.md_text(note))
        st.caption(f"first {min(len(frame), MAX_ROWS)} records")
        st.dataframe(frame, hide_index=True, width="stretch")
    else:
        st.json(read_json(path), expanded=1)  # a JSON tree: strings are shown as text


sel = run_picker.require_selection()
st.title("Grades")
folder = loaders.eval_dir(sel.path)
if not folder.is_dir() or not any(folder.iterdir()):
    st.info(f"No evaluation results for {render.md_code(sel.name)} yet: run "
            f"{render.md_code(f'tinyinterp eval complete {sel.path}')} and "
            f"{render.md_code(f'tinyinterp eval grade {sel.path}')} (results go to analysis/eval/).")
    st.stop()
st.caption(f"results in {render.md_code(folder)}")
if (folder / SUMMARY_FILE).is_file():
    with guard.panel(SUMMARY_FILE):
        _summary(folder)
else:
    st.caption(f"no {SUMMARY_FILE} yet (grading not finished or not run)")
if (folder / GRADES_FILE).is_file():  # the graded log: its bad lines are reported even when not browsed
    with guard.panel(GRADES_FILE):
        note = read_log(folder / GRADES_FILE)[1]
        if note:
            st.warning(render.md_text(note))
if (folder / CURVE_PNG).is_file():
    with guard.panel(CURVE_PNG):
        st.image(str(resolve_in_root(folder / CURVE_PNG)), caption="grades over training", width=520)
_browse(folder)
