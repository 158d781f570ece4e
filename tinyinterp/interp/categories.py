"""Token categories and neuron role purity: the paper's "this neuron fires on names / verbs" as a number.

Every token *occurrence* gets one of :data:`CATEGORIES`, decided from its text and the token before it:

1. ``punctuation``: no letter or digit in it (whitespace-only tokens count here too);
2. ``number``: digits, or a number word (one … twelve, twenty, hundred …);
3. ``pronoun`` / ``determiner`` / ``preposition`` / ``conjunction``: small closed-class word lists below
   (case-insensitive; these classes are closed, so a list is the whole definition);
4. ``name``: a known character name (:data:`KNOWN_NAMES`, case-sensitive) anywhere, or any other
   capitalised word *mid-sentence* (the token before does not end a sentence or open a quote);
5. ``noun`` / ``verb`` / ``adjective``: the project lexicon (:func:`tinyinterp.data.lexicon.load_lexicon`,
   with its inflection rules), looked up lower-cased;
6. ``other``: everything else, including word pieces (a token that starts with a letter right after a
   token ending in a letter or digit: the rest of a split word has no category of its own).

A neuron's **category** is decided over its *distinct* top-k tokens (each token counted once, its
first occurrence's label): the category most of them fall in; ties go to the category with more top-k
occurrences, then to the earlier one in :data:`CATEGORIES`. Both purities describe that same
category, so the reported category and its numbers can never be about different tokens:

- ``type_purity``: share of the distinct top-k tokens in the category;
- ``purity``: share of the top-k *occurrences* in the category.

(Counting distinct tokens first matters: a neuron whose top-k is one token repeated is trivially
"pure" by occurrences, and random-init models are full of them. A neuron with ``' Lily'`` x14 plus four
word pieces is ``other`` with type purity 0.80 and purity 4/18, not "name 0.80".) A **role neuron**
has type purity >= 0.8 over at least 3 distinct tokens *and* a real category (not ``other``, which
holds word pieces and unknown words): a neuron that fires on many different verbs, not on one word or
on fragments. Because categories are uneven (``punctuation`` and ``determiner`` are common),
:class:`PurityResult` also stores the corpus base rates and ``chance_purity``, the purity k random
distinct tokens would reach, so a model is judged against chance.

    >>> cat = TokenCategorizer(model.tokenizer)
    >>> result = neuron_purity(index, model.tokenizer, corpus)
    >>> result.top(10); result.layer_summary(); result.save(index.path)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.data.lexicon import load_lexicon
from tinyinterp.runs.rundir import read_json

CATEGORIES = (
    "noun", "verb", "adjective", "pronoun", "determiner", "preposition",
    "conjunction", "punctuation", "name", "number", "other",
)
CAT = {c: i for i, c in enumerate(CATEGORIES)}
PURITY_FILE = "purity.json"
ROLE_MIN_DISTINCT = 3
ROLE_THRESHOLD = 0.8

PRONOUNS = set("""i me my mine myself you your yours yourself he him his himself she her hers herself it its itself
we us our ours ourselves they them their theirs themselves who whom whose what someone somebody something
everyone everybody everything anyone anybody anything nobody nothing""".split())
DETERMINERS = set("a an the this that these those some any every each no all many much few another both either neither".split())
PREPOSITIONS = set("""in on at to from with into onto under over of for by about after before behind near up down out off
through around across inside outside between above below like without toward towards along past upon until beside""".split())
CONJUNCTIONS = set("and but or so because if when while then than although though since yet as nor".split())
NUMBER_WORDS = set("""one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred
thousand""".split())
# Frequent character names in TinyStories (a capitalised word mid-sentence is a name anyway).
KNOWN_NAMES = set("""Lily Lucy Tom Tim Timmy Ben Sue Sara Sarah Anna Max Mia Sam Jack Amy Bob Jane Mary Mark Ella Emma Jake
Kitty Spot Molly Billy Lisa Mike Joe Zoe Ann Jill Kate Luke Leo Rex Tweety Bella Daisy Sally Pip Mittens Fluffy Buddy
Jen Jenny Tina Mimi Sophie Lola Rosie Toby Danny Johnny Susie Freddy Peter Fred Tommy Lila Jimmy Ollie Chloe Grace
Jim Joy Nick Dan Ted Fin""".split())
_SENTENCE_END = re.compile(r"""[.!?:"“”'\n]\s*$""")
_FULL_STOP = re.compile(r"""[.!?…]["”’']?\s*$""")  # a sentence really ends (no colon, no opening quote)


