"""What a sparse dictionary is and how it is trained: one dataclass each, validated on creation.

A dictionary reads activations at ``hook_in`` (a TransformerLens hook name of the model) and
reconstructs the activations at ``hook_out``: the same hook for a sparse autoencoder (SAE), the
MLP's output for a transcoder. Transcoders read ``blocks.{l}.ln2.hook_normalized`` — the MLP's own
input, after its LayerNorm — rather than ``hook_resid_mid``: the transcoder then learns the MLP's
function and nothing else (the normalisation is the model's, frozen in attribution graphs), which is
what circuit tracing needs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from tinyinterp.errors import TinyinterpError

KINDS = ("sae", "transcoder")
ACTIVATIONS = ("topk", "relu")


class DictionaryError(TinyinterpError):
    """A dictionary file, configuration or hook that cannot be used."""


def transcoder_hooks(layer: int) -> tuple[str, str]:
    """(input, output) hooks of the transcoder that replaces block ``layer``'s MLP."""
    return f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"


@dataclass
class DictionaryConfig:
    """Shape and meaning of one TopK dictionary (saved as ``cfg.json`` beside its weights)."""

    kind: str
    """"sae" (reconstruct ``hook_in``) or "transcoder" (predict ``hook_out`` from ``hook_in``)."""
    hook_in: str
    hook_out: str
    d_in: int
    d_out: int
    d_sae: int
    """Number of features (the dictionary's width)."""
    k: int
    """Features active per token (TopK)."""
    model_name: str = ""
    input_scale: float = 1.0
    """Training multiplied inputs by this (unit mean norm); already folded into the saved weights."""
    output_scale: float = 1.0
    activation: str = "topk"
    """"topk" (ours, sparsify's) or "relu" (TinyModel's sparse MLPs, SAELens's "standard"): a ReLU
    dictionary keeps every positive pre-activation, so its ``k`` is its width (no cap)."""
    apply_b_dec_to_input: bool | None = None
    """Centre the input on the decoder bias before encoding; None: yes for an SAE, no for a transcoder."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DictionaryError(f"dictionary kind must be one of {KINDS}, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise DictionaryError(f"dictionary activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.apply_b_dec_to_input is None:
            self.apply_b_dec_to_input = self.kind == "sae"
        if not isinstance(self.apply_b_dec_to_input, bool):
            raise DictionaryError(f"dictionary apply_b_dec_to_input must be true or false, got {self.apply_b_dec_to_input!r}")
        for name in ("d_in", "d_out", "d_sae", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DictionaryError(f"dictionary {name} must be a positive integer, got {value!r}")
        if self.k > self.d_sae:
            raise DictionaryError(f"--k {self.k} is larger than the dictionary width {self.d_sae}")
        if self.activation == "relu" and self.k != self.d_sae:
            raise DictionaryError(f"a ReLU dictionary has no TopK cap: its k must be its width {self.d_sae}, got {self.k}")
        if self.kind == "sae" and (self.hook_in != self.hook_out or self.d_in != self.d_out):
            raise DictionaryError(f"an SAE reconstructs its own hook; got {self.hook_in} -> {self.hook_out}")
        for name in ("input_scale", "output_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise DictionaryError(f"dictionary {name} must be a positive finite number, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """How a dictionary is trained (TopK recipe of Gao et al. 2024: AuxK loss, unit-norm decoder)."""

    tokens: int = 2_000_000
    """Activation vectors (tokens) to train on."""
    batch_tokens: int = 4096
    lr: float | None = None
    """None: 2e-4 / sqrt(d_sae / 2**14), the paper's scaling rule."""
    aux_k: int | None = None
    """Dead features used by the AuxK loss; None: d_out // 2 (the paper's heuristic)."""
    aux_coef: float = 1 / 32
    dead_after_tokens: int = 200_000
    """A feature that has not fired for this many tokens is dead (and feeds the AuxK loss)."""
    seq_len: int = 128
    """Window of the model's forward passes that produce activations."""
    model_batch: int = 16
    buffer_tokens: int = 65_536
    """Shuffle buffer: activations from many windows are mixed before batching (fixed memory)."""
    checkpoint_every: int = 200
    """Steps between checkpoints (a killed training resumes from the last one)."""
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tokens", "batch_tokens", "seq_len", "model_batch", "buffer_tokens", "checkpoint_every",
                     "dead_after_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DictionaryError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise DictionaryError(f"--lr must be a positive number, got {self.lr!r}")
        if self.buffer_tokens < self.batch_tokens:
            raise DictionaryError(f"--buffer-tokens {self.buffer_tokens} must be at least --batch-tokens {self.batch_tokens}")

    def learning_rate(self, d_sae: int) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(d_sae / 2**14)
