"""What an architecture family is: the contract each adapter (gpt_neo, gpt2, legacy) fills in.

A family owns three things and nothing else: the :class:`~tinyinterp.models.config.ModelConfig` fields
that make a config one of its kind, how its Hugging Face ``config.json`` maps onto those fields
(with every value checked, so a hostile file is one line, not a traceback or a huge allocation),
and how one transformer block's weights are named and shaped on the Hugging Face side (both
directions). Embeddings and the final LayerNorm are the same for every family and live in
:mod:`tinyinterp.hf.convert`.

This module imports neither torch nor :mod:`tinyinterp.models.config` (configs are read by attribute), so
``ModelConfig.original_architecture`` can ask the families without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from tinyinterp.errors import ModelLoadError, TinyinterpError

# Sane upper bounds for sizes read from an untrusted config.json, checked before anything is built.
# Far above any model tinyinterp can look inside on one machine (GPT-2 XL: 48 layers, 1600 wide).
MAX_LAYERS = 1024
MAX_WIDTH = 65_536
MAX_VOCAB = 1 << 21
MAX_POSITIONS = 1 << 20

# Activations both formats know, by their HF names.
HF_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_new"}


class NotExpressibleError(TinyinterpError):
    """A model or checkpoint uses something the other format has no way to express."""


class UnsupportedArchitectureError(NotExpressibleError, ModelLoadError):
    """A well-formed checkpoint of an architecture (or option) tinyinterp does not import natively;
    the only error the loader answers with TransformerBridge."""


class BadCheckpointError(NotExpressibleError, ModelLoadError):
    """A damaged or hostile checkpoint: bad config values, missing/extra/mis-shaped/non-finite tensors,
    unreadable weight files. Never loaded by any backend."""


class ConfigReader:
    """Typed, bounded reads of one ``config.json`` (a dict or a ``PretrainedConfig``); every failure
    is a :class:`BadCheckpointError` naming the file and the key."""

    def __init__(self, hf: Any, source: str):
        self.hf, self.source = hf, source
        self.unsupported: list[str] = []
        """Well-formed options we cannot import natively (the bridge may); raised after the weights are checked."""

    def raw(self, key: str, default: Any = None) -> Any:
        hf = self.hf
        return hf.get(key, default) if isinstance(hf, Mapping) else getattr(hf, key, default)

    def bad(self, key: str, value: Any, expected: str) -> BadCheckpointError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return BadCheckpointError(f"{self.source}: config.json {key}={shown} must be {expected}")

    def int(self, key: str, hi: int, default: Any = None, lo: int = 1) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.bad(key, value, f"an integer from {lo} to {hi}")
        return value

    def float(self, key: str, default: float, lo: float = 0.0, hi: float = 1.0) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo < value <= hi:
            raise self.bad(key, value, f"a number in ({lo}, {hi}]")
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.bad(key, value, "true or false")
        return value

    def activation(self, key: str = "activation_function") -> str:
        value = self.raw(key, "gelu_new")
        if not isinstance(value, str):
            raise self.bad(key, value, "a string")
        if value not in HF_ACTIVATIONS:
            self.unsupported.append(f"activation {value!r} is not supported natively (gelu_new, gelu, relu are)")
            return "gelu_new"  # a stand-in so the sizes can still be checked against the weights
        return HF_ACTIVATIONS[value]


Take = Callable[[str], Any]  # an HF weight by name (without the "transformer." prefix); records its use


class Family:
    """One architecture family. Subclasses set the class attributes and override what they own."""

    name: str = ""
    """Our name (``tinyinterp.models.zoo`` presets, ``train --arch``)."""
    hf_architecture: str | None = None
    """The HF class it imports from and exports to; ``None`` if it has no HF form of its own."""
    model_type: str | None = None
    """``config.json``'s ``model_type``."""
    layers_key: str = ""
    """The ``config.json`` key holding the number of layers (named in error messages)."""

    def fields(self, n_layers: int, window_size: int = 256) -> dict:
        """The :class:`ModelConfig` fields that make a config of ``n_layers`` one of this family."""
        raise NotImplementedError

    def accepts(self, cfg) -> bool:
        """Whether this family's HF architecture expresses ``cfg`` (its options, not its weights)."""
        return False

    def config_fields(self, read: ConfigReader) -> dict:
        """:class:`ModelConfig` keyword arguments from a ``config.json`` (checked and bounded); options we
        cannot express go to ``read.unsupported``."""
        raise NotImplementedError

    def hf_config(self, cfg, common: dict) -> dict:
        """``config.json`` of ``cfg``; ``common`` holds the keys every family shares."""
        raise NotImplementedError

    def block_shapes(self, cfg, layer: int) -> dict[str, tuple[int, ...]]:
        """HF name (no ``transformer.`` prefix) → shape of every tensor of block ``layer``, LayerNorms included."""
        raise NotImplementedError

    def block_from_hf(self, take: Take, cfg, layer: int) -> dict:
        """Our parameters of block ``layer`` (``blocks.{l}.attn.qkv.weight`` …) from HF tensors."""
        raise NotImplementedError

    def block_to_hf(self, sd: dict, cfg, layer: int) -> dict:
        """HF tensors of block ``layer`` from our state dict ``sd`` (LayerNorms excluded)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<architecture family {self.name}>"


def layer_norm_shapes(h: str, d: int) -> dict[str, tuple[int, ...]]:
    """The two LayerNorms of an HF GPT block ``h`` (``h.{l}.``)."""
    return {h + f"ln_{i}.{p}": (d,) for i in (1, 2) for p in ("weight", "bias")}
