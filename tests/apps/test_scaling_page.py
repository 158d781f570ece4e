"""The Scaling page on a synthetic sweep with a known law: grid, fit numbers, plots, each run's curve."""

from __future__ import annotations

import pytest

from tests.support.app_pages import page_text
from tests.support.synthetic_sweep import make_sweep


@pytest.fixture
def runs_root(tmp_path):
    """Overrides the session root of tests/apps: one synthetic sweep, nothing trained (fast)."""
    root = tmp_path / "runs"
    make_sweep(root / "scaling-tiny", widths=(16, 64, 256), budgets=(1e11, 1e12))
    return root


def test_scaling_page_shows_grid_fit_and_curves(make_app, runs_root):
    from analyses.scaling import main as analyze_main

    at = make_app("scaling")
    text = page_text(at)
    assert "Intervals come from `python -m analyses.scaling" in text  # quick fit: no saved analysis yet
    grid = at.dataframe[0].value
    assert len(grid) == 6 and grid["repeats data"].any() and not grid["repeats data"].all()
    assert set(grid["Runs page"]) == {f"/?run=scaling-tiny/{name}" for name in grid["run"]}
    assert len(at.get("image")) == 4, "frontier + fit, depth, heads and IsoFLOP figures are drawn"
    assert at.get("vega_lite_chart"), "the selected run's curve"
    at.selectbox(key="scaling_run").select(grid["run"].iloc[-1]).run()
    assert grid["run"].iloc[-1] in page_text(at)

    assert analyze_main([str(runs_root / "scaling-tiny"), "--bootstrap", "10"]) == 0
    at = make_app("scaling")
    assert "95% bootstrap [" in page_text(at)  # the saved analysis (with intervals) is shown


def test_scaling_page_without_a_sweep_says_how_to_make_one(make_app, runs_root):
    import shutil

    shutil.rmtree(runs_root / "scaling-tiny")
    at = make_app("scaling")
    assert "No scaling sweep under the runs root" in page_text(at)
