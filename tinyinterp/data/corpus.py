"""Tokenized corpora: documents -> one memory-mapped token array with document offsets, plus a validation split.

A corpus folder holds ``tokens.bin`` (all documents' tokens back to back, uint16 when the vocabulary
has < 65,536 tokens, else uint32), ``doc_offsets.npy`` (int64, n_docs + 1: document ``i`` is
``tokens[offsets[i]:offsets[i+1]]``) and ``meta.json`` (dtype, counts, the tokenizer fingerprint, the
source). ``meta.json`` is written atomically and LAST, so a folder without it is an unfinished build and
is never opened as a corpus. Documents never contain ``<|endoftext|>``; the trainer joins them with it.
Tokenizing streams documents in batches through the Rust tokenizer and appends to ``tokens.bin``, so the
corpus is never held in memory whole. What happens to bytes that are not UTF-8: see the "Bad bytes"
paragraph of :mod:`tinyinterp.data.corpus_readers` (refused by default, with the file, line and offset).

Example::

    train, val = prepare_corpus(default_sources().train, tok, "runs/demo/corpus", val_source=default_sources().val)
    train.document(0)[:10], val.n_tokens
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tinyinterp.data.corpus_readers import (  # noqa: F401  (re-exported: the corpus API lives here)
    DEFAULT_HUB_DATASET,
    EOT_TOKEN,
    Source,
    describe_source,
    iter_documents,
    split_documents,
)
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.errors import DataError
from tinyinterp.data.paths import data_dir
from tinyinterp.runs.layout import TRAIN_SPLIT, VAL_SPLIT
from tinyinterp.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

TOKENS_FILE = "tokens.bin"
OFFSETS_FILE = "doc_offsets.npy"
META_FILE = "meta.json"
FORMAT_VERSION = 1
_BATCH_DOCS = 1024  # documents per encode_batch call: big enough to keep the Rust threads busy


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size < 2**16 else np.uint32)


@dataclass
class TokenizedCorpus:
    """A finished corpus folder, memory-mapped (open it with :meth:`open`)."""

    path: Path
    tokens: np.ndarray  # np.memmap, read-only
    doc_offsets: np.ndarray  # int64, n_docs + 1
    meta: dict[str, Any] = field(repr=False)

    @classmethod
    def open(cls, path: str | Path) -> TokenizedCorpus:
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            what = "not found" if not path.exists() else f"has no {META_FILE} (an unfinished or different folder)"
            raise DataError(f"{path}: tokenized corpus {what}; build it with prepare_corpus / `tinyinterp train`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            dtype, n_tokens, n_docs = np.dtype(meta["dtype"]), int(meta["n_tokens"]), int(meta["n_docs"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{meta_path}: corrupt corpus metadata ({type(e).__name__}: {e}); rebuild the corpus") from None
        tokens_path = path / TOKENS_FILE
        expected = n_tokens * dtype.itemsize
        if not tokens_path.is_file() or tokens_path.stat().st_size != expected:
            raise DataError(f"{tokens_path}: missing or not {expected} bytes as {META_FILE} says; rebuild the corpus")
        try:
            offsets = np.load(path / OFFSETS_FILE, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path / OFFSETS_FILE}: unreadable ({type(e).__name__}); rebuild the corpus") from None
        if offsets.shape != (n_docs + 1,) or offsets[0] != 0 or offsets[-1] != n_tokens:
            raise DataError(
                f"{path / OFFSETS_FILE}: does not match {META_FILE} ({n_docs} docs, {n_tokens} tokens); rebuild the corpus"
            )
        tokens = np.memmap(tokens_path, dtype=dtype, mode="r", shape=(n_tokens,))
        return cls(path=path, tokens=tokens, doc_offsets=offsets.astype(np.int64, copy=False), meta=meta)

    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.doc_offsets[-1])

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.meta["tokenizer_fingerprint"]

    @property
    def source(self) -> str:
        return self.meta.get("source", "")

    def document(self, i: int) -> np.ndarray:
        if not -self.n_docs <= i < self.n_docs:
            raise IndexError(f"document {i} out of range: {self.path} has {self.n_docs} documents")
        i %= self.n_docs
        return self.tokens[self.doc_offsets[i] : self.doc_offsets[i + 1]]

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Refuse a tokenizer other than the one this corpus was built with."""
        if tokenizer.fingerprint() != self.tokenizer_fingerprint:
            raise DataError(
                f"{self.path}: corpus was tokenized with tokenizer {self.tokenizer_fingerprint[:12]}, not this one "
                f"({tokenizer.fingerprint()[:12]}); rebuild the corpus with this tokenizer or use the matching run"
            )

    def __len__(self) -> int:
        return self.n_docs


