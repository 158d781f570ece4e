"""Per-session app state: the sidebar run picker, its query parameter, and the selected run.

The selected run lives in ``st.session_state["run"]`` (the sidebar selectbox's key) and is mirrored
into the ``?run=`` query parameter so a page can be bookmarked. A ``?run=`` value is only ever used
after :meth:`apps.runs_root.RunsRoot.resolve_run` accepted it; anything else (``../``, an absolute path,
a symlink out of the root, a folder that is not a run) is refused with a message and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from apps.render import md_code, md_text
from apps.runs_root import PathOutsideRoot, RunsRoot, checked_int
from tinyinterp.errors import TinyinterpError

RUN_KEY = "run"


@dataclass(frozen=True)
class Selection:
    root: RunsRoot
    name: str
    """The run's path relative to the root (what the picker and ``?run=`` show)."""
    path: Path


@st.cache_data(ttl=15, show_spinner=False)
def list_runs(root: str) -> list[str]:
    return RunsRoot(Path(root)).list_runs()


def runs_root() -> RunsRoot | None:
    try:
        return RunsRoot.from_env()
    except TinyinterpError as e:
        st.error(md_text(e))
        return None


def sidebar_picker(root: RunsRoot) -> Selection | None:
    """Draw the run picker in the sidebar; returns the selected run (None when the root has none)."""
    runs = list_runs(str(root.path))
    st.sidebar.caption(f"runs root: {md_code(root.path)}")
    if not runs:
        st.sidebar.warning("no runs found")
        return None
    requested = st.query_params.get(RUN_KEY)
    if requested is not None and st.session_state.get("_run_requested") != requested:
        st.session_state["_run_requested"] = requested  # judge each requested value once
        try:
            name = root.relative(root.resolve_run(requested))
            if name in runs:
                st.session_state[RUN_KEY] = name
                st.session_state.pop("_run_refused", None)
        except PathOutsideRoot as e:
            st.session_state["_run_refused"] = str(e)
    if st.session_state.get(RUN_KEY) not in runs:
        st.session_state[RUN_KEY] = runs[0]
    if st.session_state.get("_run_refused"):
        st.sidebar.error(md_text(st.session_state["_run_refused"]))  # quotes the ?run= value: text only
    name = st.sidebar.selectbox("Run", runs, key=RUN_KEY, help="run directories found under the runs root")
    st.query_params[RUN_KEY] = name
    st.session_state["_run_requested"] = name
    return Selection(root, name, root.resolve_run(name))


def selection() -> Selection | None:
    """The run picked in the sidebar (set by ``apps/app.py`` before the page runs)."""
    return st.session_state.get("_selection")


def require_selection() -> Selection:
    sel = selection()
    if sel is None:
        st.info("No run selected. Start the app with `tinyinterp app --runs DIR`, where DIR holds run "
                "directories (train one with `tinyinterp train` or `make demo`).")
        st.stop()
    return sel


def int_param(name: str, low: int, high: int, default: int) -> int:
    """An integer query parameter within ``[low, high]``, else ``default``."""
    value = checked_int(st.query_params.get(name), low, high)
    return default if value is None else value
