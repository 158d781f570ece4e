"""What the pages show about runs (issue 10, item 16): runs being trained, the validation curve,
colours of the two activation views, labels of a saved comparison, and corpus-size warnings."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np

from tests.support.app_pages import open_page


def chart_data(chart):
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    (dataset,) = chart.proto.datasets
    return convert_arrow_bytes_to_pandas_df(dataset.data.data)


# ----- runs being trained, validation curve ------------------------------------------------------------


def test_validation_curve_is_a_line_through_its_points(make_app, runs_root):
    from tinyinterp.io.jsonl import read_jsonl

    records = read_jsonl(runs_root / "demo" / "metrics.jsonl")
    val = [r for r in records if "val_loss" in r]
    assert 0 < len(val) < len(records)  # logged on a fraction of the rows, as the trainer does
    at = make_app("runs", run="demo")
    chart = at.get("vega_lite_chart")[0]
    frame = chart_data(chart)
    shown = frame[frame["curve"] == "val_loss"]
    assert shown["loss"].notna().all(), "a null between two points breaks the line"
    assert np.allclose(shown["loss"].to_numpy(), [r["val_loss"] for r in val])
    assert len(frame[frame["curve"] == "train_loss"]) == len(records)
    assert '"type": "line"' in chart.proto.spec


def test_a_run_being_trained_is_listed_with_its_curve(broken):
    live = broken / "live"
    (live / "checkpoints").mkdir(parents=True)
    shutil.copy(broken / "demo" / "metrics.jsonl", live / "metrics.jsonl")  # no config.json, no weights yet
    at = open_page("runs", run="live")
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["live", "status"] == "training" and table.loc["demo", "status"] == "done"
    assert table.loc["live", "steps"] == 120
    assert "Run `live`" in at.header[0].value
    assert any("being trained" in i.value for i in at.info)
    assert chart_data(at.get("vega_lite_chart")[0])["loss"].notna().all()
    with (live / "metrics.jsonl").open("a") as f:  # the trainer appends: the next run of the page shows it
        f.write(json.dumps({"step": 130, "tokens": 130 * 384, "train_loss": 1.0}) + "\n")
    at.run()
    assert at.dataframe[0].value.set_index("run").loc["live", "steps"] == 130
    at.switch_page("views/generate.py").run()  # a page that needs the model says why, in one line
    assert not at.exception and any("still being trained" in e.value for e in at.error)


# ----- colours --------------------------------------------------------------------------------------


def _props(document: str) -> dict:
    call = document[document.rindex("CircuitsVis.render("):]
    return json.loads(call[call.index("{"):call.rindex("}") + 1].replace("\\u003c", "<"))


def test_circuitsvis_and_html_views_share_colours_and_a_symmetric_scale():
    from apps.render import COLOUR_LEGEND, NEGATIVE_RGB, POSITIVE_RGB, inner_document, neuron_vis, tokens_html

    assert POSITIVE_RGB[2] > max(POSITIVE_RGB[:2]) and NEGATIVE_RGB[0] > max(NEGATIVE_RGB[1:])  # blue +, red −
    assert COLOUR_LEGEND.startswith("blue = positive")
    ex = {"token_strs": ["peak", "tiny", "zero"], "activations": [2.0, -0.02, 0.0], "center": 0,
          "activation": 2.0, "doc": 0, "pos": 0}
    props = _props(inner_document(neuron_vis([ex], 0, 0)))
    assert props["positiveColor"] == "rgb({}, {}, {})".format(*POSITIVE_RGB)
    assert props["negativeColor"] == "rgb({}, {}, {})".format(*NEGATIVE_RGB)
    assert props["minValue"] == -props["maxValue"] == -2.0  # a tiny negative is 1% of the colour, not 100%
    markup = tokens_html(ex["token_strs"], ex["activations"])
    alphas = [float(a) for a in re.findall(r"rgba\(\d+,\d+,\d+,([0-9.]+)\)", markup)]
    assert "rgba({},{},{},".format(*POSITIVE_RGB) in markup and "rgba({},{},{},".format(*NEGATIVE_RGB) in markup
    assert alphas[1] < 0.02 * alphas[0] + 1e-9


# ----- Compare --------------------------------------------------------------------------------------


def test_saved_comparison_labels_both_sides(broken):
    """An older comparison.json where both sides carry the preset name: labels come from the folder."""
    path = broken / "demo" / "analysis" / "compare" / "demo__vs__baseline" / "comparison.json"
    saved = json.loads(path.read_text())
    saved["a"]["name"] = saved["b"]["name"] = "tinystories-1m"
    path.write_text(json.dumps(saved))
    at = open_page("compare", run="demo")
    assert [s.value for s in at.subheader][:2] == ["A: demo", "B: baseline"]


def test_compare_names_the_two_sides_apart(runs_root):
    from tinyinterp.interp import ComparisonResult
    from tinyinterp.interp.compare import profile_names

    saved = ComparisonResult.load(runs_root / "demo" / "analysis" / "compare" / "demo__vs__baseline")
    assert saved.a.name != saved.b.name  # both models are the 'test-tiny' preset
    assert saved.a.name in saved.format().splitlines()[0] and saved.b.name in saved.format().splitlines()[0]
    assert profile_names("x", "x") == ("x (A)", "x (B)") and profile_names("a", "b") == ("a", "b")


def test_two_runs_on_different_corpus_sizes_warn(broken):
    at = open_page("compare", run="demo")
    at.radio(key="compare_mode").set_value("two runs").run()
    assert not [w for w in at.warning if "corpus sizes" in w.value]  # both indexes saw the same corpus
    meta_path = broken / "baseline" / "analysis" / "neurons" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["n_tokens"] = meta["n_tokens"] // 2
    meta_path.write_text(json.dumps(meta))
    at = open_page("compare", run="demo")
    at.radio(key="compare_mode").set_value("two runs").run()
    (warning,) = [w.value for w in at.warning if "corpus sizes" in w.value]
    assert f"{meta['n_tokens']:,} tokens" in warning


def test_majority_category_has_its_own_row(make_app):
    """A category name such as 'punctuation' does not fit a third of the right column (the browser test
    measures that no metric value is cut off); here: the metric is not squeezed into a 3-column row."""
    at = make_app("neurons", run="demo")
    assert any(m.label == "majority" for m in at.metric)
    cells = [[m.label for m in c.get("metric")] for c in at.columns]
    assert ["purity"] in cells and ["type purity"] in cells  # these two numbers share a row
    assert ["majority"] not in cells  # the category name is not one cell of that row