class TokenCategorizer:
    """Per-vocabulary lookup tables, so labelling millions of occurrences is a few numpy gathers."""

    def __init__(self, tokenizer, lexicon=None):
        lexicon = lexicon or load_lexicon()
        n = tokenizer.vocab_size
        self.cat_mid = np.full(n, CAT["other"], dtype=np.int8)
        self.cat_start = np.full(n, CAT["other"], dtype=np.int8)
        self.starts_with_letter = np.zeros(n, dtype=bool)  # letter as first char (no leading space)
        self.ends_alnum = np.zeros(n, dtype=bool)
        self.ends_sentence = np.zeros(n, dtype=bool)
        self.full_stop = np.zeros(n, dtype=bool)  # ends a sentence for the head structure factors
        self.has_newline = np.zeros(n, dtype=bool)  # ends a paragraph (head structure factors)
        self.is_space = np.zeros(n, dtype=bool)  # whitespace only: between sentences, part of neither
        for t in range(n):
            text = tokenizer.token_str(t)
            self.cat_mid[t], self.cat_start[t] = _categorize(text, lexicon)
            self.starts_with_letter[t] = bool(text) and text[0].isalpha()
            self.ends_alnum[t] = bool(text) and text[-1].isalnum()
            self.ends_sentence[t] = bool(_SENTENCE_END.search(text))
            self.full_stop[t] = bool(_FULL_STOP.search(text))
            self.has_newline[t] = "\n" in text
            self.is_space[t] = bool(text) and text.isspace()
        if getattr(tokenizer, "eot_id", None) is not None:
            self.ends_sentence[tokenizer.eot_id] = True
            self.full_stop[tokenizer.eot_id] = self.has_newline[tokenizer.eot_id] = True  # a document ends

    def label(self, tokens: np.ndarray, prev_tokens: np.ndarray) -> np.ndarray:
        """Category index of each occurrence; ``prev_tokens`` is -1 at a document start."""
        tokens = np.asarray(tokens, dtype=np.int64)
        prev = np.asarray(prev_tokens, dtype=np.int64)
        has_prev = prev >= 0
        prev_safe = np.where(has_prev, prev, 0)
        tok_safe = np.where(tokens >= 0, tokens, 0)
        at_start = ~has_prev | self.ends_sentence[prev_safe]
        labels = np.where(at_start, self.cat_start[tok_safe], self.cat_mid[tok_safe]).astype(np.int64)
        piece = self.starts_with_letter[tok_safe] & has_prev & self.ends_alnum[prev_safe]
        labels[piece] = CAT["other"]
        labels[tokens < 0] = -1
        return labels

    def label_stream(self, tokens: np.ndarray, doc_offsets: np.ndarray | None = None) -> np.ndarray:
        """Labels of a contiguous token stream (documents start at ``doc_offsets``)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        prev = np.concatenate([[-1], tokens[:-1]])
        if doc_offsets is not None:
            starts = np.asarray(doc_offsets)[:-1]
            prev[starts[starts < len(tokens)]] = -1
        return self.label(tokens, prev)


def _categorize(text: str, lexicon) -> tuple[int, int]:
    """(category mid-sentence, category at a sentence start) of one token's text."""
    word = text.strip()
    if not any(c.isalnum() for c in word):
        return CAT["punctuation"], CAT["punctuation"]
    lower = word.lower()
    if word.isdigit() or lower in NUMBER_WORDS:
        return CAT["number"], CAT["number"]
    for cat, words in (("pronoun", PRONOUNS), ("determiner", DETERMINERS), ("preposition", PREPOSITIONS), ("conjunction", CONJUNCTIONS)):
        if lower in words:
            return CAT[cat], CAT[cat]
    if word in KNOWN_NAMES:
        return CAT["name"], CAT["name"]
    pos = lexicon.pos_of(lower) if word.isalpha() else None
    content = CAT[pos] if pos else CAT["other"]
    capitalised = word[0].isupper() and word.isalpha()
    return (CAT["name"] if capitalised else content), content


