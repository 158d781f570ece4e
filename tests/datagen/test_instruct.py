"""TinyStories-Instruct records and the Instruct-OOD split."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datagen.instruct import (
    LINE_KINDS, InstructRunConfig, choose_lines, generate_instruct, instruct_record, make_ood_split, render_instruct,
    split_sentences, write_ood_split,
)
from datagen.runner import StoryRunConfig, generate_stories
from tests.support.openai_server import openai_server
from tinyinterp.errors import TinyinterpError
from tinyinterp.llm import LLMClient, LLMConfig

STORY = {"id": "s1", "story": "Tom had a red ball. He threw it up high! \"Look,\" said Mom. The ball fell in the pond.",
         "words": {"verb": "throw", "noun": "ball", "adjective": "red"}, "features": ["Dialogue", "BadEnding"]}


def test_render_exact():
    rec = dict(STORY, summary="Tom lost his ball in the pond.", random_sentence="He threw it up high!")
    prompt, text = render_instruct(rec, ["Words", "Features", "Summary", "Random sentence"])
    assert prompt == ("Words: throw, ball, red\nFeatures: Dialogue, BadEnding\nSummary: Tom lost his ball in the pond.\n"
                      "Random sentence: He threw it up high!\nStory:")
    assert text == prompt + " " + STORY["story"]


def test_record_fields_and_random_choices():
    rec = instruct_record(STORY, "Tom lost his ball.", seed=0)
    assert rec["random_sentence"] in split_sentences(STORY["story"])
    assert rec["lines"] and set(rec["lines"]) <= set(LINE_KINDS)
    assert rec["text"].endswith("Story: " + STORY["story"]) and rec["text"].startswith(rec["lines"][0] + ": ")
    assert rec == instruct_record(STORY, "Tom lost his ball.", seed=0)  # seeded
    no_features = instruct_record(dict(STORY, features=[]), "x y z", seed=0)
    assert "Features" not in no_features["lines"]


def test_line_subsets_vary_in_content_and_order():
    rng = random.Random(0)
    picks = [tuple(choose_lines(rng, list(LINE_KINDS))) for _ in range(400)]
    assert all(1 <= len(p) <= 4 and len(set(p)) == len(p) for p in picks)
    assert len(set(picks)) > 30  # many different subsets and orders
    assert Counter(p[0] for p in picks).keys() == set(LINE_KINDS)


def test_ood_split_words_and_summary():
    records = [instruct_record(dict(STORY, id=f"s{i}"), "Tom lost his ball.", seed=0) for i in range(300)]
    train, test = make_ood_split(records, seed=1, test_fraction=0.2)
    assert len(train) + len(test) == 300 and 30 < len(test) < 90
    assert all(not {"Words", "Summary"} <= set(r["lines"]) for r in train)
    assert all({"Words", "Summary"} <= set(r["lines"]) for r in test)
    assert all(r["text"].startswith(r["prompt"]) and r["required_words"] == ["throw", "ball", "red"] for r in test)
    assert any("Words" in r["lines"] for r in train) and any("Summary" in r["lines"] for r in train)


def _reply(req: dict) -> str:
    """Stories name their noun; summaries name the noun of the story they summarise."""
    text = req["messages"][-1]["content"]
    if text.startswith("Summarize"):
        noun = re.search(r"there was a (\w+)", text).group(1)
        return f"A child plays with the {noun}."
    noun = re.search(r'the noun "([^"]+)"', text).group(1)
    return f"Once upon a time there was a {noun}. " + "It was a happy day and everyone played together. " * 3


def test_instruct_and_ood_end_to_end(tmp_path):
    stories, instruct = tmp_path / "stories.jsonl", tmp_path / "instruct.jsonl"
    with openai_server(_reply) as server:
        def client():
            return LLMClient(LLMConfig(base_url=server.url, api_key="k", backoff_base_s=0.005))
        generate_stories(StoryRunConfig(out=stories, n=8, progress=False), client())
        server.inject("500", times=2)
        summary = generate_instruct(InstructRunConfig(input=stories, out=instruct, progress=False), client())
        assert summary.written == 8 and summary.failed == 0 and summary.llm["retries"] == 2
        again = generate_instruct(InstructRunConfig(input=stories, out=instruct, progress=False), client())
        assert again.already_done == 8 and again.written == 0
    recs = [json.loads(line) for line in instruct.read_text().splitlines()]
    stories_by_id = {r["id"]: r for r in map(json.loads, stories.read_text().splitlines())}
    assert {r["story_id"] for r in recs} == set(stories_by_id)
    for r in recs:
        source = stories_by_id[r["story_id"]]
        assert r["summary"] == f"A child plays with the {source['words']['noun'].split()[0]}."
        assert (r["words"], r["features"], r["story"]) == (source["words"], source["features"], source["story"])
    counts = write_ood_split(instruct, tmp_path / "ood", seed=0, test_fraction=0.5)
    assert counts["train"] + counts["test"] == 8
    test_recs = [json.loads(line) for line in (tmp_path / "ood" / "test.jsonl").read_text().splitlines()]
    assert len(test_recs) == counts["test"] and all("Words: " in r["text"] for r in test_recs)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 60), fraction=st.floats(0.01, 0.99), seed=st.integers(0, 5), shuffle_seed=st.integers(0, 99))
def test_ood_split_is_exact_and_deterministic(n, fraction, seed, shuffle_seed):
    """Issue 10: --test-fraction 0.3 gave 5 of 10 records and 0.5 gave 7 of 10."""
    import math

    records = [dict(STORY, id=f"r{i}", summary="Tom lost his ball.", random_sentence="He threw it up high!")
               for i in range(n)]
    n_test = math.floor(fraction * n + 0.5)
    if not 0 < n_test < n:
        with pytest.raises(TinyinterpError, match="both splits need at least one"):
            make_ood_split(records, seed=seed, test_fraction=fraction)
        return
    train, test = make_ood_split(records, seed=seed, test_fraction=fraction)
    assert len(test) == n_test and len(train) == n - n_test
    shuffled = records[:]
    random.Random(shuffle_seed).shuffle(shuffled)
    train2, test2 = make_ood_split(shuffled, seed=seed, test_fraction=fraction)
    assert {r["id"] for r in test2} == {r["id"] for r in test}  # the input order does not matter
    assert sorted(test2, key=lambda r: r["id"]) == sorted(test, key=lambda r: r["id"])


@pytest.mark.parametrize("fraction, n_test", [(0.3, 3), (0.5, 5), (0.1, 1), (0.25, 3), (0.9, 9)])
def test_ood_split_counts_of_the_issue(fraction, n_test):
    records = [dict(STORY, id=f"r{i}", summary="Tom lost his ball.", random_sentence="He threw it up high!")
               for i in range(10)]
    assert len(make_ood_split(records, seed=0, test_fraction=fraction)[1]) == n_test
