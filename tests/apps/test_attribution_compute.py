"""The Attribution page computes a graph from a typed prompt and runs an intervention in the real model.

The app tests' trained ``demo`` run (test-tiny) gets a tiny trained transcoder set (one per layer); the page's graph must be
the library's own (``attribute`` → ``prune_graph`` → ``graph_to_json``: same nodes and links), and the page's
intervention numbers the library's ``intervene`` / ``predict_logit_change`` on the real model.
"""

from __future__ import annotations

import shutil

import pytest

PROMPT = "Lily saw a big dog. Lily"


@pytest.fixture
def with_transcoders(broken):
    """The demo run plus a tiny transcoder set trained by ``tinyinterp sae train RUN --transcoder all``."""
    from tinyinterp.runs import rundir
    from tinyinterp.dictionaries.cli import main as sae_main

    run = broken / "demo"
    shutil.rmtree(run / "analysis" / "dictionaries" / "transcoders")  # the fixture's layer-1 transcoder: a set of one
    assert sae_main(["train", str(run), "--transcoder", "all", "--corpus", str(broken / "corpus"), "--width", "48",
                     "--k", "4", "--tokens", "8192", "--batch-tokens", "512", "--buffer-tokens", "4096",
                     "--no-progress"]) == 0
    assert sorted(p.name for p in (run / "analysis" / "dictionaries" / "transcoders").iterdir()) == ["layer_00", "layer_01"]
    return run, rundir.load_run(run).eval()


def _compute(prompt: str = PROMPT):
    from tests.support.app_pages import open_page

    at = open_page("attribution", run="demo")
    assert at.radio(key="attr_source").value == "new graph from a prompt"
    at.text_area(key="attr_prompt").input(prompt).run()
    at.button(key="attr_compute").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_typed_prompt_gives_the_librarys_graph(with_transcoders):
    import pyarrow as pa

    from tinyinterp.attribution import attribute, load_transcoder_set
    from tinyinterp.attribution.graph_json import graph_slug, graph_to_json
    from tinyinterp.attribution.prune import prune_graph

    run, model = with_transcoders
    at = _compute()
    assert not [e.value for e in at.error], [e.value for e in at.error]
    (chart,) = at.get("vega_lite_chart")
    tables = [pa.ipc.open_stream(d.data.data).read_pandas() for d in chart.proto.datasets]
    drawn = set(next(t for t in tables if "about" in t.columns).node)
    transcoders = load_transcoder_set(run / "analysis" / "dictionaries" / "transcoders", model)
    graph = attribute(model, transcoders, PROMPT)
    expected = graph_to_json(graph, graph_slug(PROMPT), prune=prune_graph(graph), tokenizer=model.tokenizer)
    assert drawn == {n["node_id"] for n in expected["nodes"]}
    assert any(n["feature_type"] == "cross layer transcoder" for n in expected["nodes"])
    paths = at.dataframe[0].value
    assert len(paths) and paths.iloc[0]["nodes"].startswith("E_")
    assert at.metric[4].value == str(len(expected["links"]))


def test_an_intervention_runs_the_real_model(with_transcoders):
    from tinyinterp.attribution import attribute, load_transcoder_set
    from tinyinterp.attribution.interventions import FeatureIntervention, intervene, predict_logit_change

    run, model = with_transcoders
    at = _compute()
    (chosen,) = at.multiselect(key="attr_iv_features").value  # the most influential feature
    layer, feature, pos = (int(v) for v in chosen.split("_"))
    at.slider(key=f"attr_iv_{chosen}").set_value(0.0).run()  # 0 = ablate
    at.button(key="attr_iv_run").click().run()
    assert not at.exception and not [e.value for e in at.error], [e.value for e in at.error]
    table = at.dataframe[-2].value
    transcoders = load_transcoder_set(run / "analysis" / "dictionaries" / "transcoders", model)
    graph = attribute(model, transcoders, PROMPT)
    targets = [int(t) for t in graph.logit_tokens]
    iv = [FeatureIntervention(layer, feature, pos=pos, mode="ablate")]
    measured = intervene(model, transcoders, PROMPT, iv, targets).measured
    predicted = predict_logit_change(graph, iv, targets)
    assert list(table["id"]) == targets
    assert table["measured change"].tolist() == pytest.approx(measured.tolist(), abs=1e-6)
    assert table["graph's prediction"].tolist() == pytest.approx(predicted.tolist(), abs=1e-6)
    assert table["measured change"].abs().max() > 0  # ablating the top feature moves the logits
    top = at.dataframe[-1].value
    assert list(top.columns) == ["rank", "before", "p before", "after", "p after"] and len(top) == 8


def test_a_prompt_longer_than_the_context_is_one_line(with_transcoders):
    _, model = with_transcoders
    at = _compute("Lily " * (model.cfg.n_ctx + 5))
    (error,) = [e.value for e in at.error]
    assert "context" in error and "\n" not in error
    assert not at.get("vega_lite_chart")
