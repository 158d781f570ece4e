"""Model configuration: one dataclass that fully describes a tinyinterp transformer.

The config is saved beside the weights as part of ``config.json`` in a run
directory (see :mod:`tinyinterp.rundir`), so every field must be JSON-friendly.
Presets with the shapes of the paper's released checkpoints live in
:mod:`tinyinterp.zoo`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ACTIVATIONS = ("gelu_new", "gelu", "relu")


@dataclass
class ModelConfig:
    """Shape and numerics of a GPT-style decoder with TransformerLens hook names."""

    d_model: int
    n_layers: int
    n_heads: int = 16
    d_mlp: int | None = None
    """Hidden width of the MLP; ``None`` means 4 * d_model, as in the paper's models."""
    d_vocab: int = 10_001
    """Set from the tokenizer when a run is created (10,000 kept BPE tokens + <|endoftext|>)."""
    n_ctx: int = 512
    act_fn: str = "gelu_new"
    layer_norm_eps: float = 1e-5
    init_range: float = 0.02
    """Std of the normal init, as GPT-2/GPT-Neo."""
    tie_embeddings: bool = False
    preset: str | None = None
    """Name of the zoo preset this config came from, for display only."""

    def __post_init__(self) -> None:
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        for name in ("d_model", "n_layers", "n_heads", "d_mlp", "d_vocab", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"ModelConfig: d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if self.act_fn not in ACTIVATIONS:
            raise ValueError(f"ModelConfig.act_fn must be one of {ACTIVATIONS}, got {self.act_fn!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def n_params(self, include_embeddings: bool = True) -> int:
        """Parameter count of the model this config builds (matches ``sum(p.numel())``)."""
        d, m = self.d_model, self.d_mlp
        per_block = (4 * d * d + 4 * d) + (2 * d * m + m + d) + 4 * d  # attn + mlp + 2 LayerNorms
        total = self.n_layers * per_block + 2 * d  # final LayerNorm
        if include_embeddings:
            total += self.d_vocab * d + self.n_ctx * d
            if not self.tie_embeddings:
                total += d * self.d_vocab + self.d_vocab
            else:
                total += self.d_vocab
        return total

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)
