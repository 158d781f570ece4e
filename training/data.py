"""Batches for training: random windows of the corpus with documents joined by ``<|endoftext|>``.

A :class:`TokenizedCorpus` stores documents without the EOT token (tokens + ``doc_offsets``).
:class:`JoinedStream` is a zero-copy view of ``doc0 EOT doc1 EOT ... docN EOT`` that gathers
windows straight from the memmap, so a corpus of any size costs no extra memory.

:class:`BatchSampler` makes every batch a pure function of ``(seed, step)``: the global batch of
an optimizer step is drawn with a generator seeded from ``(seed, step)``, and (micro-step m,
rank r) takes rows ``[(m * world + r) * micro, ... + micro)``. Hence exact resume needs no
sampler state, and N DDP ranks with accumulation A see exactly the shards of the batch one
process would see with accumulation A * N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from tinyinterp.errors import DataError, TinyinterpError

_VAL_STREAM_TAG = 0x5EED_7A1  # separates the validation windows' seed from every training step's


class DocumentSource(Protocol):
    """What the sampler needs of a corpus; ``tinyinterp.data.corpus.TokenizedCorpus`` provides it."""

    tokens: np.ndarray  # (n_tokens,) uint16/uint32, documents back to back, no EOT
    doc_offsets: np.ndarray  # (n_docs + 1,) int64; document i is tokens[off[i]:off[i+1]]


@dataclass
class ArrayCorpus:
    """An in-memory document source (tests, small experiments)."""

    tokens: np.ndarray
    doc_offsets: np.ndarray

    @classmethod
    def from_documents(cls, docs: list[list[int]]) -> "ArrayCorpus":
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.fromiter((t for d in docs for t in d), dtype=np.int64, count=int(offsets[-1]))
        return cls(tokens=flat.astype(np.uint32), doc_offsets=offsets)


class JoinedStream:
    """The corpus as one stream ``doc0 EOT doc1 EOT ...``, indexed lazily."""

    def __init__(self, corpus: DocumentSource, eot_id: int, name: str = "corpus"):
        self.tokens = corpus.tokens
        offsets = np.asarray(corpus.doc_offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 2:
            raise DataError(f"{name}: has no documents; prepare a non-empty corpus")
        self.eot_id = int(eot_id)
        self.doc_offsets = offsets
        self.doc_lengths = np.diff(offsets)
        # Document d starts at stream position offsets[d] + d: one EOT follows each earlier document.
        self.joined_starts = offsets[:-1] + np.arange(len(offsets) - 1, dtype=np.int64)
        self.n_tokens = int(offsets[-1] + len(offsets) - 1)
        self.name = name

    def __len__(self) -> int:
        return self.n_tokens

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """Token ids at stream ``positions`` (any shape), as int64."""
        pos = np.asarray(positions, dtype=np.int64)
        doc = np.searchsorted(self.joined_starts, pos, side="right") - 1
        local = pos - self.joined_starts[doc]
        is_eot = local >= self.doc_lengths[doc]
        src = np.minimum(self.doc_offsets[doc] + local, max(len(self.tokens) - 1, 0))
        out = np.asarray(self.tokens[src.ravel()], dtype=np.int64).reshape(pos.shape) if len(self.tokens) else np.zeros(pos.shape, np.int64)
        out[is_eot] = self.eot_id
        return out

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """(len(starts), length) windows beginning at ``starts``."""
        return self.gather(np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length, dtype=np.int64))


def _seed_for(*keys: int) -> int:
    """A 63-bit seed that mixes the keys well (SeedSequence), stable across platforms and versions."""
    return int(np.random.SeedSequence([int(k) & 0xFFFF_FFFF for k in keys]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


class BatchSampler:
    """Deterministic global batches of ``(inputs, targets)`` windows, sharded over micro-steps and ranks."""

    def __init__(self, stream: JoinedStream, batch_size: int, seq_len: int, seed: int,
                 grad_accum: int = 1, rank: int = 0, world_size: int = 1):
        per_step = grad_accum * world_size
        if batch_size % per_step:
            raise TinyinterpError(
                f"--batch-size {batch_size} must be divisible by grad_accum x world_size = {grad_accum} x {world_size}"
            )
        if len(stream) < seq_len + 1:
            raise DataError(
                f"{stream.name}: only {len(stream)} tokens, fewer than one sequence of {seq_len + 1}; "
                "use more data or a smaller --seq-len"
            )
        self.stream, self.batch_size, self.seq_len, self.seed = stream, batch_size, seq_len, seed
        self.grad_accum, self.rank, self.world_size = grad_accum, rank, world_size
        self.micro_batch = batch_size // per_step
        self.n_starts = len(stream) - seq_len  # a window needs seq_len + 1 tokens

    def global_starts(self, step: int) -> np.ndarray:
        """Start positions of every sequence of optimizer step ``step`` (all ranks, all micro-steps)."""
        g = torch.Generator().manual_seed(_seed_for(self.seed, step))
        return torch.randint(0, self.n_starts, (self.batch_size,), generator=g).numpy()

    def micro_batch_for(self, step: int, micro: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's ``micro``-th (inputs, targets) of step ``step``: LongTensors (micro_batch, seq_len)."""
        row = (micro * self.world_size + self.rank) * self.micro_batch
        starts = self.global_starts(step)[row:row + self.micro_batch]
        window = torch.from_numpy(self.stream.windows(starts, self.seq_len + 1))  # (micro, seq_len + 1)
        return window[:, :-1].to(device), window[:, 1:].to(device)


def validation_batches(stream: JoinedStream, n_batches: int, batch_size: int, seq_len: int, seed: int,
                       rank: int = 0, world_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed validation windows (the same at every eval), this rank's share, in micro-batches.

    Windows are spread evenly over the stream (with a seeded random phase) so validation covers
    the whole held-out set rather than a random clump.
    """
    total = n_batches * batch_size
    if total == 0 or len(stream) < seq_len + 1:
        return []
    n_starts = len(stream) - seq_len
    phase = _seed_for(seed, _VAL_STREAM_TAG) % max(1, n_starts // total)
    starts = (phase + np.arange(total, dtype=np.int64) * max(1, n_starts // total)) % n_starts
    mine = starts[rank::world_size]
    per_batch = max(1, batch_size // world_size)
    out = []
    for i in range(0, len(mine), per_batch):
        window = torch.from_numpy(stream.windows(mine[i:i + per_batch], seq_len + 1))
        out.append((window[:, :-1], window[:, 1:]))
    return out
