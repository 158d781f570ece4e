"""Fixtures for the interp tests: a tiny BPE tokenizer, a tiny story corpus and a tiny model over them
(the story world itself is :mod:`tests.support.story_world`)."""

from __future__ import annotations

import pytest

from tests.support.story_world import make_model, make_stories


@pytest.fixture(scope="session")
def story_tokenizer():
    from tinyinterp.data.tokenizer import Tokenizer

    return Tokenizer.train_bpe(make_stories(200, seed=1), vocab_size=400, progress=False)


@pytest.fixture(scope="session")
def story_corpus(story_tokenizer, tmp_path_factory):
    from tinyinterp.data.corpus import tokenize_corpus

    out = tmp_path_factory.mktemp("corpus")
    return tokenize_corpus(make_stories(60), story_tokenizer, out, progress=False)


@pytest.fixture
def story_model(story_tokenizer):
    return make_model(story_tokenizer)
