"""Convert between Hugging Face GPT-Neo / GPT-2 checkpoints and tinyinterp's ``ModelConfig`` + parameters.

Both directions are exact (only transposes, splits and concatenations — no arithmetic, so export →
import gives bit-identical weights). What each architecture looks like is owned by its family
(:mod:`tinyinterp.hf.gpt_neo`, :mod:`tinyinterp.hf.gpt2`); this module does the parts they share
(embeddings, final LayerNorm, tying, key prefixes) and checks a checkpoint against its config.

Our parameters (``HookedTransformer.state_dict()`` names): ``embed.weight``, ``pos_embed.weight``,
``blocks.{l}.ln1.w|b``, ``blocks.{l}.attn.qkv.weight`` (3·d_model, d_model, rows q | k | v),
``qkv.bias``, ``attn.out.weight|bias``, ``ln2.w|b``, ``mlp.fc_in.weight|bias``, ``mlp.fc_out.weight|bias``,
``ln_final.w|b``, ``unembed.weight`` (and ``unembed.bias``).

What cannot be expressed raises :class:`NotExpressibleError` with one line saying why, e.g. a non-zero
unembedding bias (neither HF class has one), local layers together with scaled attention or non-zero
q/k/v biases (GPT-Neo has neither; GPT-2 has no local layers), GPT-2's ``scale_attn_by_inverse_layer_idx``.
A model after ``process_weights`` (``LNPre``) is exported with unit LayerNorm weights and zero biases.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from tinyinterp.models.config import ModelConfig
from tinyinterp.hf.families import family_for_hf_config, hf_family_for
from tinyinterp.hf.family import (
    BadCheckpointError, ConfigReader, Family, NotExpressibleError, UnsupportedArchitectureError,
)
from tinyinterp.hf.gpt2 import GPT2_FAMILY
from tinyinterp.hf.gpt_neo import GPT_NEO as GPT_NEO_FAMILY

__all__ = [
    "GPT_NEO", "GPT2", "BadCheckpointError", "NotExpressibleError", "UnsupportedArchitectureError",
    "config_from_hf", "hf_architecture_for", "hf_config_dict", "hf_state_dict", "params_from_hf", "expected_shapes",
]

GPT_NEO = GPT_NEO_FAMILY.hf_architecture
GPT2 = GPT2_FAMILY.hf_architecture
_BY_ARCHITECTURE = {GPT_NEO: GPT_NEO_FAMILY, GPT2: GPT2_FAMILY}
# Non-persistent attention-mask buffers older checkpoints still carry; they are not weights.
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".attn.attention.bias", ".attn.attention.masked_bias")
_LAYER_KEY = re.compile(r"^h\.(\d{1,9})\.")


# ----- configs ---------------------------------------------------------------------------------


def config_from_hf(hf: Any, source: str = "config.json") -> ModelConfig:
    """Our :class:`ModelConfig` for an HF ``config.json`` (a dict or a ``PretrainedConfig``).

    Every value is type- and range-checked (:class:`BadCheckpointError`); a well-formed config of another
    architecture, or with an option we cannot express, raises :class:`UnsupportedArchitectureError`."""
    fam = family_for_hf_config(hf, source)
    read = ConfigReader(hf, source)
    fields = fam.config_fields(read)
    if read.unsupported:
        raise UnsupportedArchitectureError(f"{source}: {read.unsupported[0]}")
    return ModelConfig(**fields)


def hf_architecture_for(cfg: ModelConfig) -> str:
    """``GPTNeoForCausalLM`` or ``GPT2LMHeadModel`` for our config, or :class:`NotExpressibleError`."""
    return hf_family_for(cfg).hf_architecture


def hf_config_dict(cfg: ModelConfig, arch: str, eot_id: int | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``cfg`` as architecture ``arch`` (see :func:`hf_architecture_for`)."""
    from transformers import CONFIG_MAPPING

    fam = _BY_ARCHITECTURE[arch]
    tokens = {} if eot_id is None else {"bos_token_id": eot_id, "eos_token_id": eot_id}
    common = dict(
        vocab_size=cfg.d_vocab, activation_function=cfg.act_fn, layer_norm_epsilon=cfg.layer_norm_eps,
        initializer_range=cfg.init_range, tie_word_embeddings=cfg.tie_embeddings, **tokens,
    )
    kwargs = fam.hf_config(cfg, common)
    hf = CONFIG_MAPPING[kwargs.pop("model_type")](**kwargs)
    hf.architectures = [arch]
    return hf.to_dict()


