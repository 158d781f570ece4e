"""ROUGE-k as in the paper, matching the ``rouge-score`` package bit for bit, plus an exact n-gram index.

The paper measures memorization with the ROUGE-k precision
``r_k(T1, T2) = |G_k(T1) ∩ G_k(T2)| / |G_k(T1)|`` of a generated text T1 against a reference T2,
and its F-measure. We follow ``rouge_score`` (the reference implementation) exactly: its default
tokenizer (lowercase, every non-alphanumeric run → one space, optional Porter stemming of words
longer than 3 letters), k-gram *multisets* (a k-gram that occurs twice counts twice), and its float
formulas ``P = ov / max(|G(T1)|, 1)``, ``R = ov / max(|G(T2)|, 1)``, ``F = 2·P·R / (P + R)``. In
``rouge_score.score(target, prediction)`` terms, T1 is the *prediction* and T2 the *target*.

:class:`NgramIndex` answers "which training story has the highest ROUGE-k with this completion?"
without scoring every story: an inverted index (k-gram id → stories containing it, with counts,
stored as CSR arrays) gives the overlap count of *every* story in one ``np.bincount``; stories
sharing no k-gram have overlap 0. Scores then use the same IEEE float operations as
``rouge_score``, so the maximum and its arg-max (ties → the smallest story id) equal brute force.

    >>> index = NgramIndex.build(["the cat sat on the mat", "a dog ran"], n=2)
    >>> index.max_rouge("the cat sat").precision
    1.0
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from rouge_score import tokenize as _rouge_tokenize  # light: re + six (rouge_score.tokenizers pulls in nltk)

from tinyinterp.errors import TinyinterpError

Ngram = tuple[str, ...]


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem import porter  # slow import (seconds), so only when stemming is asked for

    return porter.PorterStemmer()  # what rouge_score's DefaultTokenizer(use_stemmer=True) uses


def tokenize(text: str, stem: bool = False) -> list[str]:
    """``rouge_score``'s default tokenization: exactly its tokens, faster without stemming.

    After lowercasing and replacing every non-``[a-z0-9]`` run by a space, the text holds only
    ``[a-z0-9]`` and spaces, so ``str.split()`` yields exactly the tokens that rouge_score's
    split + per-token validity filter keeps (the property tests check this against rouge_score).
    """
    if stem:
        return _rouge_tokenize.tokenize(text, _stemmer())
    return _rouge_tokenize.NON_ALPHANUM_RE.sub(" ", text.lower()).split()


def ngram_counts(tokens: list[str], n: int) -> Counter:
    """The multiset of ``n``-grams of ``tokens`` (as ``rouge_score._create_ngrams``)."""
    return Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class RougeScore:
    precision: float
    recall: float
    fmeasure: float

    def to_dict(self) -> dict:
        return asdict(self)


ROUGE_L = "L"
"""Pass ``n="L"`` for ROUGE-L (longest common subsequence) where a pairwise score is computed."""


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 9:  # rouge_score accepts rouge1 … rouge9
        raise TinyinterpError(f"ROUGE order n must be an integer between 1 and 9 (or 'L' for a pairwise ROUGE-L), "
                              f"got {n!r}")


def score_from_counts(overlap: int, n_pred: int, n_target: int) -> RougeScore:
    """The three scores from counts, with ``rouge_score``'s exact float operations."""
    precision = overlap / max(n_pred, 1)
    recall = overlap / max(n_target, 1)
    fmeasure = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return RougeScore(precision, recall, fmeasure)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diag = 0  # row[j-1] of the previous row
        for j, y in enumerate(b, start=1):
            up = row[j]
            row[j] = diag + 1 if x == y else (row[j - 1] if row[j - 1] > up else up)
            diag = up
    return row[-1]


