"""The neuron table page and the neuron page's deeper panels (explanation + score, histogram, logit
effects, quantile / negative examples, own text, find by word), over a run with real baseline explanations."""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.app_pages import page_text
from tests.support.app_depth import deep_app, deep_root  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def demo(deep_root):  # noqa: F811
    from tinyinterp.explain import load_explanations
    from tinyinterp.interp import NeuronIndex, PurityResult

    run = deep_root / "demo"
    return {"index": NeuronIndex.load(run / "analysis" / "neurons"),
            "purity": PurityResult.load(run / "analysis" / "neurons").to_frame(),
            "expl": load_explanations(run)}


def _html(at, cls: str) -> str:
    return "".join(h.proto.body for h in at.get("html") if f'class="{cls}"' in h.proto.body)


def test_table_lists_every_neuron_sorted_by_score(deep_app, demo):  # noqa: F811
    at = deep_app("neuron_table", run="demo")
    table = at.dataframe[0].value
    index, expl = demo["index"], demo["expl"]
    assert len(table) == index.n_layers * index.d_mlp
    scores = table.score.dropna().tolist()
    assert len(scores) == expl.score.notna().sum() and scores == sorted(scores, reverse=True)  # default sort: score
    best = expl.sort_values("score", ascending=False).iloc[0]
    first = table.iloc[0]
    assert (first.layer, first.neuron) == (best.layer, best.neuron) and first.explanation == best.explanation
    pur = demo["purity"].set_index(["layer", "neuron"])
    stats = index.stats_frame().set_index(["layer", "neuron"])
    for row in table.head(5).itertuples():
        assert row.category == pur.loc[(row.layer, row.neuron), "category"]
        assert math.isclose(row.type_purity, pur.loc[(row.layer, row.neuron), "type_purity"], rel_tol=1e-6)
        assert math.isclose(row.max, stats.loc[(row.layer, row.neuron), "max"], rel_tol=1e-6)
        assert math.isclose(row.frequency, stats.loc[(row.layer, row.neuron), "frac_active"], rel_tol=1e-6)
        link = urlsplit(row.open)
        assert link.path == "neurons" and parse_qs(link.query) == {"run": ["demo"], "layer": [str(row.layer)],
                                                                  "neuron": [str(row.neuron)]}


def test_table_filters_and_sorts(deep_app, demo):  # noqa: F811
    at = deep_app("neuron_table", run="demo")
    at.multiselect(key="table_layers").set_value([1]).run()
    assert set(at.dataframe[0].value.layer) == {1} and len(at.dataframe[0].value) == demo["index"].d_mlp
    category = demo["purity"][demo["purity"].layer == 1].category.mode()[0]
    at.multiselect(key="table_categories").set_value([category]).run()
    shown = at.dataframe[0].value
    expected = demo["purity"][(demo["purity"].layer == 1) & (demo["purity"].category == category)]
    assert len(shown) == len(expected) and set(shown.category) == {category}
    at.selectbox(key="table_sort").select("max").run()
    at.toggle(key="table_ascending").set_value(True).run()
    values = at.dataframe[0].value["max"].tolist()
    assert values == sorted(values)
    at.multiselect(key="table_layers").set_value([]).run()
    at.multiselect(key="table_categories").set_value([]).run()
    at.text_input(key="table_query").input("happy").run()
    shown = at.dataframe[0].value
    assert len(shown) > 0
    assert all("happy" in (f"{t} {e}").lower() for t, e in zip(shown.top_tokens, shown.explanation.fillna("")))


def test_table_without_explanations_says_so(make_app):
    at = make_app("neuron_table", run="demo")
    assert at.dataframe[0].value.score.isna().all()
    assert "no explanations" in page_text(at)


def test_neuron_page_shows_explanation_and_panels(deep_app, demo):  # noqa: F811
    expl = demo["expl"].sort_values("score", ascending=False).iloc[0]
    layer, neuron = int(expl.layer), int(expl.neuron)
    at = deep_app("neurons", run="demo", layer=layer, neuron=neuron)
    assert at.header[0].value == f"Layer {layer} · neuron {neuron}"
    shown = _html(at, "explanation")
    assert f"score {expl.score:.2f}" in shown and "baseline" in shown
    assert "&quot;" in shown and '"' not in shown.split("</span>: ", 1)[1]  # the explanation's quotes escaped
    index = demo["index"]
    effects = index.logit_effects(layer, neuron, n=10)
    logits = _html(at, "logits")
    assert f"{effects['promoted'].effect.iloc[0]:+.3f}" in logits and f"{effects['suppressed'].effect.iloc[0]:+.3f}" in logits
    dist = _html(at, "dist-example")
    quantiles = index.quantile_examples(layer, neuron)
    for ex in quantiles:
        assert f"quantile {ex.quantile:g} · act {ex.activation:.3f}" in dist
    negatives = index.negative_examples(layer, neuron, k=5)
    if negatives:
        assert f"#1 · act {negatives[0].activation:.3f}" in dist
    text = page_text(at)
    hist = index.activation_histogram(layer, neuron)
    assert f"{int(hist['count'].sum()):,} tokens" in text
    (chart,) = at.get("vega_lite_chart")  # the histogram, on a symlog axis
    assert '"symlog"' in chart.proto.spec


