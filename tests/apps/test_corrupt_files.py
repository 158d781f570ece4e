"""Corrupted JSON / JSONL fed to each page's loader: one line or a skipped-rows note, never a traceback
(issue 18, items 9 and 17).

Property-based: hypothesis writes emergence step summaries, sweep summaries and metrics, explanation logs
and grade logs with wrong types, NaN / ±inf / huge numbers, non-objects and unreadable lines, then opens
the page that reads them with AppTest. Each example gets its own runs root (fresh cache keys).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.app_pages import open_page, page_text
from tests.support.app_depth import deep_root  # noqa: F401  (fixture)

EXAMPLES = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_ids = itertools.count()

hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(1e308),
    st.just(10**400), st.just(-5), st.integers(), st.floats(), st.text(max_size=8), st.just("12"))
hostile_json = st.recursive(hostile_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6)


def shown(markdown: str) -> str:
    """The text a Markdown source shows (CommonMark backslash escapes undone)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def _one_line_errors(at) -> list[str]:
    errors = [e.value for e in at.error] + [e.value for e in at.sidebar.get("error")]
    assert all("\n" not in e and "Traceback" not in e for e in errors), errors
    return errors


def _fresh_root(tmp_path: Path, monkeypatch) -> Path:
    from apps.runs_root import RUNS_ENV

    root = tmp_path / f"root{next(_ids)}"
    root.mkdir()
    monkeypatch.setenv(RUNS_ENV, str(root))
    return root


def _training_run(root: Path, name: str = "run") -> Path:
    """A run being trained (metrics only): listed, and enough for the emergence and grades pages."""
    run = root / name
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "tokens": 10, "train_loss": 5.0}) + "\n")
    return run


# ----- emergence ------------------------------------------------------------------------------------


def _summary(step: int) -> dict:
    heads = [[{"head_class": "local", "distance_explained": 0.5, "content_explained": 0.1, "mean_distance": 1.0}
              for _ in range(2)] for _ in range(2)]
    return {"step": step, "tokens": 100 * step, "heads": heads, "role_share": 0.1, "mean_type_purity": 0.4,
            "local": 4, "semantic": 0, "mixed": 0, "prompt_mean_distance": 1.2, "prompt_prev_token": 0.3,
            "val_loss": 4.0, "train_loss": 4.1}


@st.composite
def corrupted_summaries(draw) -> list:
    rows = [_summary(1), _summary(2)]
    how = draw(st.sampled_from(["field", "head", "whole"]))
    victim = draw(st.integers(0, 1))
    if how == "field":
        rows[victim][draw(st.sampled_from(sorted(rows[victim])))] = draw(hostile_json)
    elif how == "head":
        rows[victim]["heads"][0][draw(st.integers(0, 1))] = draw(hostile_json)
    else:
        rows[victim] = draw(hostile_json)
    return rows


@EXAMPLES
@given(rows=corrupted_summaries())
def test_corrupt_emergence_summaries(tmp_path, monkeypatch, rows):
    run = _training_run(_fresh_root(tmp_path, monkeypatch))
    for i, row in enumerate(rows, 1):
        folder = run / "analysis" / "emergence" / f"step_{i:08d}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(row))  # NaN / Infinity as Python writes them
    at = open_page("emergence", run="run")
    assert not at.exception, [e.value for e in at.exception]
    errors = _one_line_errors(at)
    drawn = "saved states from step" in page_text(at)
    named = [e for e in errors if e.startswith("emergence analysis") and "summary.json" in e]
    assert drawn != bool(named), (drawn, errors)  # the curves, or one line naming the bad summary


# ----- scaling --------------------------------------------------------------------------------------


@st.composite
def corrupted_sweeps(draw) -> tuple[str, object]:
    how = draw(st.sampled_from(["runs", "run", "field", "loss"]))
    return how, draw(hostile_json if how != "loss" else st.sampled_from([math.nan, math.inf, -math.inf, 1e308, "x", None]))


