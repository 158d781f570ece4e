"""The app's safety promises: no path outside the runs root, every token escaped, nothing from a CDN."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from apps.render import (attention_vis, examples_html, inner_document, network_references, neuron_vis, story_html,
                         tokens_html)
from apps.runs_root import PathOutsideRoot, RunsRoot
from tests.support.app_pages import SCRIPT_STORY, iframe_sources

SCRIPT = "<script>alert(1)</script>"
HOSTILE = ['<img/src="x"/onerror=alert(4)>', "</script><script>alert(5)</script>", "\"'><b>q</b>"]


# ----- runs root ------------------------------------------------------------------------------------


@pytest.fixture
def root_with_escape(runs_root, tmp_path):
    """A root with one real run, a symlink to a folder outside it and a symlink to a run outside it."""
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    root = tmp_path / "root"
    shutil.copytree(runs_root / "demo", root / "inner", ignore=shutil.ignore_patterns("analysis"))
    os.symlink(outside / "secret", root / "escape")
    os.symlink(runs_root / "demo", root / "sneaky_run")
    return RunsRoot.open(root)


@pytest.mark.parametrize("bad", ["..", "../x", "demo/../../etc", "/etc/passwd", "C:\\Windows", "demo\\..\\..", "", "a\x00b"])
def test_resolve_refuses_paths_outside_the_root(runs_root, bad):
    with pytest.raises(PathOutsideRoot):
        RunsRoot.open(runs_root).resolve(bad)


def test_resolve_follows_symlinks_and_refuses_escapes(root_with_escape):
    root = root_with_escape
    assert root.resolve_run("inner") == root.path / "inner"
    with pytest.raises(PathOutsideRoot, match="outside the runs root"):
        root.resolve("escape")
    with pytest.raises(PathOutsideRoot, match="outside the runs root"):
        root.resolve_run("sneaky_run")  # a symlink to a run outside the root, even though it is a run


def test_list_runs_only_lists_runs_inside_the_root(runs_root, root_with_escape):
    assert RunsRoot.open(runs_root).list_runs() == ["baseline", "demo"]
    assert root_with_escape.list_runs() == ["inner"]  # the symlinked run outside is not listed


def test_resolve_run_refuses_folders_that_are_not_runs(runs_root):
    with pytest.raises(PathOutsideRoot, match="not a run directory"):
        RunsRoot.open(runs_root).resolve_run("notes")


@pytest.mark.parametrize("bad", ["../../../../etc", "/etc", "notes", "demo/../../"])
def test_query_param_traversal_is_refused_in_the_app(make_app, bad):
    at = make_app("runs", run=bad)
    errors = [e.value for e in at.sidebar.get("error")]
    assert errors and ("refused" in errors[0] or "not a run directory" in errors[0])
    assert at.sidebar.selectbox(key="run").value == "baseline"  # the first run, not the requested path
    assert at.query_params["run"] == "baseline"
    assert at.session_state["_selection"].path == at.session_state["_selection"].root.path / "baseline"


def test_app_refuses_a_missing_runs_root(make_app, monkeypatch, tmp_path):
    from apps.runs_root import RUNS_ENV

    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "missing"))
    at = make_app("runs")
    assert any("not a directory" in e.value for e in at.error)
    assert any("No run selected" in i.value for i in at.info)


# ----- escaping ------------------------------------------------------------------------------------


def test_token_html_escapes_markup():
    markup = tokens_html(["<script>", "alert(1)", "</script>", '" onmouseover="x', "\n"], [1.0, 0.5, -1.0, 0.0, float("nan")])
    assert "<script" not in markup and "</script" not in markup
    assert "&lt;script&gt;" in markup and "&quot; onmouseover=&quot;x" in markup and "↵" in markup
    assert "<script" not in story_html(SCRIPT, SCRIPT)


def test_circuitsvis_props_cannot_close_the_script(runs_root):
    ex = {"token_strs": ["a", "</script><script>alert(1)</script>"], "activations": [0.5, 1.0], "center": 1,
          "activation": 1.0, "doc": 0, "pos": 1}
    for outer in (neuron_vis([ex], 0, 0), attention_vis(ex["token_strs"], np.full((1, 2, 2), 0.5), ["L0H0"])):
        markup = inner_document(outer)
        assert markup.count("</script>") == 1  # only the bundle's own closing tag
        assert "alert(1)" in markup and ("&lt;script&gt;alert(1)" in markup or "\\u003cscript>alert(1)" in markup)


def _circuitsvis_tokens(document: str) -> list[str]:
    import json

    call = document[document.rindex("CircuitsVis.render("):]
    props = json.loads(call[call.index("{"):call.rindex("}") + 1].replace("\\u003c", "<"))
    return props["tokens"]


def test_circuitsvis_receives_escaped_tokens():
    """ColoredTokens sets token strings as innerHTML: what it receives must be HTML text, not markup."""
    import html

    ex = {"token_strs": HOSTILE, "activations": [0.5, 1.0, -0.5], "center": 1, "activation": 1.0, "doc": 0, "pos": 1}
    tokens = _circuitsvis_tokens(inner_document(neuron_vis([ex], 0, 0)))
    assert all("<" not in t and ">" not in t and '"' not in t for t in tokens)
    assert all(html.escape(t) in tokens for t in HOSTILE)  # unescaped by the browser: the original text
    # AttentionHeads draws tokens on a canvas (chart.js labels), so it gets the text itself; the props
    # still cannot close their script, and the frame is sandboxed (next test).
    markup = inner_document(attention_vis(HOSTILE, np.full((1, 3, 3), 0.3), ["L0H0"]))
    assert _circuitsvis_tokens(markup) == HOSTILE and markup.count("</script>") == 1


def test_circuitsvis_runs_in_an_opaque_origin_frame():
    """Streamlit's st.iframe is same-origin with the app; the scripts run one frame further down,
    sandboxed without allow-same-origin, so window.parent.document is out of their reach."""
    ex = {"token_strs": ["a"], "activations": [1.0], "center": 0, "activation": 1.0, "doc": 0, "pos": 0}
    for outer in (neuron_vis([ex], 0, 0), attention_vis(["a"], np.ones((1, 1, 1)), ["L0H0"])):
        frames = re.findall(r"<iframe\b[^>]*>", outer)  # srcdoc is escaped: no '<' or '>' inside it
        assert len(frames) == 1 and 'sandbox="allow-scripts"' in frames[0] and "allow-same-origin" not in frames[0]
        assert "<script" not in outer  # the wrapper itself runs nothing; the bundle sits escaped in srcdoc
        assert "CircuitsVis.render(" in inner_document(outer)


def _script_neuron(runs_root):
    """A (layer, neuron) whose top examples include the story with the <script> tag (the fixture is seeded)."""
    from tinyinterp.interp import NeuronIndex

    index = NeuronIndex.load(runs_root / "demo" / "analysis" / "neurons")
    last_doc = index.corpus.n_docs - 1
    for layer in range(index.n_layers):
        for neuron in range(index.d_mlp):
            if any(ex.doc == last_doc and "<" in ex.token_strs for ex in index.top_examples(layer, neuron, context=16)):
                return layer, neuron
    raise AssertionError("no neuron has the <script> story among its top examples")


def test_a_story_with_a_script_tag_shows_as_text_on_the_neuron_page(make_app, runs_root):
    layer, neuron = _script_neuron(runs_root)
    at = make_app("neurons", run="demo", layer=layer, neuron=neuron)
    at.slider(key="context").set_value(16).run()
    examples = next(h.proto.body for h in at.get("html") if 'class="example"' in h.proto.body)
    assert "&lt;" in examples and "<script" not in examples and "</script" not in examples
    at.toggle(key="use_circuitsvis").set_value(True).run()
    (src,) = iframe_sources(at)
    assert src.count("</script>") == 1 and '"&lt;"' in src


def test_script_in_user_text_stays_text(make_app):
    at = make_app("heads", run="demo")
    at.text_area(key="pattern_text").input(SCRIPT_STORY).run()
    (src,) = iframe_sources(at)
    assert src.count("</script>") == 1
    at = make_app("generate", run="demo")
    at.text_area(key="gen_prompt").input(SCRIPT + " Lily")
    at.button[0].click().run()  # the form's Generate button submits the new prompt
    stories = [h.proto.body for h in at.get("html") if 'class="story"' in h.proto.body]
    assert stories and all("&lt;script&gt;alert(1)&lt;/script&gt;" in s and "<script" not in s for s in stories)


# ----- no network ----------------------------------------------------------------------------------


def test_network_scanner_finds_cdn_sources():
    from circuitsvis.activations import text_neuron_activations

    cdn = str(text_neuron_activations(tokens=["a"], activations=np.ones((1, 1, 1))))  # str() = the CDN version
    assert network_references(cdn)
    assert network_references('<script src="//example.com/x.js"></script>')
    assert network_references('<link rel="stylesheet" href="https://fonts.googleapis.com/css">')
    assert not network_references(examples_html([]) + tokens_html(["http://example.com"], [1.0]))


@pytest.mark.parametrize("page", ["runs", "neurons", "heads", "generate", "compare", "grades"])
def test_rendered_pages_reference_nothing_on_the_network(make_app, page):
    at = make_app(page, run="demo")
    if page == "neurons":
        at.toggle(key="use_circuitsvis").set_value(True).run()
    markup = iframe_sources(at) + [h.proto.body for h in at.get("html")] + [m.value for m in at.markdown]
    assert markup or page in ("runs", "compare", "grades")
    assert [ref for m in markup for ref in network_references(m)] == []
    for src in iframe_sources(at):
        assert "CircuitsVis.render(" in src and "<script src" not in src  # the bundle is inlined


# ----- paths read from data files ------------------------------------------------------------------


def test_corpus_path_in_meta_is_confined_to_the_runs_root(runs_root, tmp_path, monkeypatch):
    """meta.json names the corpus; the app opens it only inside the runs root."""
    from apps.runs_root import RUNS_ENV
    from tests.support.app_pages import open_page

    root = tmp_path / "root"
    shutil.copytree(runs_root / "demo", root / "demo")
    shutil.copytree(runs_root / "corpus", tmp_path / "outside_corpus")  # a real corpus, outside the root
    meta_path = root / "demo" / "analysis" / "neurons" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["corpus"] = "../../outside_corpus"  # relative to the run directory, as the index writes it
    meta_path.write_text(json.dumps(meta))
    monkeypatch.setenv(RUNS_ENV, str(root))
    at = open_page("neurons", run="demo")
    (message,) = [e.value for e in at.error]
    assert "outside the runs root" in message and "meta.json" in message
    assert not [h for h in at.get("html") if 'class="example"' in h.proto.body]  # nothing read from there
    assert at.header[0].value == "Layer 0 · neuron 0" and "Top tokens" in [s.value for s in at.subheader]
    meta["corpus"] = str(tmp_path / "outside_corpus")  # an absolute path is refused the same way
    meta_path.write_text(json.dumps(meta))
    at = open_page("neurons", run="demo")
    assert any("outside the runs root" in e.value for e in at.error)


def test_neuron_page_works_when_served_from_another_cwd(runs_root, tmp_path, monkeypatch, make_app):
    monkeypatch.chdir(tmp_path)
    at = make_app("neurons", run="demo")
    assert not at.error and [h for h in at.get("html") if 'class="example"' in h.proto.body]