# ----- state dicts -----------------------------------------------------------------------------


def _is_zero(t: torch.Tensor | None) -> bool:
    return t is None or not bool(t.detach().abs().max() > 0)


def hf_state_dict(model) -> tuple[str, dict[str, torch.Tensor]]:
    """``(architecture, HF state dict)`` of our ``HookedTransformer``; tied ``lm_head.weight`` is left out,
    as ``save_pretrained`` does. Raises :class:`NotExpressibleError` for what HF cannot hold."""
    cfg = model.cfg
    processed = cfg.normalization_type == "LNPre"
    why_processed = (
        "process_weights() folded the final LayerNorm's bias into it; export the model before processing "
        "(load it again without process_weights)"
    )
    fam = hf_family_for(cfg)
    arch = fam.hf_architecture
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    if not _is_zero(sd.get("unembed.bias")):
        raise NotExpressibleError(
            f"the unembedding has a non-zero bias, which {arch} cannot hold (GPT-Neo/GPT-2 heads are bias-free); "
            + (why_processed if processed else "this run was trained with the legacy architecture")
        )
    if fam is GPT_NEO_FAMILY and not all(_is_zero(sd.get(f"blocks.{l}.attn.qkv.bias")) for l in range(cfg.n_layers)):
        raise NotExpressibleError(
            "local (sliding-window) layers with non-zero q/k/v biases: GPT-Neo's q/k/v have no bias and GPT-2 "
            "has no local layers" + ("; process_weights() created them (export the model before processing)" if processed else "")
        )
    d = cfg.d_model
    out: dict[str, torch.Tensor] = {"wte.weight": sd["embed.weight"], "wpe.weight": sd["pos_embed.weight"]}
    ones, zeros = torch.ones(d, dtype=sd["embed.weight"].dtype), torch.zeros(d, dtype=sd["embed.weight"].dtype)

    def ln(ours: str, theirs: str) -> None:  # LNPre (folded) models export identity LayerNorms
        out[theirs + ".weight"] = sd.get(ours + ".w", ones)
        out[theirs + ".bias"] = sd.get(ours + ".b", zeros)

    for l in range(cfg.n_layers):
        ln(f"blocks.{l}.ln1", f"h.{l}.ln_1")
        ln(f"blocks.{l}.ln2", f"h.{l}.ln_2")
        out.update(fam.block_to_hf(sd, cfg, l))
    ln("ln_final", "ln_f")
    hf = {"transformer." + k: v for k, v in out.items()}
    if not cfg.tie_embeddings:
        hf["lm_head.weight"] = sd["unembed.weight"]
    return arch, {k: v.contiguous() for k, v in hf.items()}


def _family(arch: str | Family) -> Family:
    return arch if isinstance(arch, Family) else _BY_ARCHITECTURE[arch]


def _strip(hf_keys) -> dict[str, str]:
    """Our view of the HF names: ``transformer.`` prefix dropped, mask buffers left out → original name."""
    return {k.removeprefix("transformer."): k for k in hf_keys if not k.endswith(_BUFFER_SUFFIXES)}


