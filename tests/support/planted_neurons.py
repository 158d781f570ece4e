"""Two planted neurons in a tiny model, so explanation tests know the right answer.

Planted neurons (layer 1, set by a permanent hook on ``blocks.1.mlp.hook_post``, so every analysis
sees them): ``NAME_NEURON`` fires 2.0 on character-name tokens and 0 elsewhere; ``RANDOM_NEURON``
is a hash of (token, previous token, position): random, but the same on every rerun of a window.
"""

from __future__ import annotations

import torch

from tests.support.story_world import NAMES

PLANT_LAYER, NAME_NEURON, RANDOM_NEURON = 1, 0, 1


def _hash01(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T) int64 -> (B, T) floats in [0, 1): an integer mix of token, previous token and position."""
    prev = torch.cat([torch.full_like(tokens[:, :1], 7), tokens[:, :-1]], dim=1)
    pos = torch.arange(tokens.shape[1]).expand_as(tokens)
    h = (tokens * 2654435761 + prev * 40503 + pos * 97 + 12345) & 0xFFFFFFFF
    for mult in (0x85EBCA6B, 0xC2B2AE35):
        h = ((h ^ (h >> 16)) * mult) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return h.float() / 2**32


def plant(model) -> None:
    name_ids = torch.tensor([i for i in range(model.tokenizer.vocab_size)
                             if model.tokenizer.token_str(i).strip() in NAMES])
    seen: dict[str, torch.Tensor] = {}

    def remember_tokens(emb, hook):
        # run_with_hooks calls forward() directly (no module pre-hooks), so recover the token ids
        # from hook_embed: each row is exactly one row of the embedding matrix.
        weight = model.embed.weight
        seen["tokens"] = torch.cdist(emb.reshape(-1, emb.shape[-1]), weight).argmin(-1).reshape(emb.shape[:-1])

    model.hook_embed.add_hook(remember_tokens, is_permanent=True)

    def hook(act, hook):
        tokens = seen["tokens"]
        act = act.clone()
        act[:, :, NAME_NEURON] = torch.isin(tokens, name_ids).float() * 2.0
        act[:, :, RANDOM_NEURON] = _hash01(tokens)
        return act

    model.blocks[PLANT_LAYER].mlp.hook_post.add_hook(hook, is_permanent=True)
