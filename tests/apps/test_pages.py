"""Every page through Streamlit's AppTest, on a real (tiny) run: widgets change what is shown, and
what is shown matches the interp API's own answers."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.app_pages import iframe_sources, page_text


@pytest.fixture(scope="module")
def demo_index(runs_root):
    from tinyinterp.interp import NeuronIndex

    return NeuronIndex.load(runs_root / "demo" / "analysis" / "neurons")


def _examples_html(at) -> str:
    bodies = [h.proto.body for h in at.get("html") if 'class="example"' in h.proto.body]
    assert len(bodies) == 1
    return bodies[0]


def test_runs_page_lists_runs_and_switches_between_them(make_app):
    at = make_app("runs", run="demo")
    table = at.dataframe[0].value
    assert sorted(table["run"]) == ["baseline", "demo"]  # 'notes' and 'corpus' are not runs
    assert table.set_index("run").loc["demo", "steps"] == 120
    assert "Run `demo`" in at.header[0].value
    assert {m.label: m.value for m in at.metric}["steps"] == "120"
    assert at.get("vega_lite_chart"), "the training curve is drawn"
    at.sidebar.selectbox(key="run").select("baseline").run()
    assert "Run `baseline`" in at.header[0].value
    assert any("No metrics.jsonl" in i.value for i in at.info)
    assert at.query_params["run"] == "baseline"


def test_neuron_picker_changes_top_examples(make_app, demo_index):
    at = make_app("neurons", run="demo")
    assert at.header[0].value == "Layer 0 · neuron 0"
    first = _examples_html(at)
    expected = demo_index.top_examples(0, 0, k=1)[0]
    assert f"act {expected.activation:.3f}" in first  # the page shows the index's own top activation
    at.number_input(key="neuron_id").set_value(5).run()
    assert at.header[0].value == "Layer 0 · neuron 5"
    second = _examples_html(at)
    assert second != first
    assert f"act {demo_index.top_examples(0, 5, k=1)[0].activation:.3f}" in second
    at.selectbox(key="neuron_layer").select(1).run()
    assert at.header[0].value == "Layer 1 · neuron 5"
    assert at.query_params["layer"] == "1" and at.query_params["neuron"] == "5"


def test_jump_to_a_pure_neuron(make_app, runs_root):
    from tinyinterp.interp import PurityResult

    top = PurityResult.load(runs_root / "demo" / "analysis" / "neurons").top(25).iloc[0]
    at = make_app("neurons", run="demo")
    box = at.selectbox(key="jump_pure")
    option = next(o for o in box.options if o.startswith(f"L{top.layer} N{top.neuron} "))
    box.select(option).run()
    assert at.header[0].value == f"Layer {top.layer} · neuron {top.neuron}"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["purity"] == f"{top.purity:.2f}" and metrics["majority"] == top.category


def test_search_by_token_lists_the_index_answer(make_app, demo_index):
    expected = demo_index.neurons_for_token(" Tom", top=20)
    assert len(expected) > 0
    at = make_app("neurons", run="demo")
    at.text_input(key="token_query").input(" Tom").run()
    shown = at.dataframe[-1].value
    assert list(zip(shown.layer, shown.neuron)) == list(zip(expected.layer, expected.neuron))
    first = expected.iloc[0]
    box = at.selectbox(key="jump_token")
    box.select(box.options[0]).run()
    assert at.header[0].value == f"Layer {int(first.layer)} · neuron {int(first.neuron)}"
    at.text_input(key="token_query").input(" Lily and Tom").run()  # several tokens: a message, no crash
    assert any("tokens for this tokenizer" in w.value for w in at.warning)


def test_deep_link_and_out_of_range_query(make_app):
    assert make_app("neurons", run="demo", layer=1, neuron=7).header[0].value == "Layer 1 · neuron 7"
    for query in ({"layer": 99, "neuron": -4}, {"layer": 1, "neuron": 99999}, {"layer": "x"}):
        at = make_app("neurons", run="demo", **query)
        assert not at.header, "an out-of-range link must not silently show another neuron"
        (message,) = [e.value for e in at.error]
        assert f"layer {query['layer']}" in message and "does not have" in message and "layers 0–1" in message
    at.number_input(key="neuron_id").set_value(3).run()  # picking a neuron clears the message
    assert not at.error and at.header[0].value == "Layer 0 · neuron 3"


def test_circuitsvis_view_of_the_examples(make_app, demo_index):
    at = make_app("neurons", run="demo")
    assert not iframe_sources(at)
    at.toggle(key="use_circuitsvis").set_value(True).run()
    (src,) = iframe_sources(at)
    assert "CircuitsVis.render(" in src and "ColoredTokens" in src
    top = demo_index.top_examples(0, 0, k=1)[0]
    assert all(f'"{t}"' in src for t in top.token_strs if t.isalnum())


def test_heads_table_filters_and_patterns_follow_the_text(make_app, runs_root):
    from tinyinterp.interp import HeadResult
    from tinyinterp.data.tokenizer import Tokenizer

    result = HeadResult.load(runs_root / "demo" / "analysis" / "heads")
    at = make_app("heads", run="demo")
    assert len(at.dataframe[0].value) == result.head_class.size
    counts = result.counts()
    present = [c for c, n in counts.items() if n]
    at.multiselect(key="head_classes").set_value(present[:1]).run()
    assert len(at.dataframe[0].value) == counts[present[0]]
    at.selectbox(key="head_sort").select("entropy").run()
    shown = at.dataframe[0].value["entropy"].tolist()
    assert shown == sorted(shown, reverse=True)
    (before,) = iframe_sources(at)
    text = "Tom had a red cat. The cat ran to Tom."
    at.text_area(key="pattern_text").input(text).run()
    (after,) = iframe_sources(at)
    tokenizer = Tokenizer.load(runs_root / "demo")
    tokens = json.dumps([tokenizer.token_str(i) for i in tokenizer.encode(text)])  # canvas labels: plain text
    assert after != before and f'"tokens": {tokens}' in after and "AttentionHeads" in after
    at.multiselect(key="pattern_heads").set_value(["L1H2", "L0H3", "L1H0"]).run()
    assert re.search(r'"attentionHeadNames": \["L1H2", "L0H3", "L1H0"\]', iframe_sources(at)[0])


def _stories(at) -> list[str]:
    return [h.proto.body for h in at.get("html") if 'class="story"' in h.proto.body or 'class="tokens"' in h.proto.body]


def test_generate_settings_change_the_stories(make_app):
    at = make_app("generate", run="demo")
    first = _stories(at)
    assert len(first) == 2
    at.number_input(key="gen_seed").set_value(7)
    at.number_input(key="gen_n").set_value(3)
    at.button[0].click().run()  # the form's Generate button
    second = _stories(at)
    assert len(second) == 3 and second[:2] != first
    at.toggle(key="gen_colour").set_value(True).run()
    coloured = _stories(at)
    assert len(coloured) == 3 and all("rgba(" in s for s in coloured)
    assert "coloured by L0 N0" in page_text(at)


def test_compare_saved_and_two_runs(make_app, runs_root):
    from tinyinterp.interp import ComparisonResult

    saved = ComparisonResult.load(runs_root / "demo" / "analysis" / "compare" / "demo__vs__baseline")
    at = make_app("compare", run="demo")
    assert at.radio(key="compare_mode").value == "saved comparison"
    metrics = [(m.label, m.value) for m in at.metric]
    assert ("mean purity", f"{saved.a.mean_purity:.3f}") in metrics
    assert ("mean purity", f"{saved.b.mean_purity:.3f}") in metrics
    assert saved.format() in [c.value for c in at.code]
    at.radio(key="compare_mode").set_value("two runs").run()
    assert [s.value for s in at.subheader][:2] == ["A: demo", "B: baseline"]
    at.selectbox(key="compare_a").select("baseline")
    at.selectbox(key="compare_b").select("demo").run()
    assert [s.value for s in at.subheader][:2] == ["A: baseline", "B: demo"]
    assert len(at.get("vega_lite_chart")) == 3  # purity histogram, purity per layer, head classes


def test_grades_page_reads_the_evaluation_files(make_app):
    at = make_app("grades", run="demo")
    table = at.dataframe[0].value
    assert list(table["checkpoint"]) == ["step_00000100", "final"]
    assert table["grammar"].notna().all()
    files = at.selectbox(key="eval_file")
    assert "grades.jsonl" in files.options
    files.select("grades.jsonl").run()
    assert len(at.dataframe[-1].value) == 8
    at.sidebar.selectbox(key="run").select("baseline").run()
    assert any("No evaluation results" in i.value for i in at.info)


def test_grade_file_names_match_the_evaluation_module():
    grading = pytest.importorskip("tinyinterp.evaluation.grading")
    prompts = pytest.importorskip("tinyinterp.evaluation.grade_prompts")
    from apps import loaders

    assert (loaders.GRADES_SUMMARY_FILE, loaders.GRADES_FILE, loaders.GRADE_CURVE_PNG) == (
        grading.SUMMARY_FILE, grading.GRADES_FILE, grading.CURVE_PNG)
    assert loaders.GRADE_SCORES == tuple(prompts.SCORES)
