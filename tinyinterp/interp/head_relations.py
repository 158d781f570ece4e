"""Relations between a query and each key it sees, from the tokens alone: what the semantic factors read.

The head decomposition (:mod:`tinyinterp.interp.head_decomposition`) describes every visible (query q,
key k <= q) pair by its distance bucket and a *key slot*. This module computes the slot's parts:

- ``cat``: the key's token category (:data:`tinyinterp.interp.categories.CATEGORIES`; -1 counts as other);
- ``dup``: the key is an earlier copy of the query token (k < q, same id);
- ``ind``: the token before the key is an earlier copy of the query token (the induction target);
- ``qcat``: the key has the query's category (k < q): "a word of the same part of speech";
- ``rank``: recency *within the key's category*: 0 if no earlier key (k < k' < q) of the same category
  sits between the key and the query (the most recent noun, the most recent punctuation, ...), 1 if one
  does, 2 otherwise (and for the query itself): a content-gated distance, counted in keys of category
  c instead of in tokens;
- ``struct``: three bits for sentence and paragraph structure. ``BOUNDARY``: the key is the last
  sentence end before the query (k < q); ``SENTENCE``: the key opens the query's sentence;
  ``PARAGRAPH``: the key opens the query's paragraph.

Sentence ends are the tokens :class:`tinyinterp.interp.categories.TokenCategorizer` marks as a full stop
(ending in ``.``, ``!``, ``?`` or ``…``, maybe with a closing quote; the end of text); newlines end
paragraphs. Whitespace tokens (a newline) between units belong to neither, so both the token right
after the end and the first non-space token after it count as the start: after ``happy.\\n`` the
sentence opens at ``\\n`` and at ``One``, and the last sentence end is the ``.``. Without a tokenizer
every punctuation token counts as a sentence end and there are no paragraphs.

    >>> flags = torch.from_numpy(boundary_flags(tokens.numpy(), labels.numpy(), categorizer))  # (B, T, 3)
    >>> rel = pair_relations(tokens, labels, flags)   # dict of (B, T, T) integer tensors
"""

from __future__ import annotations

import numpy as np
import torch

from tinyinterp.interp.categories import CAT, CATEGORIES

N_CATS = len(CATEGORIES)
N_RANKS = 4
SELF_RANK = 3
"""Recency ranks: 0 (most recent of its category), 1 (second most recent), 2 (older), 3 (the query itself)."""
BOUNDARY, SENTENCE, PARAGRAPH = 1, 2, 4
N_STRUCT = 8


def boundary_flags(tokens: np.ndarray, labels: np.ndarray, categorizer=None) -> np.ndarray:
    """``(..., 3)`` bool flags per token: (ends a sentence, holds a newline, is whitespace only).

    With a :class:`~tinyinterp.interp.categories.TokenCategorizer` the tokenizer's own tables decide;
    without one, every punctuation token (by ``labels``) ends a sentence and there are no newlines.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    if categorizer is None:
        none = np.zeros(tokens.shape, dtype=bool)
        return np.stack([np.asarray(labels) == CAT["punctuation"], none, none], -1)
    safe = np.clip(tokens, 0, len(categorizer.full_stop) - 1)
    space = categorizer.is_space[safe]
    return np.stack([categorizer.full_stop[safe] & ~space, categorizer.has_newline[safe], space], -1)


def _last_at_or_before(flags: torch.Tensor) -> torch.Tensor:
    """``(B, T)``: for every position t the last position <= t where ``flags`` holds (-1 if none)."""
    T = flags.shape[-1]
    pos = torch.where(flags, torch.arange(T), torch.full(flags.shape, -1, dtype=torch.long))
    return torch.cummax(pos, dim=-1).values


def _before(x: torch.Tensor) -> torch.Tensor:
    """``out[t] = x[t - 1]`` (-1 at t = 0): "strictly before t" from "at or before t"."""
    return torch.cat([torch.full_like(x[:, :1], -1), x[:, :-1]], 1)


def _first_after(mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``(B, T)``: the first position p > pos[b, q] with mask[b, p] (T if none)."""
    T = mask.shape[-1]
    nxt = torch.where(mask, torch.arange(T), torch.full(mask.shape, T, dtype=torch.long))
    nxt = torch.flip(torch.cummin(torch.flip(nxt, [-1]), -1).values, [-1])  # first mask position >= p
    nxt = torch.cat([nxt, torch.full_like(nxt[:, :1], T)], 1)  # (B, T + 1)
    return nxt.gather(1, (pos + 1).clamp(max=T))