class _CorpusWriter:
    """Appends tokenized documents to ``out_dir/tokens.bin``; :meth:`finish` writes offsets and meta.json last."""

    def __init__(self, out_dir: Path, tokenizer: Tokenizer):
        self.out_dir, self.tokenizer = Path(out_dir), tokenizer
        self._created = [p for p in (self.out_dir, *self.out_dir.parents) if not p.exists()]  # deepest first
        self._finished = False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / META_FILE).unlink(missing_ok=True)  # from now on the folder is "unfinished"
        self.dtype = token_dtype(tokenizer.vocab_size)
        self._file = open(self.out_dir / TOKENS_FILE, "wb")
        self._offsets = array("q", [0])  # int64 offsets, compact: 8 bytes a document even for millions of them

    def add(self, docs: list[str]) -> int:
        """Tokenize and append ``docs``; returns the number of tokens written."""
        if not docs:
            return 0
        encoded = self.tokenizer.encode_batch(docs)
        lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
        flat = np.fromiter((i for ids in encoded for i in ids), dtype=self.dtype, count=int(lengths.sum()))
        flat.tofile(self._file)
        self._offsets.extend((self._offsets[-1] + np.cumsum(lengths)).tolist())
        return int(lengths.sum())

    @property
    def n_docs(self) -> int:
        return len(self._offsets) - 1

    def finish(self, source: str) -> TokenizedCorpus:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        n_docs = self.n_docs
        if n_docs == 0:
            raise DataError(f"{source}: no documents to tokenize (empty corpus)")
        np.save(self.out_dir / OFFSETS_FILE, np.frombuffer(self._offsets, dtype=np.int64))
        meta = {
            "format_version": FORMAT_VERSION,
            "dtype": self.dtype.name,
            "n_tokens": self._offsets[-1],
            "n_docs": n_docs,
            "vocab_size": self.tokenizer.vocab_size,
            "eot_id": self.tokenizer.eot_id,
            "tokenizer_fingerprint": self.tokenizer.fingerprint(),
            "source": source,
        }
        atomic_write_json(self.out_dir / META_FILE, meta)
        self._finished = True
        log.info("tokenized %s: %d documents, %d tokens -> %s", source, n_docs, self._offsets[-1], self.out_dir)
        return TokenizedCorpus.open(self.out_dir)

    def abort(self) -> None:
        """Close the file; after a failed build, remove what it wrote (and the folders it created)."""
        if not self._file.closed:
            self._file.close()
        if self._finished:
            return
        for name in (TOKENS_FILE, OFFSETS_FILE):
            (self.out_dir / name).unlink(missing_ok=True)
        for folder in self._created:
            try:
                folder.rmdir()  # only when empty: never deletes anything this writer did not make
            except OSError:
                break


def tokenize_corpus(
    docs: Iterable[str], tokenizer: Tokenizer, out_dir: str | Path, progress: bool = True, source: str = "<documents>"
) -> TokenizedCorpus:
    """Tokenize ``docs`` (any iterable of strings, e.g. :func:`iter_documents`) into the corpus folder ``out_dir``."""
    writer = _CorpusWriter(Path(out_dir), tokenizer)
    try:
        _feed(docs, lambda batch: [writer.add(batch)], progress, desc=f"tokenizing {Path(out_dir).name}")
        return writer.finish(source)
    finally:
        writer.abort()


def _feed(docs: Iterable[str], sink, progress: bool, desc: str) -> None:
    """Send ``docs`` (split on <|endoftext|>, empties dropped) to ``sink`` in batches under a tqdm bar."""
    it: Iterator[str] = (d for doc in docs for d in (split_documents(doc) if EOT_TOKEN in doc else [doc.strip()]) if d)
    with tqdm(desc=desc, unit="doc", disable=not progress) as bar:
        n_tokens = 0
        while batch := list(islice(it, _BATCH_DOCS)):
            n_tokens += sum(sink(batch))
            bar.update(len(batch))
            bar.set_postfix(tokens=n_tokens, refresh=False)


def is_validation_doc(text: str, val_fraction: float, seed: int = 0) -> bool:
    """Deterministic split by a hash of the text: the same document lands in the same split in any order."""
    h = int.from_bytes(hashlib.sha256(f"{seed}\x00{text}".encode("utf-8")).digest()[:8], "big")
    return h < val_fraction * 2**64


