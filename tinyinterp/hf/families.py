"""The architecture families, by name, and the rules that pick one: for a preset, for an HF ``config.json``
and for export. Each family's knowledge lives in its own module (:mod:`~tinyinterp.hf.gpt_neo`,
:mod:`~tinyinterp.hf.gpt2`, :mod:`~tinyinterp.hf.legacy`); this module only chooses between them."""

from __future__ import annotations

from typing import Any

from tinyinterp.hf.family import ConfigReader, Family, NotExpressibleError, UnsupportedArchitectureError
from tinyinterp.hf.gpt2 import GPT2_FAMILY
from tinyinterp.hf.gpt_neo import GPT_NEO
from tinyinterp.hf.legacy import LEGACY

FAMILIES: dict[str, Family] = {f.name: f for f in (GPT_NEO, GPT2_FAMILY, LEGACY)}
ARCHITECTURES = tuple(FAMILIES)
"""Names accepted by ``tinyinterp.models.zoo.preset_config(arch=)`` and ``train --arch``."""
HF_FAMILIES: tuple[Family, ...] = (GPT_NEO, GPT2_FAMILY)
"""Families with a Hugging Face class, in the order export tries them."""


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return FAMILIES[name]


def family_for_hf_config(hf: Any, source: str = "checkpoint") -> Family:
    """The family of a ``config.json`` by its ``model_type``; :class:`UnsupportedArchitectureError` for others."""
    model_type = ConfigReader(hf, source).raw("model_type")
    for fam in HF_FAMILIES:
        if model_type == fam.model_type:
            return fam
    raise UnsupportedArchitectureError(
        f"{source}: model_type {model_type!r} is not supported natively (GPT-Neo and GPT-2 are); "
        "load it with backend='bridge'"
    )


def hf_family_for(cfg) -> Family:
    """The HF family that expresses ``cfg`` (GPT-Neo first), or :class:`NotExpressibleError`."""
    for fam in HF_FAMILIES:
        if fam.accepts(cfg):
            return fam
    raise NotExpressibleError(
        "local (sliding-window) layers with scaled attention: GPT-Neo never divides scores by sqrt(d_head) "
        "and GPT-2 has no local layers"
    )


def hf_architecture_or_none(cfg) -> str | None:
    """``GPTNeoForCausalLM`` / ``GPT2LMHeadModel`` for ``cfg``, or ``None`` if no HF architecture expresses it."""
    try:
        return hf_family_for(cfg).hf_architecture
    except NotExpressibleError:
        return None
