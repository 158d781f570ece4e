"""The named factors of the head decomposition on constructed heads over real TinyStories windows.

Every head of :data:`factor_heads.HEADS` (pure distance, key category, token identity, the query's
category, recency within a category, sentence/paragraph structure, heads that need both families,
heads with nothing to explain) goes through :func:`head_metrics_from_patterns` sharp and softened
(mixed with a uniform or a first-token sink component). The class follows from the family of factors
that explains the head; the winning factor is asserted where only one factor can fit.
``test_factor_heads_sharp`` prints the class / factor / margin table (``pytest -s``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.factor_heads import HEADS, patterns, soften, tinystories_windows
from tinyinterp.interp.categories import CAT, TokenCategorizer
from tinyinterp.interp.head_relations import BOUNDARY, PARAGRAPH, SELF_RANK, SENTENCE, boundary_flags, pair_relations
from tinyinterp.interp.heads import HeadResult, HeadThresholds, head_metrics_from_patterns

SOFT_UNIFORM = 0.3
"""Largest uniform share mixed in: 30 % of every row spread evenly over the visible keys."""
SOFT_SINK = 0.5
"""Largest sink share mixed in: half of every row parked on the first token."""
WEAK = {"uniform over previous 20": "structure 0.14 on 64-token windows (log 20 of log q): softening crosses min_structure",
        "nearest noun in last 8": "mostly 'the most recent noun': distance adds 0.14 sharp, 0.07 at 30 % uniform",
        "previous 20 + most recent punctuation": "its distance half is the weak head above: adds 0.14 sharp, 0.09 softened"}
"""Heads left out of the softened checks, and why (measured on these windows): a mixture whose minority
family carries less than ``sufficiency`` (0.1) of the structure reads as the majority family."""


@pytest.fixture(scope="module")
def windows(shared_data):
    tokens, labels, texts, tokenizer = tinystories_windows(shared_data, n=32, T=64)
    return tokens, labels, texts, TokenCategorizer(tokenizer)


@pytest.fixture(scope="module")
def sharp(windows):
    tokens, labels, texts, categorizer = windows
    p = patterns(tokens, labels, texts, [HEADS[n][0] for n in HEADS])
    assert torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype)) and (p.triu(1) == 0).all()
    return p


def _table(result: HeadResult, names: list[str]) -> pd.DataFrame:
    frame = result.to_frame()
    frame.insert(0, "head_name", names)
    frame.insert(1, "expected", [HEADS[n][1] for n in names])
    return frame[["head_name", "expected", "head_class", "factor", "margin", "factor_margin", "structure",
                  "distance_explained", "semantic_explained", "joint_explained"]]


def _check(result: HeadResult, names: list[str]) -> pd.DataFrame:
    table = _table(result, names)
    wrong = table[table.head_class != table.expected]
    assert wrong.empty, wrong.round(3).to_string()
    assert (table.margin > 0).all(), table[table.margin <= 0].round(3).to_string()
    for name, row in zip(names, table.itertuples()):
        factor = HEADS[name][2]
        if factor is not None:
            assert row.factor == factor, (name, row.factor)
    return table


def test_factor_heads_sharp(windows, sharp):
    tokens, labels, _, categorizer = windows
    names = list(HEADS)
    result = head_metrics_from_patterns(sharp, tokens, labels, categorizer=categorizer)
    table = _check(result, names)
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.max_rows", 100):
        print("\n" + table.round(3).to_string(index=False))
        print(table.groupby("expected").margin.agg(["min", "median", "max"]).round(3).to_string())
    mixed = table[table.expected == "mixed"]
    assert (mixed.factor.str.startswith("distance+") | (mixed.factor == "none")).all()
    assert set(table.factor[table.expected == "local"]) == {"distance"}


@pytest.mark.parametrize("kind, alpha", [("uniform", SOFT_UNIFORM), ("sink", SOFT_SINK)])
def test_factor_heads_softened_to_the_limit(windows, sharp, kind, alpha):
    """The largest softening of the stated range keeps every head's class (and factor, where asserted)."""
    tokens, labels, _, categorizer = windows
    keep = [i for i, n in enumerate(HEADS) if n not in WEAK]
    names = [list(HEADS)[i] for i in keep]
    result = head_metrics_from_patterns(soften(sharp[:16, keep], alpha, kind), tokens[:16], labels[:16],
                                        categorizer=categorizer)
    _check(result, names)


PROPERTY = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SAMPLE = ["exactly 3 back", "gaussian bump at 10", "all nouns", "induction", "same category as the query",
          "most recent earlier punctuation", "previous token with the query's POS", "sentence start",
          "paragraph start", "previous token if noun, else itself", "3 back + sentence start"]