@dataclass
class PurityResult:
    """Per-neuron purity and majority category of one model's neuron index."""

    model: str
    k: int
    purity: np.ndarray
    """(L, N) share of top-k occurrences in the neuron's category ``majority`` (NaN: no occurrences)."""
    majority: np.ndarray
    """(L, N) index into ``categories`` of the neuron's category: the majority over distinct top-k tokens."""
    type_purity: np.ndarray
    """(L, N) share of the distinct top-k tokens in ``majority`` (each token counted once)."""
    n_distinct: np.ndarray
    """(L, N) number of distinct tokens among the top-k."""
    base_rates: dict[str, float]
    """Share of each category among the corpus tokens."""
    chance_purity: float
    """Mean purity of k tokens drawn at random with the base rates."""
    exemplars: list[dict] = field(default_factory=list)
    """The purest neurons with their most frequent top tokens (for summaries)."""
    categories: tuple[str, ...] = CATEGORIES

    def to_frame(self) -> pd.DataFrame:
        L, N = self.purity.shape
        return pd.DataFrame({
            "layer": np.repeat(np.arange(L), N), "neuron": np.tile(np.arange(N), L),
            "purity": self.purity.reshape(-1),
            "type_purity": self.type_purity.reshape(-1), "n_distinct": self.n_distinct.reshape(-1),
            "category": [self.categories[i] for i in self.majority.reshape(-1)],
        })

    def role_mask(self, threshold: float = ROLE_THRESHOLD, min_distinct: int = ROLE_MIN_DISTINCT) -> np.ndarray:
        """(L, N) True for role neurons: type purity >= threshold over >= min_distinct distinct tokens,
        in a real category (not ``other``: word pieces and unknown words are not a role)."""
        real = self.majority != self.categories.index("other")
        return (np.nan_to_num(self.type_purity) >= threshold) & (self.n_distinct >= min_distinct) & real

    def top(self, k: int = 10, by: str = "role") -> pd.DataFrame:
        """The ``k`` purest neurons, with top tokens where known.

        ``by="role"``: only role neurons (:meth:`role_mask`; so possibly fewer than ``k``), by type purity,
        then purity and number of distinct tokens. ``by="type_purity"``: every neuron with >= 3 distinct
        top tokens in a real category, same order, role or not. ``by="purity"``: all neurons by plain
        purity. Ties: lower layer, then lower neuron.
        """
        if by not in ("role", "type_purity", "purity"):
            raise ValueError(f"PurityResult.top: by must be 'role', 'type_purity' or 'purity', got {by!r}")
        frame = self.to_frame()
        frame["role"] = self.role_mask().reshape(-1)
        if by in ("role", "type_purity"):
            keep = frame.role if by == "role" else (frame.n_distinct >= ROLE_MIN_DISTINCT) & (frame.category != "other")
            frame = frame[keep]
            keys = ["type_purity", "purity", "n_distinct", "layer", "neuron"]
            frame = frame.sort_values(keys, ascending=[False, False, False, True, True], kind="stable")
        else:
            frame = frame.sort_values(["purity", "layer", "neuron"], ascending=[False, True, True], kind="stable")
        frame = frame.head(k).reset_index(drop=True)
        tokens = {(e["layer"], e["neuron"]): e["top_tokens"] for e in self.exemplars}
        frame["top_tokens"] = [tokens.get((l, n), []) for l, n in zip(frame.layer, frame.neuron)]
        return frame

    def layer_summary(self, pure_threshold: float = ROLE_THRESHOLD) -> pd.DataFrame:
        """Per layer: mean/median purity, share of neurons with purity >= threshold, share per majority category."""
        rows = []
        for layer in range(self.purity.shape[0]):
            p = self.purity[layer]
            row = {"layer": layer, "mean_purity": float(np.nanmean(p)), "median_purity": float(np.nanmedian(p)),
                   "share_pure": float(np.mean(p >= pure_threshold)),
                   "mean_type_purity": float(np.nanmean(self.type_purity[layer])),
                   "mean_distinct": float(np.mean(self.n_distinct[layer])),
                   "share_role": float(np.mean(self.role_mask(pure_threshold)[layer]))}
            counts = np.bincount(self.majority[layer], minlength=len(self.categories)) / p.size
            row.update({c: float(counts[i]) for i, c in enumerate(self.categories)})
            rows.append(row)
        return pd.DataFrame(rows)

    def histogram(self, bins: int = 10) -> list[list[int]]:
        """Per layer: counts of neurons per purity bin [0, 0.1), …, [0.9, 1.0]."""
        edges = np.linspace(0, 1, bins + 1)
        return [np.histogram(self.purity[l][~np.isnan(self.purity[l])], bins=edges)[0].tolist() for l in range(self.purity.shape[0])]

    def save(self, directory: str | Path) -> Path:
        data = asdict(self) | {"purity": np.round(self.purity, 4).tolist(), "majority": self.majority.tolist(),
                               "type_purity": np.round(self.type_purity, 4).tolist(), "n_distinct": self.n_distinct.tolist(),
                               "categories": list(self.categories)}
        path = Path(directory) / PURITY_FILE
        atomic_write_json(path, data)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "PurityResult":
        data = read_json(Path(directory) / PURITY_FILE)
        data["purity"] = np.asarray(data["purity"], dtype=np.float64)
        data["majority"] = np.asarray(data["majority"], dtype=np.int64)
        data["type_purity"] = np.asarray(data["type_purity"], dtype=np.float64)
        data["n_distinct"] = np.asarray(data["n_distinct"], dtype=np.int64)
        data["categories"] = tuple(data["categories"])
        return cls(**data)


