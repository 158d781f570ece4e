"""Helpers of the app tests: the app's stories, opening a page with AppTest, and reading what a page shows.

The runs root those pages read is the ``runs_root`` fixture of ``tests/apps/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import story_world

APP_FILE = Path(__file__).resolve().parents[2] / "apps" / "app.py"
SCRIPT_STORY = 'Lily saw a box. It said <script>alert(1)</script> on it. "What is this?" Lily asked Tom.'
"""One story of the app's corpus: the escaping tests look for its ``<script>`` on every page."""


def app_stories(n: int, seed: int = 0) -> list[str]:
    """The app tests' stories: the one story world of :mod:`tests.support.story_world`, in the app's shape."""
    return story_world.make_stories(n, seed, **story_world.APP_STORY_SHAPE)


def open_page(page: str, **query):
    """An AppTest of ``page`` over the runs root in the environment (``make_app`` without its fixture)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_FILE), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = str(value)
    at.run()
    if page != "runs":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def iframe_sources(at) -> list[str]:
    """The circuitsvis document of every ``st.iframe`` on the current page (each one must be wrapped in
    an inner ``sandbox="allow-scripts"`` frame, see :func:`apps.render.sandboxed`)."""
    from apps.render import inner_document

    return [inner_document(e.proto.srcdoc) for e in at.get("iframe")]


def page_text(at) -> str:
    """Everything textual on the page (markdown, html, captions, titles, metrics, code), for assertions."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "code", "text", "info", "warning", "error", "success"):
        parts += [str(e.value) for e in at.get(kind)]
    parts += [e.proto.body for e in at.get("html")]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)
