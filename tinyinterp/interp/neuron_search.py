"""Find neurons by word: rank every MLP neuron by how *selectively* it fires on a word's occurrences.

Counting how often a token sits in a neuron's top-k ranks a near-dead neuron first (its top-k is
filled by whatever nudges it above zero, even by 0.001) and a real "dog" neuron that also fires on
"cat" far down. Instead, for a word (or a phrase, or several alternatives), case-insensitively:

1. **Variants**: each alternative as typed, lower-case, Capitalised, Title Case and UPPER, each with and
   without a leading space, encoded with the index's tokenizer (duplicates dropped).
2. **Occurrences**: every place in the indexed documents where a variant's tokens appear *as a whole
   word*: inside one document, the token after it does not start with a letter or digit (so " dog"
   + "gy" is not "dog"), and for a variant without a leading space the token before does not end with
   one (so "hot" + "dog" is not "dog").
3. **Activations** at each occurrence's first and last token (the same token for a one-token word),
   computed by re-running the index's own windows that hold them (so they equal what the index saw);
   at most ``max_occurrences`` occurrences, evenly spread over the corpus.
4. **Score** per neuron and anchor (first / last token): a standardized difference

       d = (mean on the word - mean elsewhere) / max(std elsewhere, floor)

   "Elsewhere" is every other indexed token: the index's running mean/std over all tokens with the
   word's tokens taken out (exact when every occurrence was run, an unbiased estimate otherwise).
   ``floor`` = ``std_floor`` (0.1) x the median std of the neurons of that layer: a neuron whose
   activations barely move has a tiny std, and without a floor a difference of 0.001 would look
   infinitely selective. The neuron's score is its better anchor.

    >>> index.find_neurons("dog", model).head()          # DataFrame(layer, neuron, score, ...)
    >>> find_neurons(index, model, ["dog", "puppy"])     # alternatives count as one word
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.activations import iter_activations
from tinyinterp.interp.inputs import doc_of_position
from tinyinterp.interp.units import NeuronUnits

log = logging.getLogger(__name__)

ANCHORS = ("first", "last")
_CHUNK = 1 << 24  # tokens scanned at a time: bounded memory on corpora of any size


def word_variants(tokenizer, words) -> list[tuple[list[int], bool]]:
    """Distinct token sequences of the case/space variants of ``words``, each with ``has_space``."""
    alternatives = [words] if isinstance(words, str) else list(words)
    alternatives = [w.strip() for w in alternatives if w and w.strip()]
    if not alternatives:
        raise TinyinterpError("words: give at least one non-empty word to search for")
    seen, out = set(), []
    for w in alternatives:
        for form in (w, w.lower(), w[:1].upper() + w[1:].lower(), w.title(), w.upper()):
            for space in (True, False):
                ids = tuple(tokenizer.encode((" " if space else "") + form))
                if ids and ids not in seen:
                    seen.add(ids)
                    out.append((list(ids), space))
    return out


def _boundary_tables(tokenizer, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """(ends_alnum, starts_alnum) per token id: a token continuing / continued by a word."""
    ends, starts = np.zeros(vocab, dtype=bool), np.zeros(vocab, dtype=bool)
    for t in range(vocab):
        s = tokenizer.token_str(t)
        ends[t], starts[t] = bool(s) and s[-1].isalnum(), bool(s) and s[0].isalnum()
    return ends, starts


def find_occurrences(corpus, end: int, variants, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Whole-word occurrences in ``corpus.tokens[:end]``: sorted start positions and lengths in tokens (a
    leading whitespace-only token is not counted), one per place where the word stands."""
    tokens = corpus.tokens
    vocab = tokenizer.vocab_size
    ends_alnum, starts_alnum = _boundary_tables(tokenizer, vocab)
    offsets = np.asarray(corpus.doc_offsets, dtype=np.int64)
    found: dict[int, int] = {}
    for ids, has_space in variants:
        n = len(ids)
        # a leading space that is a token of its own (" " + "Dog") is not part of the word's activation
        lead = next((i for i, t in enumerate(ids) if tokenizer.token_str(t).strip()), n - 1)
        for lo in range(0, end, _CHUNK):
            hi = min(end, lo + _CHUNK + n)  # overlap so matches across the chunk edge are seen once
            chunk = np.asarray(tokens[lo:hi])
            starts = np.flatnonzero(chunk[: min(_CHUNK, end - lo)] == ids[0])
            starts = starts[starts + n <= len(chunk)]
            for j in range(1, n):
                starts = starts[chunk[starts + j] == ids[j]]
            pos = starts + lo
            if not len(pos):
                continue
            doc = doc_of_position(corpus, pos)
            stop = pos + n  # one past the match
            ok = stop <= offsets[doc + 1]  # inside one document
            nxt = np.minimum(np.asarray(tokens[np.minimum(stop, len(tokens) - 1)], dtype=np.int64), vocab - 1)
            ok &= (stop >= offsets[doc + 1]) | ~starts_alnum[nxt]
            if not has_space:
                prev = np.minimum(np.asarray(tokens[np.maximum(pos - 1, 0)], dtype=np.int64), vocab - 1)
                ok &= (pos == offsets[doc]) | ~ends_alnum[prev]
            for p in (pos[ok] + lead).tolist():
                found[p] = max(found.get(p, 0), n - lead)
    # one occurrence per place: drop a match inside an earlier, longer one ("D"+"og" inside " "+"D"+"og")
    kept, reach = [], -1
    for p in sorted(found):
        if p + found[p] > reach:
            kept.append(p)
            reach = p + found[p]
    return np.array(kept, dtype=np.int64), np.array([found[p] for p in kept], dtype=np.int64)