@PROPERTY
@given(kind=st.sampled_from(["uniform", "sink"]), strength=st.floats(0.0, 1.0))
def test_softening_within_the_range_keeps_the_class(windows, sharp, kind, strength):
    """Any softening strength within the stated range keeps the class: one head of every factor, two mixtures."""
    tokens, labels, _, categorizer = windows
    idx = [list(HEADS).index(n) for n in SAMPLE]
    alpha = strength * (SOFT_UNIFORM if kind == "uniform" else SOFT_SINK)
    result = head_metrics_from_patterns(soften(sharp[:8, idx], alpha, kind), tokens[:8], labels[:8],
                                        categorizer=categorizer)
    _check(result, SAMPLE)


def test_heads_saved_before_the_factors_still_load(windows, sharp, tmp_path):
    """heads.json without the factor fields (and without ``sufficiency``) loads: factor '' and same classes."""
    tokens, labels, _, categorizer = windows
    result = head_metrics_from_patterns(sharp[:4, :6], tokens[:4], labels[:4], categorizer=categorizer)
    path = result.save(tmp_path)
    old = json.loads(path.read_text())
    assert old["head_factor"] == result.head_factor.tolist()
    del old["head_factor"]
    kept = {"distance_explained", "content_explained", "joint_explained"}
    new = [m for m in old["metrics"] if m.endswith("_explained") and m not in kept] + ["factor_margin"]
    assert {"semantic_explained", "recency_explained", "structure_explained", "factor_explained"} <= set(new)
    for m in new:
        del old["metrics"][m]
    del old["thresholds"]["sufficiency"]
    path.write_text(json.dumps(old))
    again = HeadResult.load(tmp_path)
    frame = again.to_frame()
    assert (frame.factor == "").all() and frame.semantic_explained.isna().all()
    assert (again.head_class == result.head_class).all() and again.thresholds == HeadThresholds()


def test_mixed_heads_say_why():
    """needs both families / both explain it equally / nothing explains it / no structure: four labels."""
    from tinyinterp.interp.heads import FACTORS, classify, winning_factor

    cases = {  # structure, distance, semantic (= recency alone), joint
        "distance+recency": (0.5, 0.55, 0.55, 1.0), "distance/recency": (0.5, 0.9, 0.95, 0.95),
        "unexplained": (0.5, 0.05, 0.3, 0.32), "none": (0.0, np.nan, np.nan, np.nan)}
    metrics = {f"{f}_explained": np.zeros((1, len(cases))) for f in FACTORS}
    for i, (structure, dist, sem, joint) in enumerate(cases.values()):
        for name, value in (("structure", structure), ("distance_explained", dist), ("recency_explained", sem),
                            ("semantic_explained", sem), ("joint_explained", joint)):
            metrics.setdefault(name, np.zeros((1, len(cases))))[0, i] = value
    classes, _ = classify(metrics, HeadThresholds())
    factor, explained, lead = winning_factor(metrics, classes, HeadThresholds())
    assert (classes == "mixed").all() and list(factor[0]) == list(cases)
    assert explained[0, 0] == 1.0 and lead[0, 0] == pytest.approx(0.45) and np.isnan(lead[0, 3])


def test_pair_relations_known_answers():
    """Recency, query category and sentence structure on a hand-made window."""
    # 0 One 1 day 2 , 3 Lily 4 ran 5 . 6 \n 7 She 8 ran 9 .
    cat = [CAT["number"], CAT["noun"], CAT["punctuation"], CAT["name"], CAT["verb"], CAT["punctuation"],
           CAT["punctuation"], CAT["pronoun"], CAT["verb"], CAT["punctuation"]]
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 5, 6]])
    labels = torch.tensor([cat])
    ends = torch.tensor([[0, 0, 0, 0, 0, 1, 0, 0, 0, 1]]).bool()
    newline = space = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 0, 0, 0]]).bool()
    r = {k: v[0] for k, v in pair_relations(tokens, labels, torch.stack([ends, newline, space], -1)).items()}
    q = 8  # the second "ran"
    assert r["rank"][q, 4] == 0 and r["qcat"][q, 4] == 1 and r["dup"][q, 4] == 1  # the most recent verb, a copy
    assert r["rank"][q, 6] == 0 and r["rank"][q, 5] == 1 and r["rank"][q, 2] == 2  # punctuation: 6, then 5, then 2
    assert r["rank"][q, q] == SELF_RANK and r["qcat"][q, q] == 0
    assert r["struct"][q, 5] == BOUNDARY  # the last sentence end: the ".", not the newline after it
    assert r["struct"][q, 6] == SENTENCE  # the token right after the end opens the sentence ...
    assert r["struct"][q, 7] == SENTENCE | PARAGRAPH  # ... and so does the first word after the whitespace
    assert r["struct"][4, 0] == SENTENCE | PARAGRAPH and r["struct"][4, 5] == 0
    assert int(r["struct"][q].bool().sum()) == 3


def test_without_a_tokenizer_punctuation_ends_sentences():
    labels = np.array([CAT["noun"], CAT["punctuation"], CAT["verb"]])
    flags = boundary_flags(np.arange(3), labels)
    assert flags[:, 0].tolist() == [False, True, False] and not flags[:, 1:].any()