@EXAMPLES
@given(case=corrupted_sweeps(), which=st.integers(0, 5))
def test_corrupt_sweep_summaries(tmp_path, monkeypatch, case, which):
    from tests.support.synthetic_sweep import make_sweep

    root = _fresh_root(tmp_path, monkeypatch)
    sweep = make_sweep(root / "sweep", widths=(16, 64, 256), budgets=(1e11, 1e12))
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    how, value = case
    run = summary["runs"][which]
    if how == "runs":
        summary["runs"] = value
    elif how == "run":
        summary["runs"][which] = value
    elif how == "field":
        run[sorted(run)[which % len(run)]] = value
    else:  # one run's validation losses
        path = sweep / run["name"] / "metrics.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "val_loss": value}) + "\n" for r in records))
    (sweep / "sweep_summary.json").write_text(json.dumps(summary))
    at = open_page("scaling")
    assert not at.exception, [e.value for e in at.exception]
    errors = _one_line_errors(at)
    assert bool(at.dataframe) != bool([e for e in errors if "sweep_summary.json" in e]), errors


def test_sweep_runs_not_a_list_names_the_file(tmp_path, monkeypatch):
    from tests.support.synthetic_sweep import make_sweep

    root = _fresh_root(tmp_path, monkeypatch)
    sweep = make_sweep(root / "sweep", widths=(16, 64, 256), budgets=(1e11, 1e12))
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    (sweep / "sweep_summary.json").write_text(json.dumps({**summary, "runs": {"a": 1}}))
    (error,) = _one_line_errors(open_page("scaling"))
    assert "sweep_summary.json" in error and "'runs' is not a list" in error


# ----- explanations ---------------------------------------------------------------------------------

BAD_LINES = ("not json", "[1, 2]", "3", '"text"', '{"layer": 0, "neuron"')
BAD_FIELDS = {"layer": ["0", None, [0], True, -1, 1.5], "neuron": ["1", None, {}], "id": [[1], {"a": 1}, None],
              "explanation": [None, 3, ["x"], {"t": "x"}], "score": ["0.5", [0.5], {"s": 1}]}


@st.composite
def explanation_logs(draw) -> tuple[list[str], int]:
    """JSONL lines of an explanation log and how many of them are malformed."""
    lines, bad = [], 0
    for i in range(draw(st.integers(1, 8))):
        layer, neuron = draw(st.integers(0, 1)), draw(st.integers(0, 63))
        record = {"id": f"L{layer}N{neuron}", "layer": layer, "neuron": neuron, "status": "ok",
                  "explanation": draw(st.text(max_size=20)), "score": draw(st.one_of(st.none(), st.floats(-1, 1)))}
        kind = draw(st.sampled_from(["good", "good", "line", "field"]))
        if kind == "line":
            lines.append(draw(st.sampled_from(BAD_LINES)))
            bad += 1
            continue
        if kind == "field":
            key = draw(st.sampled_from(sorted(BAD_FIELDS)))
            record[key] = draw(st.sampled_from(BAD_FIELDS[key]))
            bad += 1
        lines.append(json.dumps(record))
    return lines, bad


@pytest.fixture
def deep_copy(deep_root, tmp_path, monkeypatch):  # noqa: F811
    from apps.runs_root import RUNS_ENV

    root = tmp_path / "runs"
    shutil.copytree(deep_root, root, symlinks=True)
    monkeypatch.setenv(RUNS_ENV, str(root))
    return root


@settings(EXAMPLES, max_examples=5)  # the neuron table page is the heaviest of these
@given(log=explanation_logs())
def test_malformed_explanation_records_are_skipped_and_counted(deep_copy, log):
    import os

    lines, n_bad = log
    path = deep_copy / "demo" / "analysis" / "explanations" / "llm-fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n")
    stamp = 2_000_000_000 + next(_ids)  # a new version for every example: the cache must not answer
    os.utime(path, (stamp, stamp))
    at = open_page("neuron_table", run="demo")
    assert not at.exception, [e.value for e in at.exception]
    _one_line_errors(at)
    table = at.dataframe[0].value
    meta = json.loads((deep_copy / "demo" / "analysis" / "neurons" / "meta.json").read_text())
    assert len(table) == int(meta["n_layers"]) * int(meta["d_mlp"])  # every neuron still listed
    notes = [shown(c.value) for c in at.caption if "llm-fuzz.jsonl" in c.value]
    if n_bad:
        plural = "s" if n_bad > 1 else ""
        assert notes == [f"demo/analysis/explanations/llm-fuzz.jsonl: skipped {n_bad} malformed record{plural}"], notes
    else:
        assert not notes