def _windows_for(corpus, positions: np.ndarray, seq_len: int) -> np.ndarray:
    """The index's windows (doc, start, length) holding ``positions``, unique and in corpus order."""
    offsets = np.asarray(corpus.doc_offsets, dtype=np.int64)
    doc = doc_of_position(corpus, positions)
    start = offsets[doc] + (positions - offsets[doc]) // seq_len * seq_len
    start, first = np.unique(start, return_index=True)
    doc = doc[first]
    return np.stack([doc, start, np.minimum(start + seq_len, offsets[doc + 1]) - start], axis=1)


@torch.no_grad()
def anchor_sums(model, corpus, anchors: dict[str, np.ndarray], seq_len: int, batch_size: int = 16, units=None):
    """Per anchor: sum and sum of squares (float64, (L, N)) of every unit over the anchor positions
    (``units``: a :class:`~tinyinterp.interp.units.UnitSource`, default the model's MLP neurons)."""
    units = units if units is not None else NeuronUnits(model)
    L, N = units.n_layers, units.width
    sums = {a: torch.zeros(L, N, dtype=torch.float64) for a in anchors}
    sqs = {a: torch.zeros(L, N, dtype=torch.float64) for a in anchors}
    all_pos = np.unique(np.concatenate(list(anchors.values())))
    windows = _windows_for(corpus, all_pos, seq_len)
    names = units.hook_names()
    layer_of = {name: l for l, name in enumerate(names)}

    def fold(name: str, acts: torch.Tensor, batch) -> None:
        if "rows" not in batch.memo:  # the flattened rows at each anchor, shared by all layers
            flat_pos = batch.positions.reshape(-1).numpy()
            batch.memo["rows"] = {a: torch.from_numpy(np.flatnonzero(np.isin(flat_pos, pos))) for a, pos in anchors.items()}
        layer = layer_of[name]
        flat = acts.detach().reshape(-1, *acts.shape[2:])  # (B * T, d_hook)
        for a, idx in batch.memo["rows"].items():
            x = units.activations(layer, flat[idx.to(flat.device)]).double().cpu()
            sums[a][layer] += x.sum(0)
            sqs[a][layer] += (x * x).sum(0)

    for _ in iter_activations(model, corpus, windows, names, batch_size=batch_size, reduce=fold):
        pass
    return sums, sqs