def rouge_l(prediction: str, target: str, stem: bool = False) -> RougeScore:
    """ROUGE-L of ``prediction`` against ``target``, equal to ``rouge_score``'s ``rougeL`` (not ``rougeLsum``)."""
    pred, targ = tokenize(prediction, stem), tokenize(target, stem)
    if not pred or not targ:
        return RougeScore(0.0, 0.0, 0.0)  # rouge_score's _score_lcs on an empty side
    return score_from_counts(lcs_length(targ, pred), len(pred), len(targ))


def rouge_n(prediction: str, target: str, n: int | str = 2, stem: bool = False) -> RougeScore:
    """ROUGE-n of ``prediction`` (T1, the generated text) against ``target`` (T2, the reference); ``n="L"``: ROUGE-L."""
    if n == ROUGE_L:
        return rouge_l(prediction, target, stem)
    _check_n(n)
    pred = ngram_counts(tokenize(prediction, stem), n)
    targ = ngram_counts(tokenize(target, stem), n)
    overlap = sum(min(c, targ[g]) for g, c in pred.items())
    return score_from_counts(overlap, sum(pred.values()), sum(targ.values()))


@dataclass(frozen=True)
class MaxRouge:
    """The best-matching reference for one text, by precision and (separately) by F-measure."""

    precision: float
    precision_doc: int
    """Smallest reference id reaching the maximum precision (0 when every precision is 0)."""
    fmeasure: float
    fmeasure_doc: int
    n_precision_ties: int
    """How many references share the maximum precision."""

    def to_dict(self) -> dict:
        return asdict(self)