def purity_of_labels(labels: np.ndarray, n_categories: int = len(CATEGORIES)) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` (..., k) with -1 for missing -> (purity (...), majority (...))."""
    onehot = (labels[..., None] == np.arange(n_categories)).sum(-2)  # (..., C)
    n = onehot.sum(-1)
    majority = onehot.argmax(-1)  # argmax takes the first maximum: ties go to the earlier category
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(n > 0, onehot.max(-1) / np.maximum(n, 1), np.nan)
    return purity, majority


def category_purity(labels: np.ndarray, first: np.ndarray, n_categories: int = len(CATEGORIES)):
    """The category of each neuron and both purities, from the same counts (see the module docstring).

    ``labels`` (..., k) category per top-k occurrence (-1: none), ``first`` (..., k) True at each distinct
    token's first occurrence. Returns ``(category, type_purity, purity)``, each (...); NaN purities
    where there is no occurrence.
    """
    occ = (labels[..., None] == np.arange(n_categories)).sum(-2)  # (..., C) occurrences per category
    types = (np.where(first, labels, -1)[..., None] == np.arange(n_categories)).sum(-2)  # distinct tokens
    k = labels.shape[-1]
    category = (types * (k + 1) + occ).argmax(-1)  # most distinct tokens, then most occurrences, then earlier
    n_types, n_occ = types.sum(-1), occ.sum(-1)
    pick = lambda c: np.take_along_axis(c, category[..., None], -1)[..., 0]  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        type_purity = np.where(n_types > 0, pick(types) / np.maximum(n_types, 1), np.nan)
        purity = np.where(n_occ > 0, pick(occ) / np.maximum(n_occ, 1), np.nan)
    return category, type_purity, purity


def first_occurrences(tokens: np.ndarray) -> np.ndarray:
    """(..., k) True at the first occurrence of each distinct token id along the last axis (ids >= 0)."""
    order = np.argsort(tokens, axis=-1, kind="stable")
    sorted_tokens = np.take_along_axis(tokens, order, -1)
    first_sorted = np.ones_like(sorted_tokens, dtype=bool)
    first_sorted[..., 1:] = sorted_tokens[..., 1:] != sorted_tokens[..., :-1]
    first = np.zeros_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, -1)
    return first & (tokens >= 0)


def chance_purity(base_rates: np.ndarray, k: int, samples: int = 4000, seed: int = 0) -> float:
    """Expected purity of ``k`` tokens drawn i.i.d. from ``base_rates`` (Monte Carlo, fixed seed)."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(len(base_rates), size=(samples, k), p=base_rates / base_rates.sum())
    return float(np.mean(purity_of_labels(draws, len(base_rates))[0]))


def neuron_purity(index, tokenizer=None, corpus=None, max_base_tokens: int = 2_000_000, n_exemplars: int = 200) -> PurityResult:
    """Purity and majority category of every neuron of a :class:`~tinyinterp.interp.NeuronIndex`."""
    tokenizer = index.tokenizer if tokenizer is None else tokenizer
    corpus = index.corpus if corpus is None else corpus
    cat = TokenCategorizer(tokenizer)
    labels = cat.label(index.tensors["top_tokens"].numpy(), index.tensors["top_prev_tokens"].numpy())
    top_tokens = index.tensors["top_tokens"].numpy()
    first = first_occurrences(top_tokens)
    majority, type_purity, purity = category_purity(labels, first)
    stream = np.asarray(corpus.tokens[:max_base_tokens])
    counts = np.bincount(cat.label_stream(stream, corpus.doc_offsets), minlength=len(CATEGORIES)).astype(np.float64)
    rates = counts / max(counts.sum(), 1)
    n_distinct = first.sum(-1)
    by_purity = np.lexsort((-np.nan_to_num(purity, nan=-1).reshape(-1),))
    real = (n_distinct >= ROLE_MIN_DISTINCT) & (majority != CAT["other"])
    role_key = np.where(real, np.nan_to_num(type_purity, nan=-1), -1).reshape(-1)
    by_role = np.lexsort((-np.nan_to_num(purity, nan=-1).reshape(-1), -role_key))
    chosen = list(dict.fromkeys(by_role[: n_exemplars // 2].tolist() + by_purity[: n_exemplars // 2].tolist()))
    exemplars = []
    for flat in chosen:
        layer, neuron = divmod(flat, purity.shape[1])
        exemplars.append({"layer": layer, "neuron": neuron, "purity": float(purity[layer, neuron]),
                          "category": CATEGORIES[majority[layer, neuron]],
                          "top_tokens": index.top_token_strs(layer, neuron, 5)})
    return PurityResult(
        model=index.meta.get("model", ""), k=index.k, purity=purity, majority=majority,
        type_purity=type_purity, n_distinct=n_distinct.astype(np.int64),
        base_rates={c: float(r) for c, r in zip(CATEGORIES, rates)},
        chance_purity=chance_purity(rates, index.k) if counts.sum() else float("nan"), exemplars=exemplars,
    )
