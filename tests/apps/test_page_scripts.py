"""Page scripts show only what they mean to show (issue 18, item 19).

Streamlit's "magic" writes every bare expression of a page script to the page: a docstring placed under a
constant (``LIVE_REFRESH_S = 10`` followed by ``\"\"\"How often …\"\"\"``) became body text above the title of the
Runs page. Page scripts keep such notes in comments.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from apps.views import PAGE_NAMES
from tests.support.app_pages import APP_FILE

VIEWS = APP_FILE.parent / "views"


def bare_strings(path: Path) -> list[tuple[int, str]]:
    """String expressions that are not the docstring of their module, class or function (magic shows them)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for i, stmt in enumerate(body):
            if i and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                found.append((stmt.lineno, stmt.value.value[:60]))
    return found


@pytest.mark.parametrize("page", [*PAGE_NAMES, "../app"])
def test_page_scripts_have_no_bare_strings(page):
    assert not bare_strings(VIEWS / f"{page}.py")


def test_runs_page_starts_with_its_title(make_app):
    at = make_app(None, run="demo")  # the default page
    texts = [m.value for m in at.markdown]
    assert not [t for t in texts if "re-reads the metrics" in t], texts
    assert at.title[0].value == "Runs"
