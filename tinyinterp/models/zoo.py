"""Model zoo: named presets with the configurations of the paper's released checkpoints.

``tinystories-1m`` … ``tinystories-2l-33m`` reproduce ``roneneldan/TinyStories-*`` (GPTNeoForCausalLM):
16 heads, d_mlp = 4·d_model (``intermediate_size: null``), gelu_new, LayerNorm eps 1e-5,
2,048 positions (``max_position_embeddings``; the paper trained on 512-token windows), attention
layers alternating global / local with a 256-token window starting with global, no division of
attention scores by sqrt(d_head), bias-free q/k/v (the output projection has a bias), and an
unembedding tied to the embedding without a bias. Sources: the checkpoints' ``config.json`` as quoted
in public code (TinyStories-33M: hidden 768, 4 layers, ``attention_types [[["global","local"],2]]``);
the paper's table for the other shapes. Uncertain: ``TinyStories-1Layer-21M`` has one layer, which
GPT-Neo requires to be listed alone, so we take it as ``["global"]`` (an alternating pattern cannot
start otherwise); its window never matters for windows up to 256 tokens.
Vocabulary size is not part of a preset: it comes from the tokenizer (official: the 50,257-token
GPT-Neo BPE; ours: its 10,000 most frequent tokens + ``<|endoftext|>``, as the paper describes).

Architectures (``arch``): ``"gpt-neo"`` as above; ``"gpt2"`` (scaled attention, q/k/v biases, tied
unembedding without bias, all layers global); ``"legacy"`` — tinyinterp 0.1's GPT-2-like model with
an untied unembedding that has a bias (the ``ModelConfig`` defaults, so runs written before the
architecture options existed keep loading as they were). The ``test-*`` presets are tiny models for
unit tests and CPU smoke runs; ``test-neo`` is a GPT-Neo one with an 8-token window, so its local
layer differs from a global one even on short test inputs.

    >>> from tinyinterp.models.zoo import preset_config
    >>> preset_config("tinystories-1m", d_vocab=10_001).d_model
    64
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyinterp.models.config import ModelConfig
from tinyinterp.hf.families import ARCHITECTURES, family


@dataclass(frozen=True)
class Preset:
    d_model: int
    n_layers: int
    n_heads: int = 16
    n_ctx: int = 2048
    arch: str = "gpt-neo"
    window_size: int = 256
    description: str = ""
    official: str | None = None
    """The hub name of the released checkpoint this preset mirrors (the one list of official names)."""

    def __post_init__(self) -> None:
        if not self.description and self.official:
            object.__setattr__(self, "description", f"shape of {self.official}")


def arch_fields(arch: str, n_layers: int, window_size: int = 256) -> dict:
    """The :class:`ModelConfig` fields that make a config one of :data:`ARCHITECTURES` (owned by the
    family adapters in :mod:`tinyinterp.hf`)."""
    return family(arch).fields(n_layers, window_size)


PRESETS: dict[str, Preset] = {
    "tinystories-1m": Preset(64, 8, official="roneneldan/TinyStories-1M"),
    "tinystories-3m": Preset(128, 8, official="roneneldan/TinyStories-3M"),
    "tinystories-8m": Preset(256, 8, official="roneneldan/TinyStories-8M"),
    "tinystories-28m": Preset(512, 8, official="roneneldan/TinyStories-28M"),
    "tinystories-33m": Preset(768, 4, official="roneneldan/TinyStories-33M"),
    "tinystories-1l-21m": Preset(1024, 1, official="roneneldan/TinyStories-1Layer-21M"),
    "tinystories-2l-33m": Preset(1024, 2, official="roneneldan/TinyStories-2Layers-33M"),
    # Tiny presets for tests and CPU smoke runs (not from the paper).
    "test-tiny": Preset(32, 2, n_heads=4, n_ctx=64, arch="legacy", description="unit tests"),
    "test-neo": Preset(32, 2, n_heads=4, n_ctx=64, window_size=8, description="unit tests, GPT-Neo with an 8-token window"),
    "test-small": Preset(64, 2, n_heads=4, n_ctx=128, arch="legacy", description="fast CPU smoke runs"),
}

# Preset name → the official checkpoint it mirrors (`tinyinterp info`, the app's "load an official checkpoint").
OFFICIAL_CHECKPOINTS = {name: p.official for name, p in PRESETS.items() if p.official}


def preset_config(name: str, d_vocab: int, arch: str | None = None, **overrides) -> ModelConfig:
    """Build the :class:`ModelConfig` of preset ``name`` for a tokenizer of ``d_vocab`` tokens.

    ``arch`` overrides the preset's architecture (``"gpt-neo"``, ``"gpt2"``, ``"legacy"``).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    p = PRESETS[name]
    n_layers = overrides.get("n_layers", p.n_layers)
    fields = dict(
        d_model=p.d_model, n_layers=n_layers, n_heads=p.n_heads, n_ctx=p.n_ctx,
        d_vocab=d_vocab, preset=name, **arch_fields(arch or p.arch, n_layers, p.window_size),
    )
    fields.update(overrides)
    return ModelConfig(**fields)