def find_neurons(index, model, words, top: int = 20, max_occurrences: int = 500, std_floor: float = 0.1,
                 batch_size: int = 16) -> pd.DataFrame:
    """Neurons ranked by how selectively they fire on ``words`` (see the module docstring).

    Returns a DataFrame (layer, neuron, score, anchor, mean_on_word, mean_elsewhere, std_elsewhere),
    best first, ``top`` rows; ``frame.attrs`` holds ``variants`` (the token strings searched),
    ``n_occurrences`` (in the indexed corpus) and ``n_used`` (occurrences run through the model).
    """
    tokenizer, corpus = index.tokenizer, index.corpus
    if tokenizer is None:
        raise TinyinterpError(f"{index.path}: this index has no tokenizer.json; cannot search by word")
    units = index.unit_source(model)
    if units.n_layers != index.n_layers or units.width != index.d_mlp:
        raise TinyinterpError(f"model has {units.n_layers} x {units.width} {units.kind} but the index "
                              f"{index.n_layers} x {index.d_mlp}; pass the model the index was built from")
    config = index.meta.get("config", {})
    seq_len = int(config["seq_len"])
    max_docs = config.get("max_docs")
    n_docs = corpus.n_docs if max_docs is None else min(int(max_docs), corpus.n_docs)
    end = int(np.asarray(corpus.doc_offsets)[n_docs])
    variants = word_variants(tokenizer, words)
    shown = ["".join(tokenizer.token_str(t) for t in ids) for ids, _ in variants]
    starts, lengths = find_occurrences(corpus, end, variants, tokenizer)
    if not len(starts):
        raise TinyinterpError(f"words {words!r}: no whole-word occurrence in the indexed corpus (tried {shown})")
    n_total = len(starts)
    if n_total > max_occurrences:
        keep = np.unique(np.linspace(0, n_total - 1, max_occurrences).round().astype(np.int64))
        starts, lengths = starts[keep], lengths[keep]
    anchors = {"first": starts, "last": starts + lengths - 1}
    sums, sqs = anchor_sums(model, corpus, anchors, seq_len, batch_size, units)

    n_all = float(index.meta["n_tokens"])
    mean_all = index.tensors["mean"].double()
    sq_all = index.tensors["std"].double() ** 2 + mean_all**2  # mean of squares over all tokens
    floor = std_floor * index.tensors["std"].double().median(dim=1, keepdim=True).values.clamp(min=1e-12)
    frames = []
    for a in ANCHORS:
        n_used = len(np.unique(anchors[a]))
        mean_w, sq_w = sums[a] / n_used, sqs[a] / n_used
        n_else = max(n_all - n_total, 1.0)
        mean_e = (n_all * mean_all - n_total * mean_w) / n_else
        var_e = ((n_all * sq_all - n_total * sq_w) / n_else - mean_e**2).clamp(min=0)
        std_e = var_e.sqrt()
        score = (mean_w - mean_e) / torch.maximum(std_e, floor)
        L, N = score.shape
        frames.append(pd.DataFrame({
            "layer": np.repeat(np.arange(L), N), "neuron": np.tile(np.arange(N), L), "score": score.reshape(-1).numpy(),
            "anchor": a, "mean_on_word": mean_w.reshape(-1).numpy(), "mean_elsewhere": mean_e.reshape(-1).numpy(),
            "std_elsewhere": std_e.reshape(-1).numpy(),
        }))
        if (lengths == 1).all():  # first == last: one anchor is enough
            break
    frame = pd.concat(frames, ignore_index=True).sort_values(["score", "layer", "neuron"], ascending=[False, True, True],
                                                              kind="stable")
    frame = frame.drop_duplicates(["layer", "neuron"]).head(top).reset_index(drop=True)
    frame.attrs.update(variants=shown, n_occurrences=n_total, n_used=len(starts))
    return frame
