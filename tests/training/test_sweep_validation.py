"""Sweeps (issue 18): one run folder per grid point, and one-line errors for specs, flags and summaries that cannot work."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.layout import CONFIG_FILE
from training.grid_sweep import main as grid_main
from training.grid_sweep import run_name
from training.scaling_spec import RunPoint, ScalingSpec
from training.scaling_sweep import main as scaling_main

positive = st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False)


def _point(lr: float, budget: float = 2048.0) -> RunPoint:
    return RunPoint(16, 1, 2, lr, 0, "tokens", budget)


def _near(a: float, ulps: int) -> float:
    """``a`` moved ``ulps`` representable floats up: a value ``:g`` (6 digits) cannot tell from ``a``."""
    for _ in range(ulps):
        a = math.nextafter(a, math.inf)
    return a


@given(a=positive, b=positive, ulps=st.integers(0, 3))
def test_scaling_run_names_are_unique_per_grid_point(a, b, ulps):
    for x, y in ((a, b), (a, _near(a, ulps))):
        assert (_point(x).name == _point(y).name) == (x == y)
        assert (_point(1e-3, x).name == _point(1e-3, y).name) == (x == y)


@given(a=positive, b=positive, ulps=st.integers(0, 3))
def test_grid_run_names_are_unique_per_learning_rate(a, b, ulps):
    for x, y in ((a, b), (a, _near(a, ulps))):
        assert (run_name("test-tiny", x) == run_name("test-tiny", y)) == (x == y)


def test_names_of_earlier_sweeps_are_unchanged():
    # Old sweep folders must keep resuming: where :g was exact, the name is what it always was.
    assert _point(3e-3).name == "d16-l1-h2-lr0.003-s0-t2048"
    assert RunPoint(64, 2, 4, 1e-3, 1, "flops", 3e11).name == "d64-l2-h4-lr0.001-s1-c3e11"
    assert run_name("test-tiny", 1e-3) == "test-tiny-lr0.001"
    assert _point(1e-3).name != _point(1.0000001e-3).name  # the collision of issue 18


def test_spec_points_that_differ_below_six_digits_get_two_folders():
    spec = ScalingSpec.from_dict({"grid": {"d_model": [16], "n_layers": [1], "n_heads": [2], "lr": [1e-3, 1.0000001e-3]},
                                  "budget": {"tokens": [2048]}})
    names = [p.name for p in spec.points()]
    assert len(names) == 2 and len(set(names)) == 2


@pytest.mark.parametrize("data, message", [
    ({"budget": {"tokens": ["abc"]}}, "budget.tokens"),
    ({"budget": {"tokens": [math.inf]}}, "budget.tokens"),
    ({"budget": {"flops": [float("nan")]}}, "budget.flops"),
    ({"budget": {"tokens": [True]}}, "budget.tokens"),
    ({"budget": {"tokens": [100]}, "defaults": "oops"}, "defaults"),
    ({"budget": {"tokens": [100]}, "defaults": {"width": 3}}, "defaults"),
    ({"budget": {"tokens": [100]}, "n_ctx": -5}, "n_ctx"),
    ({"budget": {"tokens": [100]}, "n_ctx": "long"}, "n_ctx"),
    ({"budget": {"tokens": [100]}, "train": "oops"}, "train"),
    ({"budget": {"tokens": [100]}, "warmup_fraction": "abc"}, "warmup_fraction"),
    ({"budget": {"tokens": [100]}, "d_mlp_ratio": 0}, "d_mlp_ratio"),
    ({"budget": {"tokens": [100]}, "grid": {"lr": [math.inf]}}, "lr"),
    ({"budget": {"tokens": [100]}, "grid": {"n_heads": [0]}}, "n_heads"),
])
def test_malformed_specs_are_one_line(data, message):
    with pytest.raises(TinyinterpError, match=message) as info:
        ScalingSpec.from_dict(data)
    assert "\n" not in str(info.value)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("budget", ["abc", ".inf", "-.inf", ".nan"])
def test_yaml_budgets_that_are_not_numbers_are_one_line(tmp_path, capsys, budget):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"grid: {{d_model: [16], n_heads: [2]}}\nbudget: {{tokens: [{budget}]}}\n")
    assert scaling_main(["list", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "budget.tokens" in _one_line_error(capsys)


@pytest.mark.parametrize("flags, message", [
    (["--lrs", "0"], "--lrs"),
    (["--lrs=-1e-3"], "--lrs"),
    (["--lrs", "inf"], "--lrs"),
    (["--lrs", "1e-3", "0.001"], "more than once"),
    (["--presets", "test-tiny", "test-tiny"], "more than once"),
])
def test_grid_sweep_flags_that_cannot_train_are_one_line(tmp_path, train_args, capsys, flags, message):
    out = tmp_path / "sweep"
    assert grid_main([*train_args, "--out", str(out), "--max-steps", "1", *flags]) == 2
    assert message in _one_line_error(capsys)
    assert not any(out.glob("*/" + CONFIG_FILE))  # nothing trained


@pytest.mark.parametrize("config", [
    "{not json",
    json.dumps(["a", "list"]),
    json.dumps({"scaling": {"point": {}}, "result": "oops"}),
    json.dumps({"scaling": "oops", "result": {"tokens": 10}}),
    json.dumps({"scaling": {"point": {}, "flops_per_token": 1}, "result": {"steps": 1}}),
])
def test_a_corrupt_run_config_during_summarize_is_named_in_one_line(tmp_path, capsys, config):
    sweep = tmp_path / "sweep"
    (sweep / "d16-broken").mkdir(parents=True)
    (sweep / "d16-broken" / CONFIG_FILE).write_text(config)
    assert scaling_main(["summarize", str(sweep)]) == 2
    assert str(sweep / "d16-broken" / CONFIG_FILE) in _one_line_error(capsys)


def test_old_sweep_command_line_still_reaches_both_programs(tmp_path, capsys):
    from training.sweep import main as old_main

    assert old_main(["summarize", str(tmp_path / "missing")]) == 2  # the scaling program's own one-line error
    assert "no such sweep folder" in _one_line_error(capsys)
    with pytest.raises(SystemExit):
        old_main(["--help"])  # the grid program's options
    assert "--lrs" in capsys.readouterr().out
