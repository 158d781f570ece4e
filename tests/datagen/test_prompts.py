"""The paper's prompt template, against exact strings; seeded sampling from the lexicon."""

from __future__ import annotations

import pytest

from datagen.prompts import FEATURES, Words, build_story_prompt, make_prompt_spec, make_prompt_specs, record_id
from tinyinterp.data.lexicon import load_lexicon

PAPER_EXAMPLE = (
    'Write a short story (3-5 paragraphs) which only uses very simple words that a 3 year old child would likely '
    'understand. The story should use the verb "decorate", the noun "thunder" and the adjective "ancient". The story '
    'should have the following features: the story should contain at least one dialogue, the story has a bad ending. '
    'Remember to only use simple words!'
)


def test_paper_example_exact():
    assert build_story_prompt(Words("decorate", "thunder", "ancient"), ["Dialogue", "BadEnding"]) == PAPER_EXAMPLE
    # feature order in the prompt is canonical, whatever order they are passed in
    assert build_story_prompt(Words("decorate", "thunder", "ancient"), ["BadEnding", "Dialogue"]) == PAPER_EXAMPLE


def test_no_features_and_all_features_exact():
    assert build_story_prompt(Words("hop", "frog", "green"), []) == (
        'Write a short story (3-5 paragraphs) which only uses very simple words that a 3 year old child would likely '
        'understand. The story should use the verb "hop", the noun "frog" and the adjective "green". '
        'Remember to only use simple words!')
    assert build_story_prompt(Words("hop", "frog", "green"), ["Twist", "Foreshadowing", "Conflict", "MoralValue"]) == (
        'Write a short story (3-5 paragraphs) which only uses very simple words that a 3 year old child would likely '
        'understand. The story should use the verb "hop", the noun "frog" and the adjective "green". The story should '
        'have the following features: the story has a moral value, something unexpected happens / there is a plot '
        'twist, the narrative uses foreshadowing or setup and payoff, the story has some form of conflict in it. '
        'Remember to only use simple words!')


def test_unknown_feature_rejected():
    with pytest.raises(ValueError, match="Sarcasm"):
        build_story_prompt(Words("a", "b", "c"), ["Sarcasm"])


def test_seeded_specs_are_stable_and_independent_of_n():
    a = make_prompt_specs(20, run_seed=3)
    b = make_prompt_specs(50, run_seed=3)
    assert [s.prompt for s in a] == [s.prompt for s in b[:20]]
    assert [s.id for s in a] == [s.id for s in b[:20]]
    assert [s.prompt for s in make_prompt_specs(20, run_seed=4)] != [s.prompt for s in a]
    assert len({s.id for s in b}) == 50


def test_specs_use_lexicon_words_with_the_right_pos_and_record_them():
    lex = load_lexicon()
    seen_features = set()
    for spec in make_prompt_specs(200, run_seed=0):
        w = spec.words
        assert (lex.pos_of(w.verb), lex.pos_of(w.noun), lex.pos_of(w.adjective)) == ("verb", "noun", "adjective")
        assert spec.prompt == build_story_prompt(w, spec.features)
        assert spec.id == record_id(spec.prompt, spec.seed)
        assert len(spec.features) <= 3 and set(spec.features) <= set(FEATURES)
        seen_features.update(spec.features)
    assert seen_features == set(FEATURES)


def test_spec_matches_between_calls():
    assert make_prompt_spec(7, 12) == make_prompt_spec(7, 12)