def test_one_bad_explanation_record_costs_one_row(deep_copy):
    """The report's case: one record with a list id replaced the whole table with a raw TypeError."""
    path = next((deep_copy / "demo" / "analysis" / "explanations").glob("baseline.jsonl"))
    good = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("\n".join([json.dumps({**good[0], "id": ["L0", "N0"]}), *map(json.dumps, good[1:])]) + "\n")
    for page in ("neuron_table", "neurons"):
        at = open_page(page, run="demo", layer=good[1]["layer"], neuron=good[1]["neuron"])
        assert not at.exception and not _one_line_errors(at)
        assert "demo/analysis/explanations/baseline.jsonl: skipped 1 malformed record" in shown(page_text(at))
    table = open_page("neuron_table", run="demo").dataframe[0].value
    assert table.score.notna().sum() == len(good) - 1  # every other neuron keeps its explanation


# ----- grades ---------------------------------------------------------------------------------------

GRADE = {"checkpoint": "final", "step": 3, "prompt_id": "p0", "sample": 0, "status": "ok",
         "grades": {"grammar": 7, "creativity": 6, "consistency": 5, "plot": 4}}
BAD_GRADE_LINES = ("not json", "[]", "42", '{"checkpoint": "final", "grades": {', "\ufffd\ufffd", "null")


@EXAMPLES
@given(kinds=st.lists(st.sampled_from(["good", "good", *BAD_GRADE_LINES]), min_size=1, max_size=10))
def test_bad_grade_lines_are_skipped_and_reported(tmp_path, monkeypatch, kinds):
    run = _training_run(_fresh_root(tmp_path, monkeypatch))
    eval_dir = run / "analysis" / "eval"
    eval_dir.mkdir(parents=True)
    lines = [json.dumps({**GRADE, "prompt_id": f"p{i}"}) if k == "good" else k for i, k in enumerate(kinds)]
    (eval_dir / "grades.jsonl").write_text("\n".join(lines) + "\n")
    at = open_page("grades", run="run")
    assert not at.exception, [e.value for e in at.exception]
    assert not _one_line_errors(at)
    bad = [i for i, k in enumerate(kinds, 1) if k != "good"]
    notes = [shown(w.value) for w in at.warning if "grades.jsonl" in w.value]
    if bad:
        listed = ", ".join(map(str, bad[:5])) + (", …" if len(bad) > 5 else "")
        plural = "s" if len(bad) > 1 else ""
        assert notes == [f"run/analysis/eval/grades.jsonl: skipped {len(bad)} unreadable line{plural} "
                         f"({'lines' if plural else 'line'} {listed})"], notes
    else:
        assert not notes
    if kinds.count("good"):
        at.selectbox(key="eval_file").select("grades.jsonl").run()
        assert len(at.dataframe[0].value) == kinds.count("good")  # the good lines are all shown


def test_one_bad_grade_line_keeps_the_page(runs_root, tmp_path, monkeypatch):
    """issue 18 item 17: one bad line in grades.jsonl no longer ends in 'rerun `tinyinterp train`'."""
    from apps.runs_root import RUNS_ENV

    root = tmp_path / "runs"
    shutil.copytree(runs_root, root, symlinks=True)
    path = root / "demo" / "analysis" / "eval" / "grades.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], '{"torn": ', *lines[1:]]) + "\n")
    monkeypatch.setenv(RUNS_ENV, str(root))
    at = open_page("grades", run="demo")
    assert not at.exception and not _one_line_errors(at)
    text = shown(page_text(at))
    assert "demo/analysis/eval/grades.jsonl: skipped 1 unreadable line (line 2)" in text and "tinyinterp train" not in text
    assert "Age groups the grader assigned" in text  # the summary is still shown
