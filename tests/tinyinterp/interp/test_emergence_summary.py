"""Emergence step summaries are checked on load: a hand-edited or damaged summary.json is one line, not a traceback."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.emergence import EmergenceResult, step_dir

GOOD = {"step": 4, "kind": "snapshot", "tokens": 1024, "val_loss": 3.2, "train_loss": None, "role_share": 0.1,
        "mean_type_purity": 0.4, "local": 2, "semantic": 1, "mixed": 1, "prompt_mean_distance": 2.5,
        "prompt_prev_token": 0.3, "heads": [[{"head_class": "local"}] * 2] * 2}
BAD_VALUES = st.one_of(st.text(max_size=5), st.lists(st.integers(), min_size=1, max_size=2), st.just(None), st.booleans(),
                       st.just(float("inf")), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
REQUIRED = ["step", "tokens", "role_share", "local", "semantic", "mixed", "prompt_mean_distance", "prompt_prev_token",
            "heads"]


def _write(out, row, step=4):
    folder = step_dir(out, step)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(row))


def test_a_good_summary_loads(tmp_path):
    _write(tmp_path, GOOD)
    assert EmergenceResult.load(tmp_path).to_frame()["step"].tolist() == [4]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(REQUIRED), value=BAD_VALUES)
def test_wrong_types_are_one_line_naming_the_file(tmp_path_factory, key, value):
    if key in ("local", "semantic", "mixed") and value is None:
        value = "none"
    out = tmp_path_factory.mktemp("emergence")
    _write(out, {**GOOD, key: value})
    with pytest.raises(TinyinterpError) as info:
        EmergenceResult.load(out)
    message = str(info.value)
    assert "\n" not in message and str(step_dir(out, 4) / "summary.json") in message and "delete it" in message


def test_a_summary_of_another_step_is_refused(tmp_path):
    _write(tmp_path, {**GOOD, "step": 8}, step=4)
    with pytest.raises(TinyinterpError, match="'step'"):
        EmergenceResult.load(tmp_path)
