"""The one story world of the tests: a child vocabulary, deterministic little stories, tiny models over them.

``make_stories`` is used by the interp/explain tests (default shape) and by the app's runs root
(``APP_STORY_SHAPE``: three to six plain sentences, Lily first among the names); same words, one builder.
"""

from __future__ import annotations

import random

import torch

NAMES = ["Lucy", "Tom", "Lily", "Ben", "Mia", "Sam"]
NOUNS = ["ball", "dog", "tree", "cake", "box", "cat", "park", "toy"]
VERBS = ["jumped", "ran", "played", "looked", "found", "saw"]
ADJS = ["big", "red", "happy", "little", "shiny", "soft"]

APP_STORY_SHAPE = dict(names=["Lily", "Tom", "Lucy", "Ben", "Mia", "Sam"], min_middle=3, with_objects=False)
"""The app tests' stories (their neuron and head pages were written against these)."""


def make_stories(n: int, seed: int = 0, names: list[str] = NAMES, min_middle: int = 2,
                 with_objects: bool = True) -> list[str]:
    """Deterministic little stories using names, nouns, verbs, adjectives and punctuation.

    Each story: an opening sentence, ``min_middle``..6 middle sentences (with ``with_objects``, each ends
    in "and VERB with PRONOUN NOUN"), and a closing quote.
    """
    rng = random.Random(seed)
    stories = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        sents = [f"One day, {a} saw a {rng.choice(ADJS)} {rng.choice(NOUNS)}."]
        for _ in range(rng.randint(min_middle, 6)):
            if with_objects:
                sents.append(
                    f"{rng.choice([a, b])} {rng.choice(VERBS)} to the {rng.choice(ADJS)} {rng.choice(NOUNS)} "
                    f"and {rng.choice(VERBS)} with {rng.choice(['him', 'her', 'it', 'the', 'a'])} {rng.choice(NOUNS)}."
                )
            else:
                sents.append(f"{rng.choice([a, b])} {rng.choice(VERBS)} to the {rng.choice(ADJS)} {rng.choice(NOUNS)}.")
        sents.append(f'{b} said: "I am {rng.choice(ADJS)}!"')
        stories.append(" ".join(sents))
    return stories


def make_model(tokenizer, seed: int = 0, preset: str = "test-tiny", **overrides):
    """A random-init eval-mode model of ``preset`` over ``tokenizer``'s vocabulary."""
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.models.zoo import preset_config

    torch.manual_seed(seed)
    cfg = preset_config(preset, d_vocab=tokenizer.vocab_size, **overrides)
    return HookedTransformer(cfg, tokenizer=tokenizer).eval()
