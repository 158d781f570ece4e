"""analyses/scaling.py: frontier, power-law fit, compute-optimal size and plots on sweeps with a known law."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyses.scaling import main
from tinyinterp.scaling.analysis import (OUT_SUBDIR, RESULT_FILE, RunCurve, ScalingResult, analyze, compute_optimal,
                                         fit_power_law, frontier)
from tests.analyses.synthetic_sweep import ALPHA, BETA, TRAIN_TOKENS, make_sweep


def _curve(name, flops, losses, n=1000, budget=1e9, tokens=None):
    tokens = tokens or [int(f / (6 * n)) for f in flops]
    return RunCurve(name, 16, 2, 4, 1e-3, 0, "flops", budget, n, n, TRAIN_TOKENS, tokens, list(flops), list(losses))


@pytest.mark.parametrize("a, b, c", [(2.0, 0.3, 1.5), (0.5, 0.8, 3.0), (4.0, 0.1, 0.0)])
def test_power_law_fit_recovers_known_parameters(a, b, c):
    flops = np.geomspace(1e9, 1e14, 25)
    law = fit_power_law(flops, a * (flops / 1e12) ** (-b) + c)
    assert law.b == pytest.approx(b, abs=2e-3) and law.c == pytest.approx(c, abs=0.02) and law.a == pytest.approx(a, rel=0.02)


def test_power_law_fit_needs_three_points():
    from tinyinterp.errors import TinyinterpError

    with pytest.raises(TinyinterpError, match="at least 3"):
        fit_power_law([1e9, 1e10], [3.0, 2.0])


@given(st.lists(st.lists(st.tuples(st.floats(1e8, 1e12), st.floats(1.0, 10.0)), min_size=1, max_size=8), min_size=1, max_size=5))
@settings(max_examples=60, deadline=None)
def test_frontier_is_the_lower_envelope(runs):
    curves = []
    for i, points in enumerate(runs):
        points = sorted(points)
        curves.append(_curve(f"r{i}", [f for f, _ in points], [l for _, l in points], tokens=[1] * len(points)))
    front = frontier(curves, skip_fraction=0.0)
    assert all(p["flops"] <= q["flops"] and p["loss"] > q["loss"] for p, q in zip(front, front[1:]))
    for c in curves:
        for f, l in zip(c.flops, c.val_loss):  # no point beats the frontier at its compute
            assert l >= min(p["loss"] for p in front if p["flops"] <= f)


def test_frontier_skips_each_runs_initial_transient():
    early_low = _curve("a", [1e9, 2e9, 1e10], [1.0, 5.0, 4.0], tokens=[10, 50, 100])
    assert [p["loss"] for p in frontier([early_low])] == [5.0, 4.0]  # the 10%-of-tokens point is left out


def test_compute_optimal_finds_the_parabola_vertex():
    sizes = np.geomspace(1e4, 1e6, 7)
    curves = [_curve(f"n{i}", [1e12], [2.0 + 0.1 * (math.log(n) - math.log(1e5)) ** 2], n=int(n), budget=1e12)
              for i, n in enumerate(sizes)]
    (opt,) = compute_optimal(curves)
    assert opt["method"] == "parabola" and opt["n_opt"] == pytest.approx(1e5, rel=0.01) and not opt["at_edge"]
    edge = [c for c in curves if c.n_matmul < 5e4]  # losses fall with N to the edge: no vertex inside, best run
    (opt,) = compute_optimal(edge)
    assert opt["method"] == "best run" and opt["n_opt"] == max(c.n_matmul for c in edge) and opt["at_edge"]


def test_analysis_recovers_the_compute_optimal_exponent(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", noise=0.002, seed=1)
    result, curves = analyze(sweep, n_bootstrap=40)
    e = result.n_opt_exponent
    assert e["alpha"] == pytest.approx(BETA / (ALPHA + BETA), abs=0.05)
    assert e["alpha_lo"] <= e["alpha"] <= e["alpha_hi"]
    assert result.fit["b"] > 0 and result.fit["b_lo"] <= result.fit["b_hi"]
    repeated = {c.name for c in curves if c.tokens[-1] > TRAIN_TOKENS}
    assert set(result.repeated_runs) == repeated and repeated and len(repeated) < len(curves)


def test_cli_writes_the_result_and_the_plots(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep", widths=(16, 64, 256), budgets=(1e11, 1e12))
    assert main([str(sweep), "--bootstrap", "10"]) == 0
    out = sweep / OUT_SUBDIR
    saved = ScalingResult.load(out)
    assert json.loads((out / RESULT_FILE).read_text())["fit"]["b"] == saved.fit["b"]
    assert len(saved.compute_optimal) == 2 and "N_opt ∝ C^" in capsys.readouterr().out
    for name in ("loss_vs_flops.png", "loss_by_depth.png", "loss_by_heads.png", "isoflop.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_a_folder_without_a_sweep(tmp_path, capsys):
    (tmp_path / "sweep_summary.json").write_text(json.dumps({"runs": [], "best": None}))
    assert main([str(tmp_path)]) == 2
    assert "not a scaling sweep" in capsys.readouterr().err
