"""tinyinterp.scaling.summary: both sweep programs write one sweep_summary.json schema; readers check it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.layout import SWEEP_SUMMARY_FILE
from tinyinterp.scaling.summary import GRID, SCALING, best_run, read_sweep_summary, write_sweep_summary

losses = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@given(values=st.lists(losses, max_size=6))
def test_best_is_the_lowest_finite_loss(values):
    runs = [{"name": f"r{i}", "final_val_loss": v} for i, v in enumerate(values)]
    finite = [(v, f"r{i}") for i, v in enumerate(values) if v is not None and v == v and abs(v) != float("inf")]
    best = best_run(runs)
    assert best == (min(finite, key=lambda t: t[0])[1] if finite else None)


def test_both_kinds_share_one_schema(tmp_path):
    for kind in (GRID, SCALING):
        (tmp_path / kind).mkdir()
        summary = write_sweep_summary(tmp_path / kind, kind, [{"name": "a", "final_val_loss": 2.0}], ["b"])
        assert set(summary) == {"kind", "runs", "pending", "best"} and summary["best"] == "a"
        assert json.loads((tmp_path / kind / SWEEP_SUMMARY_FILE).read_text()) == summary
        assert read_sweep_summary(tmp_path / kind, kind) == summary
    with pytest.raises(TinyinterpError, match="not a scaling sweep"):
        read_sweep_summary(tmp_path / GRID, SCALING)


@pytest.mark.parametrize("text", ["{broken", "[]", '{"kind": "scaling", "runs": {}}', '{"kind": "scaling", "runs": [1]}',
                                  '{"kind": "scaling", "runs": [{"name": 3}]}'])
def test_malformed_summaries_are_one_line(tmp_path, text):
    (tmp_path / SWEEP_SUMMARY_FILE).write_text(text)
    with pytest.raises(TinyinterpError) as info:
        read_sweep_summary(tmp_path, SCALING)
    assert "\n" not in str(info.value) and SWEEP_SUMMARY_FILE in str(info.value)
