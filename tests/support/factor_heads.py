"""Constructed heads of every decomposition factor, on real TinyStories windows (shared by the factor tests).

Each head is a function ``(tokens (T,), labels (T,), text (list of token strings)) -> (T, T)`` pattern
(rows sum to 1 over ``k <= q``). Sentence and paragraph heads find their boundaries from the token
TEXT with their own rule (``.``/``!``/``?`` end a sentence, a newline a paragraph), not through the
categorizer the analysis uses, so they also test that the factor survives a slightly different
definition of "sentence". ``HEADS`` maps a name to ``(fn, expected class, expected factor or None)``.
"""

from __future__ import annotations

import numpy as np
import torch

from tinyinterp.interp.categories import CAT, TokenCategorizer


def causal_uniform(T: int) -> torch.Tensor:
    return torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]


def first(T: int) -> torch.Tensor:
    p = torch.zeros(T, T)
    p[:, 0] = 1
    return p


def rows_or(target: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Normalise each row of the non-negative ``target``; rows with no target take ``fallback``'s row."""
    total = target.sum(-1, keepdim=True)
    return torch.where(total > 0, target / total.clamp_min(1e-30), fallback)


def _dist(T: int) -> torch.Tensor:
    return torch.arange(T)[:, None] - torch.arange(T)[None, :]


def by_distance(weights: dict[int, float]):
    """Attention on fixed offsets ``q - k`` (renormalised where some are not visible; else itself)."""
    def fn(tokens, labels, text):
        T = len(tokens)
        d = _dist(T)
        w = torch.zeros(T, T)
        for offset, weight in weights.items():
            w[d == offset] = weight
        return rows_or(w, torch.eye(T))

    return fn


def gaussian_bump(centre: float, width: float):
    def fn(tokens, labels, text):
        d = _dist(len(tokens)).float()
        w = torch.where(d >= 0, torch.exp(-0.5 * ((d - centre) / width) ** 2), torch.zeros(()))
        return w / w.sum(-1, keepdim=True)

    return fn


def uniform_previous(n: int):
    """Uniform over the ``n`` tokens before the query (not itself); the first query attends itself."""
    def fn(tokens, labels, text):
        d = _dist(len(tokens))
        return rows_or(((d >= 1) & (d <= n)).float(), torch.eye(len(tokens)))

    return fn


def keys_where(mask_fn, fallback: str = "first"):
    """Uniform over the visible keys where ``mask_fn(tokens, labels, text)`` (T,) holds; else ``fallback``."""
    def fn(tokens, labels, text):
        T = len(tokens)
        keys = torch.as_tensor(mask_fn(tokens, labels, text)).float()[None, :].expand(T, T).tril()
        return rows_or(keys, first(T) if fallback == "first" else torch.eye(T))

    return fn


def most_recent(mask_fn, strict: bool, fallback: str = "first"):
    """The most recent key (``k < q`` if ``strict``, else ``k <= q``) where ``mask_fn`` holds."""
    def fn(tokens, labels, text):
        T = len(tokens)
        mask = torch.as_tensor(mask_fn(tokens, labels, text)).bool()
        p = first(T) if fallback == "first" else torch.eye(T)
        last = -1
        for q in range(T):
            if not strict and mask[q]:
                last = q
            if last >= 0:
                p[q] = 0
                p[q, last] = 1
            if strict and mask[q]:
                last = q
        return p

    return fn


def category(name: str):
    return lambda tokens, labels, text: labels == CAT[name]


def _ends(text) -> torch.Tensor:
    return torch.tensor([any(c in t for c in ".!?") for t in text])


def _newlines(text) -> torch.Tensor:
    return torch.tensor(["\n" in t for t in text])


def unit_start(end_fn):
    """The first token of the query's sentence/paragraph: the token after the last end before the query."""
    def fn(tokens, labels, text):
        T = len(tokens)
        ends = end_fn(text)
        p = torch.zeros(T, T)
        start = 0
        for q in range(T):
            if q > 0 and ends[q - 1]:
                start = q
            p[q, start] = 1
        return p

    return fn


def main_character(tokens, labels, text):
    """Every occurrence of the first name token of the window (the story's hero, as TinyStories opens)."""
    names = torch.nonzero(labels == CAT["name"]).flatten()
    if not len(names):
        return torch.zeros(len(tokens), dtype=torch.bool)
    return tokens == tokens[names[0]]


def duplicate(fallback: str):
    def fn(tokens, labels, text):
        T = len(tokens)
        same = (tokens[:, None] == tokens[None, :]).float().tril(-1)
        return rows_or(same, first(T) if fallback == "first" else torch.eye(T))

    return fn


def induction(tokens, labels, text):
    T = len(tokens)
    same = (tokens[:, None] == tokens[None, :]).float().tril(-1)
    after = torch.zeros(T, T)
    after[:, 1:] = same[:, :-1]
    return rows_or(after, first(T))


def same_category_as_query(tokens, labels, text):
    T = len(tokens)
    same = (labels[:, None] == labels[None, :]).float().tril(-1)
    return rows_or(same, torch.eye(T))


def previous_same_pos(tokens, labels, text):
    """The most recent earlier key with the query's category (part of speech), else the first token."""
    T = len(tokens)
    p = first(T)
    for q in range(1, T):
        hits = torch.nonzero(labels[:q] == labels[q]).flatten()
        if len(hits):
            p[q] = 0
            p[q, hits.max()] = 1
    return p


def previous_if_noun(fallback: str):
    """The previous token if it is a noun, else ``fallback`` (the query itself, or the first token)."""
    def fn(tokens, labels, text):
        T = len(tokens)
        p = torch.eye(T) if fallback == "self" else first(T)
        for q in range(1, T):
            if labels[q - 1] == CAT["noun"]:
                p[q] = 0
                p[q, q - 1] = 1
        return p

    return fn


def nearest_noun_within(n: int):
    """The most recent noun among the query and its ``n - 1`` predecessors, else the first token."""
    def fn(tokens, labels, text):
        T = len(tokens)
        nouns = (labels == CAT["noun"])[None, :] & (_dist(T) >= 0) & (_dist(T) < n)
        p = first(T)
        for q in range(T):
            hits = torch.nonzero(nouns[q]).flatten()
            if len(hits):
                p[q] = 0
                p[q, hits.max()] = 1
        return p

    return fn


def blend(a, b, w: float = 0.5):
    return lambda tokens, labels, text: w * a(tokens, labels, text) + (1 - w) * b(tokens, labels, text)


def if_query(cats: tuple[str, ...], then, otherwise):
    """``then``'s row where the query token has one of the categories ``cats``, else ``otherwise``'s row."""
    def fn(tokens, labels, text):
        pick = torch.isin(labels, torch.tensor([CAT[c] for c in cats]))[:, None]
        return torch.where(pick, then(tokens, labels, text), otherwise(tokens, labels, text))

    return fn


PUNCT, NOUN, NAME, VERB = category("punctuation"), category("noun"), category("name"), category("verb")
SENTENCE_START = unit_start(_ends)

HEADS = {
    # distance: local
    "previous token": (by_distance({1: 1.0}), "local", "distance"),
    "exactly 3 back": (by_distance({3: 1.0}), "local", "distance"),
    "offsets 2 and 5": (by_distance({2: 0.5, 5: 0.5}), "local", "distance"),
    "uniform over previous 20": (uniform_previous(20), "local", "distance"),
    "gaussian bump at 10": (gaussian_bump(10, 2.0), "local", "distance"),
    "decaying exp(-d/3)": (gaussian_bump(0, 3.0), "local", "distance"),
    # key category: semantic
    "all punctuation": (keys_where(PUNCT), "semantic", "category"),
    "all nouns": (keys_where(NOUN), "semantic", "category"),
    "all verbs, else itself": (keys_where(VERB, "self"), "semantic", "category"),
    "all names": (keys_where(NAME), "semantic", "category"),
    # token identity relative to the query
    "main character's name": (keys_where(main_character), "semantic", None),
    "duplicate token, else itself": (duplicate("self"), "semantic", "token"),
    "duplicate token, else first": (duplicate("first"), "semantic", "token"),
    "induction": (induction, "semantic", "token"),
    # the query's category
    "same category as the query": (same_category_as_query, "semantic", "query_category"),
    # recency within a category
    "most recent name": (most_recent(NAME, strict=False, fallback="self"), "semantic", "recency"),
    "most recent earlier punctuation": (most_recent(PUNCT, strict=True), "semantic", None),
    "most recent earlier noun": (most_recent(NOUN, strict=True), "semantic", "recency"),
    "most recent earlier verb": (most_recent(VERB, strict=True), "semantic", "recency"),
    "previous token with the query's POS": (previous_same_pos, "semantic", "recency"),
    # sentence / paragraph structure
    "sentence start": (SENTENCE_START, "semantic", "structure"),
    "previous sentence end": (most_recent(lambda t, l, text: _ends(text), strict=True), "semantic", None),
    "paragraph start": (unit_start(_newlines), "semantic", "structure"),
    # both families: mixed
    "previous token if noun, else itself": (previous_if_noun("self"), "mixed", None),
    "previous token if noun, else first": (previous_if_noun("first"), "mixed", None),
    "nearest noun in last 8": (nearest_noun_within(8), "mixed", None),
    "previous token + all names": (blend(by_distance({1: 1.0}), keys_where(NAME)), "mixed", None),
    "3 back + sentence start": (blend(by_distance({3: 1.0}), SENTENCE_START), "mixed", None),
    "previous 20 + most recent punctuation": (blend(uniform_previous(20), most_recent(PUNCT, strict=True)), "mixed", None),
    "2 back if noun or verb, else most recent name": (if_query(("noun", "verb"), by_distance({2: 1.0}),
                                                        most_recent(NAME, strict=False, fallback="self")), "mixed", None),
    "previous token if punctuation, else duplicate": (if_query(("punctuation",), by_distance({1: 1.0}), duplicate("first")),
                                                      "mixed", None),
    # nothing to explain: mixed
    "itself": (by_distance({0: 1.0}), "mixed", None),  # the other no-op target, like the first token
    "first token": (lambda tokens, labels, text: first(len(tokens)), "mixed", None),
    "uniform over all": (lambda tokens, labels, text: causal_uniform(len(tokens)), "mixed", None),
}
"""name -> (pattern fn, expected class, expected factor; None: more than one factor fits, not asserted)."""


def tinystories_windows(data_dir, n: int = 32, T: int = 64):
    """``(tokens (n, T), labels (n, T), texts, tokenizer)``: the first T GPT-2 tokens of n real stories."""
    from tinyinterp.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_hf(data_dir / "tokenizers" / "gpt2" / "tokenizer.json")
    raw = (data_dir / "tinystories" / "train-v1-hf-head.txt").read_text(encoding="utf-8")
    stories = [s.strip() for s in raw.split("<|endoftext|>") if s.strip()]
    rows = []
    for story in stories[::7]:
        ids = tokenizer.encode(story)
        if len(ids) >= T:
            rows.append(ids[:T])
        if len(rows) == n:
            break
    tokens = torch.tensor(rows)
    categorizer = TokenCategorizer(tokenizer)
    labels = torch.from_numpy(np.stack([categorizer.label_stream(r.numpy()) for r in tokens]))
    texts = [[tokenizer.token_str(int(i)) for i in r] for r in tokens]
    return tokens, labels, texts, tokenizer


def patterns(tokens, labels, texts, fns) -> torch.Tensor:
    """(B, H, T, T) patterns of the heads ``fns`` on every window."""
    return torch.stack([torch.stack([fn(t, l, x) for fn in fns]) for t, l, x in zip(tokens, labels, texts)])


def soften(p: torch.Tensor, alpha: float, kind: str) -> torch.Tensor:
    """Mix ``alpha`` of a uniform-causal (``kind="uniform"``) or first-token sink (``"sink"``) head into ``p``."""
    T = p.shape[-1]
    other = causal_uniform(T) if kind == "uniform" else first(T)
    return (1 - alpha) * p + alpha * other
