"""Brute-force reference for neuron-index tests: every MLP activation of every token of a tiny corpus."""

from __future__ import annotations

import numpy as np
import torch

from tinyinterp.interp.inputs import document_windows

CFG = dict(k=6, seq_len=24, batch_size=5, shard_docs=7)
"""A small NeuronIndexConfig (as keyword arguments) whose batches and shards split the tiny corpus unevenly."""


def brute_force(model, corpus, seq_len):
    """All MLP activations of every token (fine for a tiny corpus): (L, n_tokens, N) and positions."""
    acts, positions = [], []
    for _, start, length in document_windows(corpus, seq_len):
        tokens = torch.as_tensor(np.asarray(corpus.tokens[start : start + length], dtype=np.int64))[None]
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("mlp.hook_post"))
        acts.append(torch.stack([cache[f"blocks.{l}.mlp.hook_post"][0] for l in range(model.cfg.n_layers)]))
        positions.append(torch.arange(start, start + length))
    return torch.cat(acts, 1), torch.cat(positions)
