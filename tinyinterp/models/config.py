"""Model configuration: one dataclass that fully describes a tinyinterp transformer.

The config is saved beside the weights as part of ``config.json`` in a run
directory (see :mod:`tinyinterp.runs.rundir`), so every field must be JSON-friendly.
Presets with the shapes of the paper's released checkpoints live in
:mod:`tinyinterp.models.zoo`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from tinyinterp.hf.families import hf_architecture_or_none

ACTIVATIONS = ("gelu_new", "gelu", "relu")
ATTENTION_TYPES = ("global", "local")
NORMALIZATION_TYPES = ("LN", "LNPre")


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
    """Unembedding shares the embedding matrix (GPT-Neo/GPT-2). Old runs: False."""
    attn_types: list[str] | None = None
    """Per layer ``"global"`` or ``"local"`` (sliding window); ``None`` means all global."""
    window_size: int = 256
    """Keys a local layer sees, the current token included (GPT-Neo: query i sees keys i-255 … i)."""
    use_attn_scale: bool = True
    """Divide attention scores by sqrt(d_head) (GPT-2). GPT-Neo does not: False."""
    qkv_bias: bool = True
    """q/k/v projections have biases (GPT-2). GPT-Neo's are bias-free: False."""
    unembed_bias: bool = True
    """The unembedding has a bias. GPT-Neo/GPT-2 have none: False."""
    normalization_type: str = "LN"
    """``"LN"``: LayerNorm with weight and bias; ``"LNPre"``: normalisation only, after
    :meth:`HookedTransformer.process_weights` folded the weights into the next layer."""
    preset: str | None = None
    """Name of the zoo preset this config came from, for display only."""

    # Not dataclass fields (no annotation): runtime switches and the fixed facts TransformerLens's
    # model-agnostic utilities read from ``model.cfg``. They are never saved with a run.
    use_attn_result = False
    """Compute ``blocks.{l}.attn.hook_result`` (batch, pos, head, d_model) — costs memory."""
    use_split_qkv_input = False
    """Give each head its own pre-``ln1`` copy of the residual for q, k and v
    (``blocks.{l}.attn.hook_q_input|hook_k_input|hook_v_input`` (batch, pos, head, d_model)), as
    TL's path patching needs. Slower; exclusive with ``use_attn_in``."""
    use_attn_in = False
    """One per-head pre-``ln1`` copy shared by q, k and v (``blocks.{l}.attn.hook_attn_in``)."""
    use_hook_mlp_in = False
    """Fire ``blocks.{l}.hook_mlp_in`` (batch, pos, d_model) on the MLP branch's input (pre-``ln2``)."""
    default_prepend_bos = True
    """``to_tokens`` prepends ``<|endoftext|>``: our corpora join stories with it, so a story start
    follows it in training, exactly like the official checkpoints (their BOS is their EOS)."""
    tokenizer_prepends_bos = False
    positional_embedding_type = "standard"
    n_key_value_heads = None
    attn_only = False
    gated_mlp = False
    uses_rms_norm = False
    final_rms = False
    num_experts = None
    experts_per_token = None
    n_devices = 1
    layers_block_type = None
    device = "cpu"
    dtype = torch.float32
    use_hook_tokens = False
    """Fire ``hook_tokens`` (batch, pos) on the input ids (TL's flag)."""
    # More fixed facts TL's demos and utilities read (``HookedTransformerConfig`` names):
    default_padding_side = "right"
    attention_dir = "causal"
    parallel_attn_mlp = False
    rotary_dim = None
    scale_attn_by_inverse_layer_idx = False
    use_normalization_before_and_after = False
    ungroup_grouped_query_attention = False
    tokenizer_name = None
    from_checkpoint = False
    checkpoint_index = None
    checkpoint_label_type = None
    checkpoint_value = None
    """Tokens trained on for a checkpoint (TL's ``checkpoint_value``); ``None`` when not known."""

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
        if self.attn_types is not None:
            self.attn_types = list(self.attn_types)
            if len(self.attn_types) != self.n_layers or not set(self.attn_types) <= set(ATTENTION_TYPES):
                raise ValueError(
                    f"ModelConfig.attn_types must list 'global'/'local' for each of the {self.n_layers} layers, "
                    f"got {self.attn_types!r}"
                )
        if not isinstance(self.window_size, int) or self.window_size <= 0:
            raise ValueError(f"ModelConfig.window_size must be a positive integer, got {self.window_size!r}")
        if self.normalization_type not in NORMALIZATION_TYPES:
            raise ValueError(
                f"ModelConfig.normalization_type must be one of {NORMALIZATION_TYPES}, got {self.normalization_type!r}"
            )

    def attn_type(self, layer: int) -> str:
        """``"global"`` or ``"local"`` for ``layer``."""
        return "global" if self.attn_types is None else self.attn_types[layer]

    @property
    def eps(self) -> float:
        """TransformerLens's name for ``layer_norm_eps``."""
        return self.layer_norm_eps

    @property
    def original_architecture(self) -> str:
        """The Hugging Face architecture this config exports as (TL's weight processing reads it to tell
        post-norm models apart); ``"HookedTransformer"`` for a config no HF architecture expresses."""
        return hf_architecture_or_none(self) or "HookedTransformer"

    @property
    def use_local_attn(self) -> bool:
        return "local" in (self.attn_types or [])

    @property
    def d_vocab_out(self) -> int:
        return self.d_vocab

    @property
    def model_name(self) -> str:
        return self.preset or "tinyinterp"

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def n_params(self, include_embeddings: bool = True) -> int:
        """Parameter count of the model this config builds (matches ``sum(p.numel())``)."""
        d, m = self.d_model, self.d_mlp
        attn = 4 * d * d + d + (3 * d if self.qkv_bias else 0)
        per_block = attn + (2 * d * m + m + d) + 4 * d  # attn + mlp + 2 LayerNorms
        total = self.n_layers * per_block + 2 * d  # final LayerNorm
        if include_embeddings:
            total += self.d_vocab * d + self.n_ctx * d
            if not self.tie_embeddings:
                total += d * self.d_vocab
            if self.unembed_bias:
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
