"""The feature table and feature pages (issue 19, item 7) over dictionaries trained, indexed and explained
by the real code: what they show equals the feature index's and the explanation log's own answers, the
stable URL ``/features?run=&dict=&feature=`` opens that feature, bad links and bad files are one line."""

from __future__ import annotations

import json
import math
import os
import shutil
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.app_dictionaries import EXPLAINED, SAE_NAME, TRANSCODER_NAME
from tests.support.app_pages import open_page, page_text

DICTS = "demo/analysis/dictionaries"


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def _html(at, cls: str) -> str:
    return "".join(h.proto.body for h in at.get("html") if f'class="{cls}"' in h.proto.body)


@pytest.fixture(scope="module")
def indexes(runs_root):
    from tinyinterp.interp import FeatureIndex

    return {name: FeatureIndex.load(runs_root / DICTS / name) for name in (SAE_NAME, TRANSCODER_NAME)}


@pytest.fixture(scope="module")
def explanations(runs_root):
    from tinyinterp.explain import load_explanations

    return load_explanations(runs_root / DICTS / SAE_NAME)


def test_stable_url_opens_the_feature_and_shows_the_index_answers(make_app, indexes):
    index = indexes[TRANSCODER_NAME]
    at = make_app("features", run="demo", dict=TRANSCODER_NAME, feature=7)
    assert not _errors(at)
    assert at.header[0].value == f"{TRANSCODER_NAME} · feature 7"
    assert at.number_input(key="feature_id").value == 7
    assert at.query_params["dict"] == TRANSCODER_NAME and at.query_params["feature"] == "7"
    best = index.top_examples(0, 7, k=1)[0]
    assert f"#1 &nbsp; act {best.activation:.3f}" in _html(at, "example")
    stats = index.stats_frame().set_index("neuron").loc[7]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["max"] == f"{stats['max']:.3f}" and metrics["frac active"] == f"{stats['frac_active']:.3f}"
    effects = index.logit_effects(0, 7, n=10)
    logits = _html(at, "logits")
    assert f"{float(effects['promoted'].effect.iloc[0]):+.3f}" in logits
    assert f"{float(effects['suppressed'].effect.iloc[0]):+.3f}" in logits
    assert "Run the feature on your own text" in page_text(at)
    assert "Examples across the distribution" in page_text(at) and "Most negative examples" not in page_text(at)


def test_pickers_move_the_feature_and_the_url(broken, indexes):
    (broken / DICTS / "aaa-not-indexed").mkdir()
    shutil.copy(broken / DICTS / SAE_NAME / "cfg.json", broken / DICTS / "aaa-not-indexed")
    at = open_page("features", run="demo")
    assert at.header[0].value == f"{SAE_NAME} · feature 0"  # the first dictionary with a feature index
    at.number_input(key="feature_id").set_value(5).run()
    assert at.header[0].value.endswith("· feature 5") and at.query_params["feature"] == "5"
    at.selectbox(key="feature_dict").select(TRANSCODER_NAME).run()
    assert at.header[0].value == f"{TRANSCODER_NAME} · feature 5" and at.query_params["dict"] == TRANSCODER_NAME
    best = indexes[TRANSCODER_NAME].top_examples(0, 5, k=1)[0]
    assert f"act {best.activation:.3f}" in _html(at, "example")


def test_explanation_and_score_come_from_the_dictionary_log(make_app, explanations):
    row = explanations.sort_values("score", ascending=False).iloc[0]
    at = make_app("features", run="demo", dict=SAE_NAME, feature=int(row.neuron))
    shown = _html(at, "explanation")
    assert f"score {row.score:.2f}" in shown and "baseline" in shown
    at.number_input(key="feature_id").set_value(EXPLAINED + 1).run()  # not explained
    assert "this feature has no explanation yet" in page_text(at)


def test_own_text_is_the_model_then_the_dictionary(make_app, runs_root):
    import torch

    from tinyinterp.runs import rundir
    from tinyinterp.dictionaries import load_dictionary

    at = make_app("features", run="demo", dict=SAE_NAME, feature=3)
    text = "Lily saw a big dog. The dog was happy."
    at.text_area(key="feature_own_text").input(text).run()
    model = rundir.load_run(runs_root / "demo").eval()
    coder = load_dictionary(runs_root / DICTS / SAE_NAME)
    ids = model.tokenizer.encode(text)
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n == coder.cfg.hook_in)
        acts = coder.encode(cache[coder.cfg.hook_in])[0, :, 3]
    peak = int(acts.argmax())
    assert f"max {float(acts[peak]):.3f} on token {peak} of {len(ids)}" in page_text(at)