class NgramIndex:
    """Inverted index over the k-grams of a fixed list of reference texts (e.g. the training set)."""

    def __init__(self, n: int, stem: bool, vocab: dict[Ngram, int], indptr: np.ndarray,
                 doc_ids: np.ndarray, counts: np.ndarray, doc_totals: np.ndarray):
        self.n, self.stem, self.vocab = n, stem, vocab
        self.indptr, self.doc_ids, self.counts = indptr, doc_ids, counts  # CSR: k-gram id → postings
        self.doc_totals = doc_totals  # |G_k| of every reference (multiset size)

    @property
    def n_docs(self) -> int:
        return len(self.doc_totals)

    @classmethod
    def build(cls, texts, n: int = 2, stem: bool = False, progress: bool = False) -> NgramIndex:
        """Tokenize every reference once and build the CSR postings (k-gram id → (doc id, count))."""
        if n == ROUGE_L or str(n).upper() in ("L", "ROUGEL", "ROUGE-L"):
            raise TinyinterpError("ROUGE-L (longest common subsequence) has no n-gram index; use rouge_l() per pair "
                                  "or brute_force_max_rouge(text, references, n='L') for the maximum over references")
        _check_n(n)
        texts = list(texts)
        if not texts:
            raise TinyinterpError("cannot build a ROUGE index over an empty set of reference texts")
        iterator = texts
        if progress:
            from tqdm import tqdm
            iterator = tqdm(texts, desc=f"indexing {n}-grams", unit="story")
        token_ids: dict[str, int] = {}
        words: list[str] = []
        flat: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        for doc, text in enumerate(iterator):
            toks = tokenize(text, stem)
            lengths[doc] = len(toks)
            for t in toks:
                tid = token_ids.get(t)
                if tid is None:
                    tid = token_ids[t] = len(words)
                    words.append(t)
                flat.append(tid)
        tokens = np.asarray(flat, dtype=np.int64)  # all documents back to back
        doc_of = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        starts = np.arange(max(len(tokens) - n + 1, 0))
        valid = doc_of[starts] == doc_of[np.minimum(starts + n - 1, len(tokens) - 1)] if len(starts) else starts.astype(bool)
        starts = starts[valid]  # k-grams that stay inside one document
        # Dense k-gram ids by composing (id of the (j)-gram prefix, next token) j times.
        gram = tokens[starts]
        for j in range(1, n):
            _, gram = np.unique(gram * len(words) + tokens[starts + j], return_inverse=True)
        gram = gram.reshape(-1).astype(np.int64)
        n_grams = int(gram.max()) + 1 if len(gram) else 0
        docs = doc_of[starts]
        # (k-gram, doc) pairs with counts, sorted k-gram-major then by doc: the CSR layout directly.
        pairs, counts = np.unique(gram * len(texts) + docs, return_counts=True)
        indptr = np.zeros(n_grams + 1, dtype=np.int64)
        np.cumsum(np.bincount(pairs // len(texts), minlength=n_grams), out=indptr[1:])
        _, first = np.unique(gram, return_index=True)  # one occurrence of each k-gram → its words
        flat_words = [words[t] for t in flat]  # python lists: numpy scalar indexing is slow here
        vocab = {tuple(flat_words[p: p + n]): g for g, p in enumerate(starts[first].tolist())}
        totals = np.bincount(docs, minlength=len(texts)).astype(np.int64)
        return cls(n, stem, vocab, indptr, pairs % len(texts), counts.astype(np.int64), totals)

    def overlaps(self, text: str) -> tuple[np.ndarray, int]:
        """``|G_k(text) ∩ G_k(doc)|`` (multiset) for every reference doc, and ``|G_k(text)|``."""
        grams = ngram_counts(tokenize(text, self.stem), self.n)
        n_pred = sum(grams.values())
        slices, mins = [], []
        for gram, count in grams.items():
            row = self.vocab.get(gram)
            if row is None:
                continue
            lo, hi = self.indptr[row], self.indptr[row + 1]
            slices.append(self.doc_ids[lo:hi])
            mins.append(np.minimum(self.counts[lo:hi], count))
        if not slices:
            return np.zeros(self.n_docs, dtype=np.int64), n_pred
        overlap = np.bincount(np.concatenate(slices), weights=np.concatenate(mins), minlength=self.n_docs)
        return overlap.astype(np.int64), n_pred  # sums of small ints: exact in float64

    def scores(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Precision, recall and F-measure against every reference (same float ops as rouge_score)."""
        overlap, n_pred = self.overlaps(text)
        ov = overlap.astype(np.float64)
        precision = ov / max(n_pred, 1)
        recall = ov / np.maximum(self.doc_totals, 1).astype(np.float64)
        denom = precision + recall
        with np.errstate(invalid="ignore", divide="ignore"):
            fmeasure = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
        return precision, recall, fmeasure

    def max_rouge(self, text: str) -> MaxRouge:
        precision, _, fmeasure = self.scores(text)
        p_doc, f_doc = int(np.argmax(precision)), int(np.argmax(fmeasure))  # argmax → first maximum
        return MaxRouge(float(precision[p_doc]), p_doc, float(fmeasure[f_doc]), f_doc,
                        int(np.count_nonzero(precision == precision[p_doc])))


def brute_force_max_rouge(text: str, references: list[str], n: int | str = 2, stem: bool = False) -> MaxRouge:
    """The reference answer: ``rouge_score`` against every reference in turn (slow; for tests/bench)."""
    from rouge_score.rouge_scorer import RougeScorer

    if n != ROUGE_L:
        _check_n(n)
    if not references:
        raise TinyinterpError("cannot compute a maximum ROUGE over an empty set of reference texts")
    key = f"rouge{n}"
    scorer = RougeScorer([key], use_stemmer=stem)
    best_p, best_p_doc, best_f, best_f_doc, ties = -1.0, 0, -1.0, 0, 0
    for doc, ref in enumerate(references):
        s = scorer.score(ref, text)[key]  # score(target, prediction)
        if s.precision > best_p:
            best_p, best_p_doc, ties = s.precision, doc, 1
        elif s.precision == best_p:
            ties += 1
        if s.fmeasure > best_f:
            best_f, best_f_doc = s.fmeasure, doc
    return MaxRouge(best_p, best_p_doc, best_f, best_f_doc, ties)
