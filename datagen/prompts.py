"""The TinyStories generation prompt: one random verb, noun and adjective plus a random feature subset.

The template is the paper's, word for word (Eldan & Li 2023, §2)::

    Write a short story (3-5 paragraphs) which only uses very simple words that a 3 year old child
    would likely understand. The story should use the verb "decorate", the noun "thunder" and the
    adjective "ancient". The story should have the following features: the story should contain at
    least one dialogue, the story has a bad ending. Remember to only use simple words!

Every choice comes from ``random.Random`` seeded by (run seed, record index), so record i of a run is
the same whatever N is, and its id — a hash of prompt and record seed — is stable across reruns.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from tinyinterp.data.lexicon import Lexicon, load_lexicon

# Feature name → the phrase the prompt uses. Order is canonical (prompt and record use it).
FEATURES: dict[str, str] = {
    "Dialogue": "the story should contain at least one dialogue",
    "BadEnding": "the story has a bad ending",
    "MoralValue": "the story has a moral value",
    "Twist": "something unexpected happens / there is a plot twist",
    "Foreshadowing": "the narrative uses foreshadowing or setup and payoff",
    "Conflict": "the story has some form of conflict in it",
}

TEMPLATE_HEAD = ("Write a short story (3-5 paragraphs) which only uses very simple words that a 3 year old child "
                 "would likely understand. ")
TEMPLATE_WORDS = 'The story should use the verb "{verb}", the noun "{noun}" and the adjective "{adjective}". '
TEMPLATE_FEATURES = "The story should have the following features: {features}. "
TEMPLATE_TAIL = "Remember to only use simple words!"


@dataclass(frozen=True)
class Words:
    verb: str
    noun: str
    adjective: str

    def as_list(self) -> list[str]:
        """In the order the Instruct ``Words:`` line uses (verb, noun, adjective)."""
        return [self.verb, self.noun, self.adjective]


@dataclass
class PromptSpec:
    """Everything needed to request (and later recognise) one story."""

    index: int
    seed: int
    """Per-record seed (derived from the run seed and the index); also sent as the API ``seed``."""
    words: Words
    features: list[str]
    prompt: str = field(default="")
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.prompt:
            self.prompt = build_story_prompt(self.words, self.features)
        if not self.id:
            self.id = record_id(self.prompt, self.seed)


def build_story_prompt(words: Words, features: list[str]) -> str:
    """The paper's prompt for these words and features (features in canonical order)."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown features {unknown}; choose from {list(FEATURES)}")
    text = TEMPLATE_HEAD + TEMPLATE_WORDS.format(verb=words.verb, noun=words.noun, adjective=words.adjective)
    ordered = [f for f in FEATURES if f in features]
    if ordered:
        text += TEMPLATE_FEATURES.format(features=", ".join(FEATURES[f] for f in ordered))
    return text + TEMPLATE_TAIL


def record_id(prompt: str, seed: int) -> str:
    """Stable id: the first 16 hex digits of sha256(prompt, seed)."""
    return hashlib.sha256(f"{seed}\n{prompt}".encode("utf-8")).hexdigest()[:16]


def record_seed(run_seed: int, index: int) -> int:
    """A per-record seed that does not depend on how many records the run asks for."""
    digest = hashlib.sha256(f"tinyinterp-datagen:{run_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def sample_words(rng: random.Random, lexicon: Lexicon) -> Words:
    return Words(verb=rng.choice(lexicon.words("verb")), noun=rng.choice(lexicon.words("noun")),
                 adjective=rng.choice(lexicon.words("adjective")))


def sample_features(rng: random.Random, max_features: int = 3) -> list[str]:
    """A random subset of 0..max_features features, in canonical order."""
    k = rng.randint(0, min(max_features, len(FEATURES)))
    chosen = set(rng.sample(list(FEATURES), k))
    return [f for f in FEATURES if f in chosen]


def make_prompt_spec(run_seed: int, index: int, lexicon: Lexicon | None = None, max_features: int = 3) -> PromptSpec:
    lexicon = lexicon or load_lexicon()
    seed = record_seed(run_seed, index)
    rng = random.Random(seed)
    words = sample_words(rng, lexicon)
    features = sample_features(rng, max_features)
    return PromptSpec(index=index, seed=seed, words=words, features=features)


def make_prompt_specs(n: int, run_seed: int = 0, lexicon: Lexicon | None = None, max_features: int = 3,
                      start: int = 0) -> list[PromptSpec]:
    """Specs for records ``start .. start+n-1`` of the run with ``run_seed``."""
    lexicon = lexicon or load_lexicon()
    return [make_prompt_spec(run_seed, i, lexicon, max_features) for i in range(start, start + n)]
