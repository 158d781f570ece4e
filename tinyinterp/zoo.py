"""Model zoo: named presets with the shapes of the paper's released checkpoints.

``tinystories-1m`` … ``tinystories-2l-33m`` mirror ``roneneldan/TinyStories-*``
(GPT-Neo shapes: 16 heads, d_mlp = 4·d_model, gelu_new, LayerNorm, context 512).
The ``test-*`` presets are tiny models for unit tests and CPU smoke runs.
Vocabulary size is not part of a preset: it comes from the tokenizer.

    >>> from tinyinterp.zoo import preset_config
    >>> preset_config("tinystories-1m", d_vocab=10_001).d_model
    64
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyinterp.config import ModelConfig


@dataclass(frozen=True)
class Preset:
    d_model: int
    n_layers: int
    n_heads: int = 16
    n_ctx: int = 512
    description: str = ""


PRESETS: dict[str, Preset] = {
    "tinystories-1m": Preset(64, 8, description="shape of roneneldan/TinyStories-1M"),
    "tinystories-3m": Preset(128, 8, description="shape of roneneldan/TinyStories-3M"),
    "tinystories-8m": Preset(256, 8, description="shape of roneneldan/TinyStories-8M"),
    "tinystories-28m": Preset(512, 8, description="shape of roneneldan/TinyStories-28M"),
    "tinystories-33m": Preset(768, 4, description="shape of roneneldan/TinyStories-33M"),
    "tinystories-1l-21m": Preset(1024, 1, description="shape of roneneldan/TinyStories-1Layer-21M"),
    "tinystories-2l-33m": Preset(1024, 2, description="shape of roneneldan/TinyStories-2Layers-33M"),
    # Tiny presets for tests and CPU smoke runs (not from the paper).
    "test-tiny": Preset(32, 2, n_heads=4, n_ctx=64, description="unit tests"),
    "test-small": Preset(64, 2, n_heads=4, n_ctx=128, description="fast CPU smoke runs"),
}

# The official checkpoints these presets mirror, for `tinyinterp info`.
OFFICIAL_CHECKPOINTS = {
    "tinystories-1m": "roneneldan/TinyStories-1M",
    "tinystories-3m": "roneneldan/TinyStories-3M",
    "tinystories-8m": "roneneldan/TinyStories-8M",
    "tinystories-28m": "roneneldan/TinyStories-28M",
    "tinystories-33m": "roneneldan/TinyStories-33M",
    "tinystories-1l-21m": "roneneldan/TinyStories-1Layer-21M",
    "tinystories-2l-33m": "roneneldan/TinyStories-2Layers-33M",
}


def preset_config(name: str, d_vocab: int, **overrides) -> ModelConfig:
    """Build the :class:`ModelConfig` of preset ``name`` for a tokenizer of ``d_vocab`` tokens."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    p = PRESETS[name]
    fields = dict(
        d_model=p.d_model, n_layers=p.n_layers, n_heads=p.n_heads, n_ctx=p.n_ctx,
        d_vocab=d_vocab, preset=name,
    )
    fields.update(overrides)
    return ModelConfig(**fields)
