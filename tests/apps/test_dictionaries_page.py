"""The Dictionaries page on two dictionaries trained and evaluated by the real code (issue 19, item 7)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.app_dictionaries import NAMES, SAE_NAME, TRANSCODER_NAME
from tests.support.app_pages import open_page, page_text

DICTS = "demo/analysis/dictionaries"


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_table_shows_each_dictionary_with_its_saved_metrics(make_app, runs_root):
    at = make_app("dictionaries", run="demo")
    assert at.title[0].value == "Dictionaries" and not _errors(at)
    table = at.dataframe[0].value.set_index("dictionary")
    assert sorted(table.index) == sorted(NAMES)
    for name in NAMES:
        saved = json.loads((runs_root / DICTS / name / "eval.json").read_text())
        row = table.loc[name]
        assert row["explained variance"] == pytest.approx(saved["explained_variance"])
        assert row["L0"] == pytest.approx(saved["l0"])
        assert row["CE-loss score"] == pytest.approx(saved["ce_loss_score"])
        assert row["dead"] == saved["dead_features"] and row["dense"] == saved["dense_features"]
        assert row["features"] == f"features?run=demo&dict={name.replace('/', '%2F')}"
        assert row["table"] == f"feature_table?run=demo&dict={name.replace('/', '%2F')}"
    assert table.loc[TRANSCODER_NAME, "kind"] == "transcoder"
    assert table.loc[TRANSCODER_NAME, "hook"] == "blocks.1.ln2.hook_normalized → blocks.1.hook_mlp_out"
    assert table.loc[SAE_NAME, "width"] == 64 and table.loc[SAE_NAME, "k"] == 4
    counts = at.dataframe[1].value.set_index("dictionary")
    assert counts.loc[SAE_NAME, "dead share"] == pytest.approx(table.loc[SAE_NAME, "dead"] / 64)


def chart_frames(at) -> dict[str, object]:
    """Each Altair chart of the page: its y field (or "curves" for the faceted training curves) -> the data
    it draws (decoded from Arrow)."""
    import pyarrow as pa

    out = {}
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        title = "curves" if "facet" in spec else spec["encoding"]["y"]["field"]
        out[title] = pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()
    return out


def fvu_curve(at):
    curves = chart_frames(at)["curves"]
    return curves[curves.metric == "FVU (fraction of variance unexplained)"]


def test_scatters_and_training_curves_are_drawn_from_the_files(make_app, runs_root):
    at = make_app("dictionaries", run="demo")
    charts = chart_frames(at)
    for field, key in (("explained variance", "explained_variance"), ("CE-loss score", "ce_loss_score")):
        drawn = charts[field].set_index("dictionary")
        for name in NAMES:
            saved = json.loads((runs_root / DICTS / name / "eval.json").read_text())
            assert drawn.loc[name, "L0"] == pytest.approx(saved["l0"])
            assert drawn.loc[name, field] == pytest.approx(saved[key])
    fvu = fvu_curve(at)
    for name in NAMES:
        logged = [json.loads(l) for l in (runs_root / DICTS / name / "train_log.jsonl").read_text().splitlines()]
        assert len(logged) > 3
        curve = fvu[fvu.dictionary == name]
        assert curve["tokens"].tolist() == [r["tokens"] for r in logged]
        assert curve["value"].tolist() == pytest.approx([r["fvu"] for r in logged])
    assert {"AuxK loss (dead features)", "L0 (active features per token)", "dead fraction (training)"} <= set(
        charts["curves"].metric)
    saved = json.loads((runs_root / DICTS / SAE_NAME / "eval.json").read_text())
    assert charts["features"]["features"].tolist() == saved["density_histogram"]["counts"]  # the density histogram
    at.multiselect(key="curve_dicts").set_value([TRANSCODER_NAME]).run()
    assert set(fvu_curve(at).dictionary) == {TRANSCODER_NAME}


def test_run_without_dictionaries_says_how_to_train_one(make_app):
    at = make_app("dictionaries", run="baseline")
    assert any("tinyinterp sae train" in i.value for i in at.info)


def test_corrupt_eval_json_costs_one_line_and_the_row_keeps_its_config(broken):
    (broken / DICTS / SAE_NAME / "eval.json").write_text('{"l0": ')
    at = open_page("dictionaries", run="demo")
    (error,) = _errors(at)
    assert f"{SAE_NAME}/eval.json" in error and "not valid JSON" in error and "\n" not in error
    table = at.dataframe[0].value.set_index("dictionary")
    assert table.loc[SAE_NAME, "width"] == 64 and table.loc[SAE_NAME, "L0"] != table.loc[SAE_NAME, "L0"]  # NaN
    assert table.loc[TRANSCODER_NAME, "L0"] == pytest.approx(6.0)  # the other dictionary is untouched
    assert "Training curves" in page_text(at) and len(fvu_curve(at))


def test_torn_train_log_loses_only_its_bad_lines(broken):
    path = broken / DICTS / TRANSCODER_NAME / "train_log.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ['{"step": 9, "fvu": '] + lines[2:]) + "\n" + lines[0][:10])  # mid + torn tail
    at = open_page("dictionaries", run="demo")
    assert not _errors(at)
    (warning,) = [w.value for w in at.warning]
    assert "train_log.jsonl" in warning and r"skipped 1 unreadable line \(line 3\)" in warning  # md_text escapes the brackets
    fvu = fvu_curve(at)
    assert len(fvu[fvu.dictionary == TRANSCODER_NAME]) == len(lines)


def test_corrupt_cfg_and_train_log_are_one_line_each(broken):
    (broken / DICTS / SAE_NAME / "cfg.json").write_text("[")
    (broken / DICTS / TRANSCODER_NAME / "train_log.jsonl").unlink()
    (broken / DICTS / TRANSCODER_NAME / "train_log.jsonl").mkdir()
    at = open_page("dictionaries", run="demo")
    errors = _errors(at)
    assert len(errors) == 2, errors
    assert any(f"{SAE_NAME}/cfg.json" in e for e in errors)
    assert any("train_log.jsonl" in e and "directory" in e for e in errors)
    table = at.dataframe[0].value.set_index("dictionary")
    assert table.loc[SAE_NAME, "L0"] == pytest.approx(4.0)  # its eval.json still read


def test_symlinked_dictionary_files_outside_the_root_are_refused(broken, tmp_path):
    import os
    import shutil

    outside = tmp_path / "outside"
    shutil.copytree(broken / DICTS / SAE_NAME, outside)
    evil = json.loads((outside / "eval.json").read_text())
    evil["l0"] = 123.0
    (outside / "eval.json").write_text(json.dumps(evil))
    (broken / DICTS / SAE_NAME / "eval.json").unlink()
    os.symlink(outside / "eval.json", broken / DICTS / SAE_NAME / "eval.json")
    os.symlink(outside, broken / DICTS / "linked")  # a whole dictionary folder linked in from outside
    at = open_page("dictionaries", run="demo")
    errors = _errors(at)
    assert any("eval.json" in e and "outside the runs root" in e for e in errors), errors
    assert any("linked" in e and "outside the runs root" in e for e in errors), errors
    table = at.dataframe[0].value.set_index("dictionary")
    assert "linked" not in table.index and 123.0 not in table["L0"].tolist()


@pytest.mark.parametrize("name", ["../../x", "../neurons", "/etc", "a/b/c", "", "x\x00y", ".", "a/../b", 3])
def test_dictionary_names_that_leave_the_folder_are_refused(app_env, name):
    from apps.dictionary_data import dictionary_dir
    from apps.runs_root import PathOutsideRoot

    with pytest.raises(PathOutsideRoot) as e:
        dictionary_dir(app_env / "demo", name)
    assert "\n" not in str(e.value)


def test_dictionary_names_are_listed_and_resolved(app_env):
    from apps.dictionary_data import dictionary_dir, dictionary_names
    from tinyinterp.errors import DataError

    run = app_env / "demo"
    assert dictionary_names(run) == sorted(NAMES)  # checkpoint/ folders are not dictionaries
    assert dictionary_dir(run, TRANSCODER_NAME) == (run / DICTS.split("/", 1)[1] / TRANSCODER_NAME).resolve()
    with pytest.raises(DataError, match="not a dictionary"):
        dictionary_dir(run, "transcoders")


def test_hostile_dictionary_names_and_hooks_are_text(broken):
    from markdown_it import MarkdownIt

    from tests.support.hostile_data import HOSTILE, HOSTILE_NAME, add_hostile_strings

    add_hostile_strings(broken)
    at = open_page("dictionaries", run="demo")
    assert not at.exception and not _errors(at)
    table = at.dataframe[0].value.set_index("dictionary")
    assert table.loc[HOSTILE_NAME, "hook"] == HOSTILE  # a table cell: text
    md = MarkdownIt("commonmark", {"html": True})
    captions = [c.value for c in at.caption]
    assert any("onerror" in c for c in captions), "the unevaluated hostile name is listed"
    for source in captions + [e.value for kind in ("title", "subheader", "info", "warning") for e in at.get(kind)]:
        rendered = md.render(source)
        assert "<img" not in rendered and "<script" not in rendered, (source, rendered)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "", "x", "/", "transcoders", "layer_01", "~", "\\", "\x00", SAE_NAME]),
             max_size=5).map("/".join)))
def test_any_dictionary_name_resolves_inside_the_folder_or_is_one_line(app_env, name):
    from apps.dictionary_data import dictionary_dir
    from tinyinterp.errors import TinyinterpError

    base = (app_env / DICTS).resolve()
    try:
        folder = dictionary_dir(app_env / "demo", name)
    except TinyinterpError as e:
        assert "\n" not in str(e)
        return
    assert folder.is_relative_to(base) and folder != base and (folder / "cfg.json").is_file()
