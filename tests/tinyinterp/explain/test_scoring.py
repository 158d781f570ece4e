"""Correlation scoring, logprob expected values, and flagged simulations (never read as zeros)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyinterp.explain.records import ActivationRecord
from tinyinterp.explain.scoring import correlation, score_simulations
from tinyinterp.explain.simulator import Simulation, activations_from_logprobs, expected_value
from tinyinterp.llm import InvalidReply


def test_correlation_conventions():
    assert correlation([0, 1, 2], [0, 2, 4]) == pytest.approx(1.0)
    assert correlation([0, 1, 2], [4, 2, 0]) == pytest.approx(-1.0)
    assert correlation([1, 1, 1], [0, 1, 2]) is None  # nothing to explain
    assert correlation([0, 1, 2], [3, 3, 3]) == 0.0  # predicts nothing


@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=40), st.floats(0.1, 5), st.floats(-3, 3))
def test_correlation_is_invariant_to_affine_predictions(true, scale, shift):
    pred = [scale * t + shift for t in true]
    r = correlation(true, pred)
    if np.ptp(true) > 1e-6:
        assert r == pytest.approx(1.0, abs=1e-6)


def _rec(acts, kind="top"):
    return ActivationRecord([f"t{i}" for i in range(len(acts))], list(acts), kind)


def test_flagged_records_are_left_out_not_scored_as_zero():
    recs = [_rec([0, 5, 0, 1]), _rec([3, 0, 0, 0], "random"), _rec([0, 0, 4, 0], "random")]
    good = [Simulation([0, 9, 0, 2], "json"), Simulation([8, 0, 1, 0], "json")]
    flagged = Simulation(None, "json", flagged=True, reason="bad")
    scores = score_simulations(recs, good + [flagged])
    expected = correlation([0, 5, 0, 1, 3, 0, 0, 0], [0, 9, 0, 2, 8, 0, 1, 0])
    assert scores.score == pytest.approx(expected)
    assert scores.n_flagged == 1 and scores.per_record[2] is None and scores.n_tokens == 8
    as_zeros = score_simulations(recs, good + [Simulation([0, 0, 0, 0], "json")])
    assert as_zeros.score != pytest.approx(scores.score)  # zeros would have changed the score
    assert scores.score_top == pytest.approx(correlation([0, 5, 0, 1], [0, 9, 0, 2]))


def test_all_flagged_gives_no_score():
    scores = score_simulations([_rec([0, 1])], [Simulation(None, "logprobs", flagged=True)])
    assert scores.score is None and scores.n_flagged == 1


def test_expected_value_renormalises_over_digits():
    ev = expected_value([("10", math.log(0.6)), ("0", math.log(0.2)), (" foo", math.log(0.2))])
    assert ev == pytest.approx((0.6 * 10) / 0.8)
    assert expected_value([("x", 0.0)]) is None


def _lp(pieces):
    return [{"token": p, "logprob": 0.0, "top_logprobs": [{"token": p, "logprob": 0.0}]} for p in pieces]


def test_activations_from_logprobs_reads_the_token_after_each_tab():
    pieces = ["<start>", "\n", " Lily", "\t", "10", "\n", " ran", "\t", "0", "\n", "<end>"]
    assert activations_from_logprobs(_lp(pieces), 2) == [10.0, 0.0]
    with pytest.raises(InvalidReply):
        activations_from_logprobs(_lp(pieces), 3)
    with pytest.raises(InvalidReply):
        activations_from_logprobs(_lp([" Lily", "\t", "high"]), 1)