def unit_positions(flags: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(B, T)`` positions per query (-1: none): ``end`` the last sentence end before it; ``sentence`` /
    ``sentence_word`` the token right after that end and the first non-space token after it (the same
    token unless whitespace such as a newline comes between); ``paragraph`` / ``paragraph_word`` the same
    after the last newline."""
    ends, newline, space = flags.unbind(-1)
    prev_end = _before(_last_at_or_before(ends))
    prev_newline = _before(_last_at_or_before(newline))
    out = {"end": prev_end}
    for unit, last in (("sentence", prev_end), ("paragraph", prev_newline)):
        word = _last_at_or_before(~space)  # the last non-space token at or before q
        first_word = _first_after(~space, last)
        out[unit] = last + 1
        out[f"{unit}_word"] = torch.where(word > last, first_word, torch.full_like(word, -1))
    return out


def pair_relations(tokens: torch.Tensor, labels: torch.Tensor, flags: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The slot parts (module docstring) of every (query, key) pair: ``(B, T, T)`` long tensors.

    ``tokens``/``labels`` ``(B, T)``; ``flags`` ``(B, T, 3)`` bool from :func:`boundary_flags` (``None``:
    from ``labels`` alone). Entries with ``k > q`` are meaningless (masked later).
    """
    B, T = tokens.shape
    cat = torch.where(labels >= 0, labels, CAT["other"]).long()  # (B, T)
    if flags is None:
        flags = torch.from_numpy(boundary_flags(tokens.numpy(), cat.numpy()))
    flags = torch.as_tensor(flags, dtype=torch.bool)
    earlier = torch.ones(T, T, dtype=torch.bool).tril(-1)  # k < q
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, q, k)
    dup = same & earlier
    ind = torch.zeros_like(dup)
    ind[:, :, 1:] = dup[:, :, :-1]  # the key right after an earlier copy of the query token
    qcat = (cat[:, :, None] == cat[:, None, :]) & earlier

    # rank: keys of the key's category strictly between k and q = C[cat k, q] - C[cat k, k + 1]
    onehot = torch.nn.functional.one_hot(cat, N_CATS).long()  # (B, T, C)
    before = torch.cat([torch.zeros(B, 1, N_CATS, dtype=torch.long), onehot.cumsum(1)], 1)  # (B, T+1, C): count in [0, t)
    at_q = before[:, :T].gather(2, cat[:, None, :].expand(B, T, T))  # (B, q, k): keys of cat(k) in [0, q)
    after_k = before[:, 1:].gather(2, cat[:, :, None]).squeeze(-1)  # (B, k): keys of cat(k) in [0, k]
    between = at_q - after_k[:, None, :]
    rank = torch.where(earlier, between.clamp(max=2), torch.full_like(between, SELF_RANK))  # k = q: itself

    k = torch.arange(T)[None, None, :]
    at = {name: k == pos[:, :, None] for name, pos in unit_positions(flags).items()}  # (B, q, k) each
    struct = (BOUNDARY * at["end"] + SENTENCE * (at["sentence"] | at["sentence_word"])
              + PARAGRAPH * (at["paragraph"] | at["paragraph_word"]))
    return {"cat": cat[:, None, :].expand(B, T, T), "dup": dup.long(), "ind": ind.long(), "qcat": qcat.long(),
            "rank": rank.long(), "struct": struct.long()}
