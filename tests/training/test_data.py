"""The batch sampler: documents joined with EOT, batches a pure function of (seed, step), exact DDP shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyinterp.errors import DataError, TinyinterpError
from training.data import ArrayCorpus, BatchSampler, JoinedStream, validation_batches

EOT = 99


@pytest.fixture
def corpus():
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 90, size=rng.integers(1, 30)).tolist() for _ in range(40)]
    return docs, ArrayCorpus.from_documents(docs)


def test_stream_is_documents_joined_with_eot(corpus):
    docs, source = corpus
    stream = JoinedStream(source, EOT)
    expected = np.array([t for d in docs for t in [*d, EOT]])
    assert len(stream) == len(expected)
    assert np.array_equal(stream.gather(np.arange(len(expected))), expected)
    starts = np.array([0, 5, len(expected) - 10])
    assert np.array_equal(stream.windows(starts, 10), np.stack([expected[s:s + 10] for s in starts]))


def test_batches_depend_only_on_seed_and_step(corpus):
    stream = JoinedStream(corpus[1], EOT)
    a = BatchSampler(stream, batch_size=6, seq_len=8, seed=1)
    b = BatchSampler(stream, batch_size=6, seq_len=8, seed=1)
    x1, y1 = a.micro_batch_for(5, 0)
    a.micro_batch_for(6, 0)
    x2, y2 = b.micro_batch_for(5, 0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 1:], y1[:, :-1])  # targets are inputs shifted by one
    assert not torch.equal(x1, a.micro_batch_for(7, 0)[0])
    assert not torch.equal(x1, BatchSampler(stream, 6, 8, seed=2).micro_batch_for(5, 0)[0])


def test_ranks_and_micro_steps_partition_the_global_batch(corpus):
    stream = JoinedStream(corpus[1], EOT)
    whole = BatchSampler(stream, batch_size=8, seq_len=8, seed=3).micro_batch_for(4, 0)[0]
    accum = torch.cat([BatchSampler(stream, 8, 8, 3, grad_accum=2).micro_batch_for(4, m)[0] for m in range(2)])
    ranks = torch.cat([BatchSampler(stream, 8, 8, 3, rank=r, world_size=2).micro_batch_for(4, 0)[0] for r in range(2)])
    both = torch.cat([BatchSampler(stream, 8, 8, 3, grad_accum=2, rank=r, world_size=2).micro_batch_for(4, m)[0]
                      for m in range(2) for r in range(2)])
    assert torch.equal(whole, accum) and torch.equal(whole, ranks) and torch.equal(whole, both)
    with pytest.raises(TinyinterpError, match="divisible"):
        BatchSampler(stream, batch_size=6, seq_len=8, seed=3, grad_accum=2, world_size=2)


def test_validation_windows_are_fixed_and_split_over_ranks(corpus):
    stream = JoinedStream(corpus[1], EOT)
    single = validation_batches(stream, n_batches=2, batch_size=4, seq_len=8, seed=0)
    assert len(single) == 2 and single[0][0].shape == (4, 8)
    again = validation_batches(stream, n_batches=2, batch_size=4, seq_len=8, seed=0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(single, again))
    shards = [validation_batches(stream, 2, 4, 8, 0, rank=r, world_size=2) for r in range(2)]
    rows = lambda batches: {tuple(row.tolist()) for x, _ in batches for row in x}  # noqa: E731
    assert rows(shards[0]) | rows(shards[1]) == rows(single) and not rows(shards[0]) & rows(shards[1])


def test_too_short_corpus_is_a_clear_error():
    stream = JoinedStream(ArrayCorpus.from_documents([[1, 2, 3]]), EOT, name="tiny.txt")
    with pytest.raises(DataError, match="tiny.txt: only 4 tokens"):
        BatchSampler(stream, batch_size=2, seq_len=16, seed=0)