def expected_shapes(cfg: ModelConfig, arch: str | Family) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of ``cfg`` holds (HF names without ``transformer.``) → its shape;
    ``lm_head.weight`` only when untied."""
    fam, d = _family(arch), cfg.d_model
    shapes = {"wte.weight": (cfg.d_vocab, d), "wpe.weight": (cfg.n_ctx, d), "ln_f.weight": (d,), "ln_f.bias": (d,)}
    for layer in range(cfg.n_layers):
        shapes.update(fam.block_shapes(cfg, layer))
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (cfg.d_vocab, d)
    return shapes


def check_against_config(header: dict[str, tuple[str, tuple[int, ...]]], cfg: ModelConfig, arch: str | Family,
                         source: str) -> None:
    """Refuse, in one line naming them, the tensors of ``header`` (name → (dtype, shape), as read from the
    weight files without loading them) that ``cfg`` does not expect, lacks, or expects in another shape
    or a non-float dtype. Layer count first, so a config claiming a billion layers costs nothing."""
    fam = _family(arch)
    names = _strip(header)
    layers_in_file = {int(m.group(1)) for k in names if (m := _LAYER_KEY.match(k))}
    n_file = max(layers_in_file) + 1 if layers_in_file else 0
    if cfg.n_layers != n_file:
        raise BadCheckpointError(
            f"{source}: config.json says {fam.layers_key}={cfg.n_layers} but the weights hold {n_file} layers"
        )
    expected = expected_shapes(cfg, fam)
    tied_head = cfg.tie_embeddings and "lm_head.weight" in names  # HF re-ties it to wte on load; shape must fit
    if tied_head:
        expected["lm_head.weight"] = (cfg.d_vocab, cfg.d_model)
    missing = sorted(set(expected) - set(names))
    extra = sorted(set(names) - set(expected))
    wrong = sorted(k for k in expected if k in names and tuple(header[names[k]][1]) != expected[k])
    not_float = sorted(k for k in expected if k in names and header[names[k]][0] not in _FLOAT_DTYPES)
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if extra:
        problems.append(f"unexpected {_few(extra)}")
    if wrong:
        k = wrong[0]
        problems.append(f"mis-shaped {_few(wrong)} ({k}: {list(header[names[k]][1])}, config.json implies {list(expected[k])})")
    if not_float:
        problems.append(f"non-float {_few(not_float)} ({header[names[not_float[0]]][0]})")
    if problems:
        raise BadCheckpointError(f"{source}: weights do not match config.json ({fam.hf_architecture}): " + "; ".join(problems))


# safetensors dtype names (as in file headers) and torch's, for the float types a weight may have.
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "float16", "bfloat16", "float32", "float64"}


def _few(names: list[str], n: int = 3) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(repr(x) for x in names[:n]) + more


def params_from_hf(hf_sd: dict[str, torch.Tensor], cfg: ModelConfig, arch: str | Family,
                   source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Our ``HookedTransformer.state_dict()`` from an HF state dict of architecture ``arch``.

    Accepts keys with or without the ``transformer.`` prefix (the original ``gpt2`` files have none);
    attention-mask buffers are ignored; any other unknown or missing key is an error naming it."""
    fam = _family(arch)
    sd = {key: hf_sd[orig] for key, orig in _strip(hf_sd).items()}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise BadCheckpointError(f"{source}: missing weight {key!r} for {fam.hf_architecture}")
        used.add(key)
        return sd[key]

    out = {"embed.weight": take("wte.weight"), "pos_embed.weight": take("wpe.weight")}
    for l in range(cfg.n_layers):
        p, h = f"blocks.{l}.", f"h.{l}."
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            out[p + ours + ".w"], out[p + ours + ".b"] = take(h + theirs + ".weight"), take(h + theirs + ".bias")
        out.update(fam.block_from_hf(take, cfg, l))
    out["ln_final.w"], out["ln_final.b"] = take("ln_f.weight"), take("ln_f.bias")
    if cfg.tie_embeddings:
        used.add("lm_head.weight")  # HF re-ties it to wte on load, whatever the file holds
        out["unembed.weight"] = out["embed.weight"]
    else:
        out["unembed.weight"] = take("lm_head.weight")
    unknown = sorted(set(sd) - used)
    if unknown:
        raise BadCheckpointError(f"{source}: unexpected weights for {fam.hf_architecture}: {unknown[:3]}")
    if out["pos_embed.weight"].shape[0] != cfg.n_ctx or out["embed.weight"].shape != (cfg.d_vocab, cfg.d_model):
        raise BadCheckpointError(f"{source}: embedding shapes do not match config.json")
    return {k: v.contiguous() for k, v in out.items()}