@pytest.mark.parametrize("bad", ["../../x", "../neurons", "/etc", "a/b/c", "%s", "nope"])
def test_bad_dictionary_links_are_one_line(make_app, runs_root, bad):
    bad = str(runs_root / DICTS / SAE_NAME) if bad == "%s" else bad  # an absolute path to a real dictionary
    at = make_app("features", run="demo", dict=bad, feature=1)
    (error,) = _errors(at)
    assert "dictionary was refused" in error and "\n" not in error
    assert not at.header  # no other dictionary's feature shown in its place
    at.selectbox(key="feature_dict").select(TRANSCODER_NAME).run()  # picking one clears the message
    assert not _errors(at) and at.header[0].value == f"{TRANSCODER_NAME} · feature 0"  # the link's feature was for the refused one


def test_feature_outside_the_dictionary_is_one_line(make_app):
    at = make_app("features", run="demo", dict=SAE_NAME, feature=64)
    (error,) = _errors(at)
    assert "feature 64" in error and "0–63" in error and not at.header


def test_symlinked_dictionary_out_of_the_root_is_refused(broken, tmp_path):
    shutil.copytree(broken / DICTS / SAE_NAME, tmp_path / "outside")
    os.symlink(tmp_path / "outside", broken / DICTS / "linked")
    at = open_page("features", run="demo", dict="linked", feature=0)
    assert any("outside the runs root" in e for e in _errors(at)), _errors(at)
    assert not at.header
    at = open_page("feature_table", run="demo")
    at.selectbox(key="ftable_dict").select("linked").run()
    assert any("outside the runs root" in e for e in _errors(at)) and not at.dataframe


def test_corrupt_feature_index_costs_its_panels_not_the_page(broken):
    index = broken / DICTS / SAE_NAME / "index" / "index.safetensors"
    index.write_bytes(index.read_bytes()[:1000])
    at = open_page("features", run="demo", dict=SAE_NAME, feature=2)
    (error,) = _errors(at)
    assert "feature index" in error and "\n" not in error
    assert "Run the feature on your own text" in page_text(at)  # the model + dictionary still run
    at = open_page("feature_table", run="demo", dict=SAE_NAME)
    assert len(_errors(at)) == 1 and not at.exception


def test_dictionary_without_index_offers_the_command_and_own_text(broken):
    shutil.rmtree(broken / DICTS / TRANSCODER_NAME / "index")
    at = open_page("features", run="demo", dict=TRANSCODER_NAME, feature=2)
    assert not _errors(at)
    assert any("tinyinterp analyze features" in i.value for i in at.info)
    assert "max " in page_text(at)  # the own-text panel ran


def test_hostile_explanation_and_tokens_are_escaped(broken):
    from tests.support.hostile_data import HOSTILE

    log = broken / DICTS / SAE_NAME / "explanations" / "baseline.jsonl"
    lines = log.read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "explanation": HOSTILE})
    log.write_text("\n".join(lines) + "\n")
    at = open_page("features", run="demo", dict=SAE_NAME, feature=first["neuron"])
    shown = _html(at, "explanation")
    assert "&lt;script&gt;alert(8)&lt;/script&gt;" in shown and "<script>" not in shown and "<img" not in shown
    for h in at.get("html"):
        assert "<script" not in h.proto.body.lower()
    at = open_page("feature_table", run="demo", dict=SAE_NAME)
    assert HOSTILE in at.dataframe[0].value.explanation.tolist()  # the grid draws it as text


def test_feature_table_lists_every_feature_from_the_index(make_app, indexes, explanations):
    at = make_app("feature_table", run="demo", dict=SAE_NAME)
    table = at.dataframe[0].value
    index = indexes[SAE_NAME]
    stats = index.stats_frame().set_index("neuron")
    assert len(table) == index.n_features == 64
    assert math.isclose(table["L0 share"].sum(), 1.0, rel_tol=1e-6)
    scores = table.score.dropna().tolist()
    assert len(scores) == explanations.score.notna().sum() and scores == sorted(scores, reverse=True)
    for row in table.head(6).itertuples():
        assert math.isclose(row.density, stats.loc[row.feature, "frac_active"], rel_tol=1e-6)
        assert math.isclose(row.max, stats.loc[row.feature, "max"], rel_tol=1e-6)
        link = urlsplit(row.open)
        assert link.path == "features" and parse_qs(link.query) == {"run": ["demo"], "dict": [SAE_NAME],
                                                                   "feature": [str(row.feature)]}
    at.selectbox(key="ftable_sort").select("density").run()
    density = at.dataframe[0].value.density.tolist()
    assert density == sorted(density, reverse=True)
    at.toggle(key="ftable_ascending").set_value(True).run()
    assert at.dataframe[0].value.density.tolist() == sorted(density)
    at.selectbox(key="ftable_dict").select(TRANSCODER_NAME).run()
    assert len(at.dataframe[0].value) == 96 and at.dataframe[0].value.score.isna().all()