def prepare_corpus(
    train_source: Source | Iterable[Source],
    tokenizer: Tokenizer,
    out_dir: str | Path,
    val_source: Source | Iterable[Source] | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    max_docs: int | None = None,
    bad_bytes: str = "error",
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[TokenizedCorpus, TokenizedCorpus]:
    """Build ``out_dir/train`` and ``out_dir/val`` (reused when already built from the same inputs).

    With ``val_source`` the validation split is that source (split "validation" for hub datasets; a
    separator-free .txt is one stream, fine for token-level loss); otherwise ``val_fraction`` of the
    training documents, chosen by :func:`is_validation_doc`, are held out. ``max_docs`` caps the training
    documents read (and the validation ones, separately).
    """
    if val_source is None and not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction}: must be between 0 and 1 when no validation source is given")
    out_dir = Path(out_dir)
    train_desc = describe_source(train_source)
    if val_source is not None:
        val_desc = describe_source(val_source)
    else:
        val_desc = f"hash split of {train_desc} (fraction {val_fraction}, seed {seed})"
    if max_docs is not None:
        train_desc, val_desc = f"{train_desc} [first {max_docs} docs]", f"{val_desc} [first {max_docs} docs]"
    if not overwrite and (reused := _reuse(out_dir, tokenizer, train_desc, val_desc)) is not None:
        return reused
    docs = iter_documents(train_source, split="train", bad_bytes=bad_bytes, max_docs=max_docs)
    if val_source is None:
        return _split_by_hash(docs, tokenizer, out_dir, val_fraction, seed, progress, train_desc, val_desc)
    train = tokenize_corpus(docs, tokenizer, out_dir / TRAIN_SPLIT, progress, source=train_desc)
    val_docs = iter_documents(val_source, split="validation", bad_bytes=bad_bytes, max_docs=max_docs)
    val = tokenize_corpus(val_docs, tokenizer, out_dir / VAL_SPLIT, progress, source=val_desc)
    return train, val


def _split_by_hash(
    docs: Iterable[str], tokenizer: Tokenizer, out_dir: Path, val_fraction: float, seed: int, progress: bool,
    train_desc: str, val_desc: str,
) -> tuple[TokenizedCorpus, TokenizedCorpus]:
    """One pass over ``docs`` feeds both writers, so a streamed hub dataset is read only once."""
    train_w, val_w = _CorpusWriter(out_dir / TRAIN_SPLIT, tokenizer), _CorpusWriter(out_dir / VAL_SPLIT, tokenizer)

    def sink(batch: list[str]) -> list[int]:
        is_val = [is_validation_doc(d, val_fraction, seed) for d in batch]
        val_docs = [d for d, v in zip(batch, is_val) if v]
        train_docs = [d for d, v in zip(batch, is_val) if not v]
        return [val_w.add(val_docs), train_w.add(train_docs)]

    try:
        _feed(docs, sink, progress, desc="tokenizing train+val")
        if val_w.n_docs == 0:
            raise DataError(f"{train_desc}: too few documents to hold out {val_fraction:.0%}; pass a validation file or more data")
        return train_w.finish(train_desc), val_w.finish(val_desc)
    finally:  # newest writer first, so the folders the first one made are empty when it removes them
        val_w.abort()
        train_w.abort()


def _reuse(out_dir: Path, tokenizer: Tokenizer, train_desc: str, val_desc: str) -> tuple[TokenizedCorpus, TokenizedCorpus] | None:
    """The finished train/val corpora in ``out_dir`` if they were built from these sources with this tokenizer."""
    try:
        train, val = TokenizedCorpus.open(out_dir / TRAIN_SPLIT), TokenizedCorpus.open(out_dir / VAL_SPLIT)
    except DataError:
        return None
    if (train.source, val.source) != (train_desc, val_desc):
        return None
    if any(c.tokenizer_fingerprint != tokenizer.fingerprint() for c in (train, val)):
        return None
    log.info("reusing the tokenized corpus in %s (%d + %d tokens)", out_dir, train.n_tokens, val.n_tokens)
    return train, val


@dataclass
class CorpusSources:
    """Where the demo's text comes from: local shared files when present, else the hub dataset."""

    train: list[Source]
    val: Source | None


def default_sources() -> CorpusSources:
    """Local TinyStories heads under ``tinyinterp.data.paths.data_dir()`` if present, else ``roneneldan/TinyStories``."""
    root = data_dir(required=False)
    stories = root / "tinystories" if root is not None else None
    if stories is not None and stories.is_dir():
        train = [stories / "train-v1-hf-head.txt", stories / "train-v2-gpt4-head.txt"]
        val = stories / "validation-hf-head.unsegmented.txt"
        if all(p.is_file() for p in train):
            return CorpusSources(train=list(train), val=val if val.is_file() else None)
    return CorpusSources(train=[DEFAULT_HUB_DATASET], val=DEFAULT_HUB_DATASET)
