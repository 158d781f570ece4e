"""Fixtures for the interp tests: a tiny BPE tokenizer, a tiny story corpus and tiny models over them."""

from __future__ import annotations

import random

import pytest
import torch

NAMES = ["Lucy", "Tom", "Lily", "Ben", "Mia", "Sam"]
NOUNS = ["ball", "dog", "tree", "cake", "box", "cat", "park", "toy"]
VERBS = ["jumped", "ran", "played", "looked", "found", "saw"]
ADJS = ["big", "red", "happy", "little", "shiny", "soft"]


def make_stories(n: int, seed: int = 0) -> list[str]:
    """Deterministic little stories that use names, nouns, verbs, adjectives and punctuation."""
    rng = random.Random(seed)
    stories = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        sents = [f"One day, {a} saw a {rng.choice(ADJS)} {rng.choice(NOUNS)}."]
        for _ in range(rng.randint(2, 6)):
            sents.append(
                f"{rng.choice([a, b])} {rng.choice(VERBS)} to the {rng.choice(ADJS)} {rng.choice(NOUNS)} "
                f"and {rng.choice(VERBS)} with {rng.choice(['him', 'her', 'it', 'the', 'a'])} {rng.choice(NOUNS)}."
            )
        sents.append(f'{b} said: "I am {rng.choice(ADJS)}!"')
        stories.append(" ".join(sents))
    return stories


@pytest.fixture(scope="session")
def story_tokenizer():
    from tinyinterp.tokenizer import Tokenizer

    return Tokenizer.train_bpe(make_stories(200, seed=1), vocab_size=400, progress=False)


@pytest.fixture(scope="session")
def story_corpus(story_tokenizer, tmp_path_factory):
    from tinyinterp.corpus import tokenize_corpus

    out = tmp_path_factory.mktemp("corpus")
    return tokenize_corpus(make_stories(60), story_tokenizer, out, progress=False)


def make_model(tokenizer, seed: int = 0, preset: str = "test-tiny", **overrides):
    from tinyinterp.model import HookedTransformer
    from tinyinterp.zoo import preset_config

    torch.manual_seed(seed)
    cfg = preset_config(preset, d_vocab=tokenizer.vocab_size, **overrides)
    return HookedTransformer(cfg, tokenizer=tokenizer).eval()


@pytest.fixture
def story_model(story_tokenizer):
    return make_model(story_tokenizer)
