"""A broken or missing file in a run costs its own panel one line, never the page (issue 10, item 15).

Each test copies the session's runs root, breaks one kind of file in the copy, opens the page that reads
it and checks three things: no exception (Streamlit would show a traceback), one ``st.error`` line that
names the file, and that another part of the same page still works.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.app_pages import iframe_sources, open_page, page_text

NEURONS, HEADS = "analysis/neurons", "analysis/heads"


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def assert_one_line_naming(at, name: str) -> str:
    found = [e for e in errors(at) if name in e]
    assert found, f"no error naming {name}: {errors(at)}"
    assert all("\n" not in e and "Traceback" not in e for e in found)
    return found[0]


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ----- Runs page ------------------------------------------------------------------------------------


def test_bad_metrics_of_one_run_leaves_the_runs_page_working(broken):
    metrics = broken / "demo" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines[:3] + ["{not json"] + lines[3:]) + "\n")  # garbage mid-file
    at = open_page("runs", run="baseline")
    table = at.dataframe[0].value.set_index("run")
    assert sorted(table.index) == ["baseline", "demo"]
    assert "metrics.jsonl" in table.loc["demo", "problem"] and table.loc["baseline", "problem"] == ""
    assert "Run `baseline`" in at.header[0].value
    at.sidebar.selectbox(key="run").select("demo").run()
    assert not at.exception
    assert_one_line_naming(at, "metrics.jsonl")
    assert any(m.label == "parameters" for m in at.metric)  # config panel of the same run still shown


def test_bad_config_of_one_run_leaves_the_runs_page_working(broken):
    (broken / "baseline" / "config.json").write_text('{"model": {"d_model": ')
    at = open_page("runs", run="demo")
    table = at.dataframe[0].value.set_index("run")
    assert "config.json" in table.loc["baseline", "problem"]
    assert table.loc["demo", "steps"] == 120
    at.sidebar.selectbox(key="run").select("baseline").run()
    assert not at.exception
    assert_one_line_naming(at, "config.json")
    assert "Training curves" in [s.value for s in at.subheader]


# ----- Neurons page ----------------------------------------------------------------------------------


def test_corrupt_purity_json(broken):
    (broken / "demo" / NEURONS / "purity.json").write_text("[1, 2")
    at = open_page("neurons", run="demo")
    assert_one_line_naming(at, "purity.json")
    assert at.header[0].value == "Layer 0 · neuron 0"
    assert any('class="example"' in h.proto.body for h in at.get("html"))  # top examples still drawn


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_corrupt_or_missing_index_safetensors(broken, damage):
    index = broken / "demo" / NEURONS / "index.safetensors"
    truncate(index) if damage == "corrupt" else index.unlink()
    at = open_page("neurons", run="demo")
    assert_one_line_naming(at, "index.safetensors" if damage == "missing" else "neuron index")
    assert at.title[0].value == "Neurons"
    assert at.sidebar.selectbox(key="run").value == "demo"  # the app around the page still works


def test_corrupt_meta_json(broken):
    (broken / "demo" / NEURONS / "meta.json").write_text("{")
    at = open_page("neurons", run="demo")
    assert_one_line_naming(at, "meta.json")
    at.sidebar.selectbox(key="run").select("baseline").run()  # another run's index opens fine
    assert not at.exception and at.header[0].value == "Layer 0 · neuron 0"


def test_index_whose_tensors_disagree_with_meta(broken):
    meta_path = broken / "demo" / NEURONS / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["d_mlp"] = meta["d_mlp"] * 2
    meta_path.write_text(json.dumps(meta))
    at = open_page("neurons", run="demo")
    message = assert_one_line_naming(at, "index.safetensors")
    assert "shape" in message


def test_index_built_for_another_model_shape(broken):
    """The run was retrained with another d_mlp after its index was built."""
    import torch

    from tinyinterp.runs import rundir
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.data.tokenizer import Tokenizer
    from tinyinterp.models.zoo import preset_config

    run = broken / "demo"
    tokenizer = Tokenizer.load(run)
    torch.manual_seed(0)
    cfg = preset_config("test-tiny", d_vocab=tokenizer.vocab_size, d_mlp=48)
    rundir.save_run(run, HookedTransformer(cfg, tokenizer=tokenizer), tokenizer, {"train": None})
    at = open_page("neurons", run="demo")
    message = assert_one_line_naming(at, "meta.json")
    assert "48" in message and "rebuild" in message
    assert [m for m in at.metric if m.label == "max"]  # the index's own statistics still shown


def test_truncated_weights(broken):
    truncate(broken / "demo" / "model.safetensors", keep=0.6)
    at = open_page("neurons", run="demo")
    assert any("top examples" in e for e in errors(at))
    assert [m for m in at.metric if m.label == "max"]
    at = open_page("heads", run="demo")
    assert any("model" in e for e in errors(at))
    assert len(at.dataframe[0].value) > 0  # the head table (heads.json) is independent of the weights
    at = open_page("generate", run="demo")
    assert any("model" in e for e in errors(at))


# ----- Heads, Grades, Compare -------------------------------------------------------------------------


def test_corrupt_heads_json(broken):
    (broken / "demo" / HEADS / "heads.json").write_text('{"metrics": ')
    at = open_page("heads", run="demo")
    assert_one_line_naming(at, "heads.json")
    (src,) = iframe_sources(at)  # live attention patterns only need the model
    assert "CircuitsVis.render(" in src


def test_corrupt_grades_summary(broken):
    (broken / "demo" / "analysis" / "eval" / "grades_summary.json").write_text("{]")
    at = open_page("grades", run="demo")
    assert_one_line_naming(at, "grades_summary.json")
    assert "grades.jsonl" in at.selectbox(key="eval_file").options  # the file browser still works


def test_grades_summary_of_the_wrong_shape(broken):
    (broken / "demo" / "analysis" / "eval" / "grades_summary.json").write_text('{"final": 3}')
    at = open_page("grades", run="demo")
    assert_one_line_naming(at, "grades_summary.json")


def test_corrupt_comparison_json(broken):
    (broken / "demo" / "analysis" / "compare" / "demo__vs__baseline" / "comparison.json").write_text('{"a": {}}')
    at = open_page("compare", run="demo")
    assert_one_line_naming(at, "comparison.json")
    at.radio(key="compare_mode").set_value("two runs").run()  # the other mode still works
    assert not at.exception
    assert [s.value for s in at.subheader][:2] == ["A: demo", "B: baseline"]


def test_missing_corpus_only_costs_the_examples(broken):
    shutil.rmtree(broken / "corpus")
    at = open_page("neurons", run="demo")
    assert any("top examples" in e and "corpus" in e for e in errors(at))
    assert "Top tokens" in page_text(at)
