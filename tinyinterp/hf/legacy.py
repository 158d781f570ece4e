"""The legacy family: tinyinterp 0.1's GPT-2-like model with an untied unembedding that has a bias (the
``ModelConfig`` defaults, so runs written before the architecture options existed load as they were).

It has no Hugging Face class of its own: it exports as GPT-2 (see :mod:`tinyinterp.hf.gpt2`) when its
unembedding bias is zero, since GPT-2's ``lm_head`` has none; a trained non-zero bias cannot be exported."""

from __future__ import annotations

from tinyinterp.hf.family import Family


class Legacy(Family):
    name = "legacy"

    def fields(self, n_layers: int, window_size: int = 256) -> dict:
        return dict(attn_types=None, use_attn_scale=True, qkv_bias=True, tie_embeddings=False, unembed_bias=True)


LEGACY = Legacy()