def test_own_text_runs_the_neuron(deep_app):  # noqa: F811
    from tinyinterp.runs import rundir

    at = deep_app("neurons", run="demo", layer=1, neuron=3)
    text = "Tom saw a dog. <b>bold</b>"
    at.text_area(key="neuron_own_text").input(text).run()
    model = rundir.load_run(at.session_state["_selection"].path).eval()
    import torch

    ids = model.tokenizer.encode(text)
    got = {}

    def grab(acts, hook):
        got["a"] = acts[0, :, 3].clone()

    with torch.no_grad():
        model.run_with_hooks(torch.tensor([ids]), return_type=None, fwd_hooks=[("blocks.1.mlp.hook_post", grab)])
    peak = int(got["a"].argmax())
    assert f"max {float(got['a'][peak]):.3f} on token {peak} of {len(ids)}" in page_text(at)
    (body,) = [h.proto.body for h in at.get("html") if h.proto.body.startswith('<div class="tokens"')]
    assert "&lt;" in body and "&gt;" in body and "<b>" not in body  # the typed tag stays text


def test_find_neurons_by_word(deep_app, demo):  # noqa: F811
    from tinyinterp.runs import rundir

    at = deep_app("neurons", run="demo")
    at.text_input(key="word_query").input("dog, CAT").run()
    shown = at.dataframe[-1].value
    run = at.session_state["_selection"].path
    index = demo["index"]
    from tinyinterp.data.corpus import TokenizedCorpus
    from tinyinterp.interp import NeuronIndex

    index = NeuronIndex(index.path, index.meta, index.tensors, corpus=TokenizedCorpus.open(run.parent / "corpus"),
                        tokenizer=index.tokenizer)
    expected = index.find_neurons(["dog", "CAT"], rundir.load_run(run).eval(), top=20)
    assert list(zip(shown.layer, shown.neuron)) == list(zip(expected.layer, expected.neuron))
    assert re.search(rf"{expected.attrs['n_occurrences']} occurrences", page_text(at))
    box = at.selectbox(key="jump_word")
    box.select(box.options[0]).run()
    assert at.header[0].value == f"Layer {int(expected.layer[0])} · neuron {int(expected.neuron[0])}"
    at.text_input(key="word_query").input("zzzqqq").run()  # no occurrence: one line, no crash
    assert any("no whole-word occurrence" in w.value for w in at.warning)


def test_old_index_without_distribution_degrades(broken):
    """An index built before histograms/logit effects: those panels say "rebuild", the rest still works."""
    from safetensors.torch import load_file, save_file

    from tests.support.app_pages import open_page

    path = broken / "demo" / "analysis" / "neurons" / "index.safetensors"
    tensors = {k: v for k, v in load_file(str(path)).items()
               if not k.startswith(("hist_", "sample_", "bottom_", "logit_"))}
    save_file(tensors, str(path))
    at = open_page("neurons", run="demo")
    errors = [e.value for e in at.error]
    assert any(e.startswith("activation histogram") and "rebuild" in e for e in errors)
    assert any(e.startswith("logit effects") and "rebuild" in e for e in errors)
    assert at.header[0].value == "Layer 0 · neuron 0" and "#1" in "".join(h.proto.body for h in at.get("html"))


def test_garbled_explanations_file_reads_as_none(deep_root, tmp_path, monkeypatch):  # noqa: F811
    """A garbled explanations file (the library skips unreadable lines): no scores and a hint, the table and
    the neuron page drawn, no traceback."""
    import shutil

    from apps.runs_root import RUNS_ENV
    from tests.support.app_pages import open_page

    root = tmp_path / "runs"
    shutil.copytree(deep_root, root, symlinks=True)
    monkeypatch.setenv(RUNS_ENV, str(root))
    (root / "demo" / "analysis" / "explanations" / "baseline.jsonl").write_bytes(b"\x00\xff{not json\n" * 3)
    at = open_page("neuron_table", run="demo")
    table = at.dataframe[0].value
    assert not at.error and table.score.isna().all() and len(table) == table.layer.nunique() * table.neuron.nunique()
    assert "no explanations" in page_text(at)
    at = open_page("neurons", run="demo")
    assert not at.error and at.header[0].value == "Layer 0 · neuron 0"
    assert "this neuron has no explanation yet" in page_text(at)


def test_missing_corpus_costs_one_line(broken):
    """Without the index's corpus the top examples say so once; the distribution panels do not repeat it."""
    import shutil

    from tests.support.app_pages import open_page

    shutil.rmtree(broken / "corpus")
    at = open_page("neurons", run="demo")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("top examples") and "corpus" in errors[0]
    text = page_text(at)
    assert "need the index's corpus" in text and "Activation distribution" in text and "Logit effects" in text


def test_search_words_are_comma_separated_alternatives():
    from apps.queries import split_words

    assert split_words(" dog,  puppy ,ice   cream,, ") == ["dog", "puppy", "ice cream"]
    assert split_words(" , ") == []
