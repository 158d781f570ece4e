"""Metrics that need no LLM: required words present, cut-sentence completion, length and vocabulary.

* :func:`required_words_share` — for Instruct / Instruct-OOD prompts, the share of the required
  words the story contains, counting simple inflections (``perform`` ↔ ``performed``,
  ``decorate`` ↔ ``decorating``, ``stop`` ↔ ``stopped``, ``berry`` ↔ ``berries``).
* :func:`finishes_cut_sentence` — the paper's prompts stop mid-sentence ("There was a loud");
  a completion counts as finishing that sentence when (1) the prompt really ends mid-sentence
  (no ``.``, ``!``, ``?`` or closing quote at its end; otherwise the metric is ``None``), (2) the
  completion's text up to its first sentence end contains at least one word and that sentence
  end comes within ``max_words`` words, and (3) the completion does not restart with a
  capitalised word (a new sentence) unless that word is ``I`` or a capitalised name that already
  appears in the prompt. It is a heuristic: it catches empty, run-on and restarted completions,
  not ungrammatical ones (that is what the LLM grade is for).
* :func:`text_stats` / :func:`set_stats` — words, sentences, distinct words, type-token ratio,
  and distinct-n over a whole completion set.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

_WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENT_END_RE = re.compile(r"[.!?]+[\"'”’)]*")
_TERMINAL = ('.', '!', '?', '"', '”', "'", '’')


def words_of(text: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(text)]


def inflections(word: str) -> set[str]:
    """Common English inflected forms of ``word`` (regular verbs, plurals, comparatives, adverbs)."""
    w = word.lower()
    forms = {w, w + "s", w + "es", w + "ed", w + "d", w + "ing", w + "er", w + "est", w + "ly", w + "'s"}
    if w.endswith("e"):
        forms |= {w[:-1] + "ing", w[:-1] + "er", w[:-1] + "est"}
    if w.endswith("y") and len(w) > 2:
        forms |= {w[:-1] + "ies", w[:-1] + "ied", w[:-1] + "ier", w[:-1] + "iest", w[:-1] + "ily"}
    if len(w) >= 3 and w[-1] not in "aeiouwxy" and w[-2] in "aeiou" and w[-3] not in "aeiou":
        forms |= {w + w[-1] + "ed", w + w[-1] + "ing", w + w[-1] + "er", w + w[-1] + "est"}  # stop → stopped
    return forms


def required_words_share(story: str, words: list[str]) -> float | None:
    """Share (0..1) of ``words`` present in ``story`` in some inflected form; None without words."""
    if not words:
        return None
    present = set(words_of(story))
    return sum(bool(inflections(w) & present) for w in words) / len(words)


def prompt_is_cut(prompt: str) -> bool:
    """True when the prompt stops mid-sentence (its last non-space character is not terminal)."""
    stripped = prompt.rstrip()
    return bool(stripped) and not stripped.endswith(_TERMINAL)


def finishes_cut_sentence(prompt: str, completion: str, max_words: int = 40) -> bool | None:
    """Heuristic (see module docstring): does ``completion`` finish the sentence ``prompt`` cut?"""
    if not prompt_is_cut(prompt):
        return None
    m = _SENT_END_RE.search(completion)
    if m is None:
        return False
    fragment = completion[: m.start()]
    fragment_words = _WORD_RE.findall(fragment)
    if not fragment_words or len(fragment_words) > max_words:
        return False
    first = fragment.lstrip()
    if first[:1].isupper():
        first_word = _WORD_RE.match(first)
        name = first_word.group(0).split("'")[0] if first_word else ""  # "Lily's" → "Lily"
        if name != "I" and name not in set(_WORD_RE.findall(prompt)):
            return False
    return True


@dataclass
class TextStats:
    n_words: int
    n_sentences: int
    n_distinct_words: int
    type_token_ratio: float
    mean_sentence_words: float

    def to_dict(self) -> dict:
        return asdict(self)


def text_stats(text: str) -> TextStats:
    words = words_of(text)
    sentences = [s for s in _SENT_END_RE.split(text) if _WORD_RE.search(s)]
    n = len(words)
    return TextStats(n, len(sentences), len(set(words)), len(set(words)) / n if n else 0.0,
                     n / len(sentences) if sentences else 0.0)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over a set of texts (a standard diversity measure)."""
    grams: Counter = Counter()
    for t in texts:
        w = words_of(t)
        grams.update(tuple(w[i: i + n]) for i in range(len(w) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def set_stats(records: list[dict]) -> dict:
    """No-LLM metrics over completion records (from :mod:`completions`); also returns per-record rows."""
    rows = []
    for r in records:
        meta = r.get("prompt_meta", {})
        stats = text_stats(r["completion"])
        rows.append({
            "prompt_id": r["prompt_id"], "sample": r.get("sample"), **stats.to_dict(),
            "finishes_cut_sentence": finishes_cut_sentence(r["prompt"], r["completion"]) if r.get("kind", "completion") == "completion" else None,
            "required_words_share": required_words_share(r["completion"], meta.get("words", [])),
        })

    def mean(key: str) -> float | None:
        vals = [row[key] for row in rows if row[key] is not None]
        return sum(float(v) for v in vals) / len(vals) if vals else None

    texts = [r["completion"] for r in records]
    all_words = [w for t in texts for w in words_of(t)]
    return {
        "n_completions": len(rows),
        "mean_words": mean("n_words"), "mean_sentences": mean("n_sentences"),
        "mean_type_token_ratio": mean("type_token_ratio"),
        "vocabulary_size": len(set(all_words)),
        "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
        "finishes_cut_sentence_rate": mean("finishes_cut_sentence"),
        "required_words_share": mean("required_words_share"),
        "rows": rows,
    }
