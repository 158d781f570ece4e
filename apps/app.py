"""tinyinterp's Streamlit app: runs, neurons, heads, generation, comparison and grades of TinyStories models.

Start it with ``tinyinterp app --runs DIR`` (or ``streamlit run apps/app.py`` with ``TINYINTERP_RUNS=DIR``).
It reads only inside the runs root (see :mod:`apps.runs_root`) and loads nothing from the network: the
circuitsvis views are inlined (see :mod:`apps.render`). This file sets up the page, draws the sidebar
run picker shared by every page, and hands over to the page chosen in ``st.navigation``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # `streamlit run apps/app.py` puts only apps/ on the path
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from apps import run_picker  # noqa: E402
from apps.views import PAGES  # noqa: E402

# No page_icon (nor page icons): Streamlit fetches such favicons from fonts.gstatic.com; the app stays offline.
st.set_page_config(page_title="tinyinterp", layout="wide")
pages = [
    st.Page(f"views/{name}.py", title=title, url_path=name, default=(i == 0))
    for i, (name, title) in enumerate(PAGES)
]
current = st.navigation(pages, expanded=True)  # every page in the menu (Streamlit folds more than 12 behind "View more")
st.sidebar.markdown("**tinyinterp**: look inside TinyStories models")
root = run_picker.runs_root()
st.session_state["_selection"] = run_picker.sidebar_picker(root) if root is not None else None
current.run()
