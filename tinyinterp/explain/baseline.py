"""Offline baseline: explain a neuron by its top tokens and their category, simulate by matching them.

The explanation is built from the tokens where the neuron's explain records reach at least half of
its maximum (``normalize`` >= 5): the most frequent distinct ones (up to ``max_tokens``), and, when
most of them share a token category (:mod:`tinyinterp.interp.categories`), that category, e.g.
``fires on names: "Lily", "Tom", "Ben"``. The simulator reads only that text: a token listed in it
predicts 10, another token of the named category 5, anything else 0. It is deterministic and needs no
LLM, so every user gets a score offline, and it is the floor an LLM explanation has to beat.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache

from tinyinterp.explain.explainer import Explanation
from tinyinterp.explain.records import NeuronRecords, normalize
from tinyinterp.explain.simulator import Simulation

CATEGORY_WORDS = {
    "noun": "nouns", "verb": "verbs", "adjective": "adjectives", "pronoun": "pronouns", "determiner": "determiners",
    "preposition": "prepositions", "conjunction": "conjunctions", "punctuation": "punctuation", "name": "names",
    "number": "numbers",
}
WORD_CATEGORY = {v: k for k, v in CATEGORY_WORDS.items()}
_HEAD = re.compile(r"^fires on ([a-z]+):")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


@lru_cache(maxsize=1)
def _lexicon():
    from tinyinterp.data.lexicon import load_lexicon

    return load_lexicon()


def token_category(token: str) -> str:
    """Category of a token string out of context (mid-sentence reading)."""
    from tinyinterp.interp.categories import CATEGORIES, _categorize

    return CATEGORIES[_categorize(token, _lexicon())[0]]


def baseline_explanation(records: NeuronRecords, max_tokens: int = 5, min_share: float = 0.6) -> str:
    counts: Counter[str] = Counter()
    for rec in records.explain:
        for token, value in zip(rec.tokens, normalize(rec.activations, records.max_activation)):
            if value >= 5 and token.strip():
                counts[token.strip()] += 1
    tokens = [t for t, _ in counts.most_common(max_tokens)]
    if not tokens:
        return "fires on tokens: (none)"
    cats = Counter(token_category(t) for t in tokens)
    cat, n = cats.most_common(1)[0]
    label = CATEGORY_WORDS.get(cat, "tokens") if n / len(tokens) >= min_share else "tokens"
    return f"fires on {label}: " + ", ".join(json.dumps(t, ensure_ascii=False) for t in tokens)


def parse_baseline_explanation(text: str) -> tuple[str | None, set[str]]:
    """(category or None, listed tokens) of a baseline explanation."""
    head = _HEAD.match(text)
    category = WORD_CATEGORY.get(head.group(1)) if head else None
    return category, {json.loads(q) for q in _QUOTED.findall(text)}


def baseline_simulate(explanation: str, tokens: list[str]) -> list[float]:
    category, listed = parse_baseline_explanation(explanation)
    out = []
    for token in tokens:
        word = token.strip()
        if word and word in listed:
            out.append(10.0)
        elif word and category is not None and token_category(token) == category:
            out.append(5.0)
        else:
            out.append(0.0)
    return out


class BaselineExplainer:
    name = "baseline"

    async def explain(self, records: NeuronRecords) -> Explanation:
        return Explanation(baseline_explanation(records), requests=0)


class BaselineSimulator:
    async def simulate(self, explanation: str, tokens: list[str]) -> Simulation:
        return Simulation(baseline_simulate(explanation, tokens), "baseline")
