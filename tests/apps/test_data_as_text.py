"""Strings from data files are shown as text, never rendered as Markdown or HTML (issue 18, item 8).

Every data file a page shows carries :data:`tests.support.hostile_data.HOSTILE` (a Markdown image, a raw
``<img>``, a ``javascript:`` link, a ``<script>``). Every element of every page that Streamlit renders as
Markdown (titles, headers, captions, alerts, Markdown, metric labels; main area and sidebar) is rendered
here with a CommonMark parser that *allows* raw HTML; the result must hold no image, no script, no link
to the remote host and no ``javascript:`` link, while the hostile text itself is still on the page.
"""

from __future__ import annotations

import shutil

import pytest
from markdown_it import MarkdownIt

from apps.views import PAGE_NAMES
from tests.support.app_pages import open_page
from tests.support.app_depth import deep_root  # noqa: F401  (fixture)
from tests.support.hostile_data import HOSTILE_NAME, HOSTILE_QUERY, REMOTE, add_hostile_strings

MARKDOWN_KINDS = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success")
FORBIDDEN = ("<img", "<script", "href=\"javascript:", f"src=\"http://{REMOTE}", f"href=\"http://{REMOTE}")
_md = MarkdownIt("commonmark", {"html": True})
_md.validateLink = lambda url: True  # stricter than any browser renderer: even javascript: links are links


def markdown_sources(at) -> list[str]:
    """The Markdown source of every element Streamlit renders as Markdown, main area and sidebar."""
    sources = []
    for where in (at, at.sidebar):
        for kind in MARKDOWN_KINDS:
            sources += [str(e.value) for e in where.get(kind)]
    sources += [text for m in [*at.metric, *at.sidebar.get("metric")] for text in (m.label, str(m.value))]  # both Markdown
    return sources


def rendered_html(at) -> list[tuple[str, str]]:
    return [(src, _md.render(src)) for src in markdown_sources(at)]


def assert_shown_as_text(at, where: str) -> None:
    for source, html in rendered_html(at):
        bad = [f for f in FORBIDDEN if f in html]
        assert not bad, f"{where}: {source!r} renders as {html!r}"


@pytest.fixture
def hostile_root(deep_root, tmp_path, monkeypatch):  # noqa: F811
    from apps.runs_root import RUNS_ENV

    root = tmp_path / "runs"
    shutil.copytree(deep_root, root, symlinks=True)
    add_hostile_strings(root)
    monkeypatch.setenv(RUNS_ENV, str(root))
    return root


def test_the_checker_catches_markdown(tmp_path):
    """The parser renders what the pages must avoid (so the test below can fail)."""
    from tests.support.hostile_data import HOSTILE

    html = _md.render(HOSTILE)
    assert "<img" in html and "<script" in html and 'href="javascript:' in html
    from apps.render import md_code, md_text

    for safe in (md_text(HOSTILE), md_code(HOSTILE), md_code("`" + HOSTILE + "``")):
        rendered = _md.render(safe)
        assert not [f for f in FORBIDDEN if f in rendered], rendered
    assert _md.render(md_text(HOSTILE)).count("alert(8)") == 1  # the text is still there, as text


def test_every_page_shows_data_strings_as_text(hostile_root):
    shown_somewhere = 0
    for page in PAGE_NAMES:
        at = open_page(page, run="demo")
        assert not at.exception, (page, [e.value for e in at.exception])
        assert_shown_as_text(at, page)
        shown_somewhere += sum(REMOTE in src for src in markdown_sources(at))
    at = open_page("compare", run="demo")
    assert any(REMOTE in src for src in markdown_sources(at)), "the hostile names are shown, escaped"
    assert shown_somewhere > 1


@pytest.mark.parametrize("page", PAGE_NAMES)
def test_hostile_query_values_and_run_names_are_text(hostile_root, page):
    at = open_page(page, run=HOSTILE_QUERY, layer=HOSTILE_QUERY, head=HOSTILE_QUERY, neuron=1)
    assert not at.exception
    assert_shown_as_text(at, f"{page} ?run=…")
    assert any("query.png" in e.value for e in at.sidebar.get("error")), "the refusal quotes the value, as text"
    at = open_page(page, run=HOSTILE_NAME)
    assert not at.exception
    assert_shown_as_text(at, f"{page} on the run {HOSTILE_NAME!r}")


def test_scaling_page_shows_hostile_run_names_as_text(tmp_path, monkeypatch):
    """Run names in a sweep summary (folders named with HTML) reach captions, warnings and the link."""
    import json

    from apps.runs_root import RUNS_ENV
    from tests.support.synthetic_sweep import make_sweep

    root = tmp_path / "runs"
    sweep = make_sweep(root / "sweep", widths=(16, 64, 256), budgets=(1e11, 1e12))
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    for r in summary["runs"]:
        new = f"{r['name']}{HOSTILE_NAME}[x](javascript:alert(1))"
        (sweep / r["name"]).rename(sweep / new)
        r["name"] = new
        r["epochs"] = 3.0  # repeated data: the names are listed in a warning
    (sweep / "sweep_summary.json").write_text(json.dumps(summary))
    monkeypatch.setenv(RUNS_ENV, str(root))
    at = open_page("scaling")
    assert not at.exception and at.dataframe
    assert_shown_as_text(at, "scaling")
    assert any("onerror" in src for src in markdown_sources(at))
