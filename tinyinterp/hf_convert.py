"""Convert between Hugging Face GPT-Neo / GPT-2 checkpoints and tinyinterp's ``ModelConfig`` + parameters.

Two architectures, both directions, exact (only transposes, splits and concatenations — no arithmetic,
so export → import gives bit-identical weights):

* ``GPTNeoForCausalLM`` (the official ``roneneldan/TinyStories-*``): q/k/v projections without bias,
  ``out_proj`` with bias, attention scores NOT divided by sqrt(d_head), per-layer ``global``/``local``
  attention (``attention_types`` run-length encoded, ``window_size``), ``lm_head`` (no bias), usually tied.
* ``GPT2LMHeadModel`` (``gpt2`` … ``gpt2-xl``): ``Conv1D`` weights stored (in, out), fused ``c_attn``
  with bias, ``scale_attn_weights``, all layers global, ``lm_head`` (no bias), usually tied.

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

from typing import Any

import torch

from tinyinterp.config import ModelConfig
from tinyinterp.errors import TinyinterpError

GPT_NEO = "GPTNeoForCausalLM"
GPT2 = "GPT2LMHeadModel"
_HF_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_new"}
# Non-persistent attention-mask buffers older checkpoints still carry; they are not weights.
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".attn.attention.bias", ".attn.attention.masked_bias")


class NotExpressibleError(TinyinterpError):
    """A model or checkpoint uses something the other format has no way to express."""


# ----- configs ---------------------------------------------------------------------------------


def _get(hf: Any, key: str, default: Any = None) -> Any:
    return hf.get(key, default) if isinstance(hf, dict) else getattr(hf, key, default)


def _architecture(hf: Any) -> str:
    model_type = _get(hf, "model_type")
    if model_type == "gpt_neo":
        return GPT_NEO
    if model_type == "gpt2":
        return GPT2
    raise NotExpressibleError(
        f"model_type {model_type!r} is not supported natively (GPT-Neo and GPT-2 are); load it with backend='bridge'"
    )


def _activation(name: str, source: str) -> str:
    if name not in _HF_ACTIVATIONS:
        raise NotExpressibleError(f"{source}: activation {name!r} is not supported (gelu_new, gelu, relu are)")
    return _HF_ACTIVATIONS[name]


def expand_attention_types(attention_types: list) -> list[str]:
    """GPT-Neo's run-length ``[[["global", "local"], 4]]`` → one entry per layer."""
    layers: list[str] = []
    for pattern, repeat in attention_types:
        layers.extend(list(pattern) * int(repeat))
    return layers


def compress_attention_types(layers: list[str]) -> list:
    """One entry per layer → GPT-Neo's run-length form, using the shortest repeating pattern."""
    n = len(layers)
    for size in range(1, n + 1):
        if n % size == 0 and layers[:size] * (n // size) == layers:
            return [[layers[:size], n // size]]
    raise AssertionError("unreachable: the whole list always repeats once")


def config_from_hf(hf: Any) -> ModelConfig:
    """Our :class:`ModelConfig` for an HF ``config.json`` (a dict or a ``PretrainedConfig``)."""
    arch = _architecture(hf)
    if arch == GPT_NEO:
        d_model, n_layers = _get(hf, "hidden_size"), _get(hf, "num_layers")
        attn_types = expand_attention_types(_get(hf, "attention_types"))
        if len(attn_types) != n_layers:
            raise NotExpressibleError(f"GPT-Neo config: attention_types lists {len(attn_types)} layers, num_layers is {n_layers}")
        return ModelConfig(
            d_model=d_model, n_layers=n_layers, n_heads=_get(hf, "num_heads"), d_mlp=_get(hf, "intermediate_size"),
            d_vocab=_get(hf, "vocab_size"), n_ctx=_get(hf, "max_position_embeddings"),
            act_fn=_activation(_get(hf, "activation_function", "gelu_new"), "GPT-Neo config"),
            layer_norm_eps=_get(hf, "layer_norm_epsilon", 1e-5), init_range=_get(hf, "initializer_range", 0.02),
            tie_embeddings=bool(_get(hf, "tie_word_embeddings", True)),
            attn_types=attn_types, window_size=int(_get(hf, "window_size", 256)),
            use_attn_scale=False, qkv_bias=False, unembed_bias=False,
        )
    if _get(hf, "scale_attn_by_inverse_layer_idx", False):
        raise NotExpressibleError("GPT-2 config: scale_attn_by_inverse_layer_idx=true has no tinyinterp equivalent")
    return ModelConfig(
        d_model=_get(hf, "n_embd"), n_layers=_get(hf, "n_layer"), n_heads=_get(hf, "n_head"), d_mlp=_get(hf, "n_inner"),
        d_vocab=_get(hf, "vocab_size"), n_ctx=_get(hf, "n_positions"),
        act_fn=_activation(_get(hf, "activation_function", "gelu_new"), "GPT-2 config"),
        layer_norm_eps=_get(hf, "layer_norm_epsilon", 1e-5), init_range=_get(hf, "initializer_range", 0.02),
        tie_embeddings=bool(_get(hf, "tie_word_embeddings", True)),
        attn_types=None, use_attn_scale=bool(_get(hf, "scale_attn_weights", True)), qkv_bias=True, unembed_bias=False,
    )


def hf_architecture_for(cfg: ModelConfig) -> str:
    """``GPTNeoForCausalLM`` or ``GPT2LMHeadModel`` for our config, or :class:`NotExpressibleError`."""
    has_local = cfg.attn_types is not None and "local" in cfg.attn_types
    if not has_local:
        return GPT_NEO if not cfg.use_attn_scale and not cfg.qkv_bias else GPT2
    if cfg.use_attn_scale:
        raise NotExpressibleError(
            "local (sliding-window) layers with scaled attention: GPT-Neo never divides scores by sqrt(d_head) "
            "and GPT-2 has no local layers"
        )
    return GPT_NEO


def hf_config_dict(cfg: ModelConfig, arch: str, eot_id: int | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``cfg`` as architecture ``arch`` (see :func:`hf_architecture_for`)."""
    from transformers import GPT2Config, GPTNeoConfig

    tokens = {} if eot_id is None else {"bos_token_id": eot_id, "eos_token_id": eot_id}
    common = dict(
        vocab_size=cfg.d_vocab, activation_function=cfg.act_fn, layer_norm_epsilon=cfg.layer_norm_eps,
        initializer_range=cfg.init_range, tie_word_embeddings=cfg.tie_embeddings, **tokens,
    )
    if arch == GPT_NEO:
        layers = [cfg.attn_type(layer) for layer in range(cfg.n_layers)]
        hf = GPTNeoConfig(
            hidden_size=cfg.d_model, num_layers=cfg.n_layers, num_heads=cfg.n_heads, intermediate_size=cfg.d_mlp,
            max_position_embeddings=cfg.n_ctx, attention_types=compress_attention_types(layers),
            window_size=cfg.window_size, embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0, **common,
        )
    else:
        hf = GPT2Config(
            n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.d_mlp, n_positions=cfg.n_ctx,
            scale_attn_weights=cfg.use_attn_scale, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common,
        )
    hf.architectures = [arch]
    return hf.to_dict()


# ----- state dicts -----------------------------------------------------------------------------


def _is_zero(t: torch.Tensor | None) -> bool:
    return t is None or not bool(t.detach().abs().max() > 0)


def hf_state_dict(model) -> tuple[str, dict[str, torch.Tensor]]:
    """``(architecture, HF state dict)`` of our ``HookedTransformer``; tied ``lm_head.weight`` is left out,
    as ``save_pretrained`` does. Raises :class:`NotExpressibleError` for what HF cannot hold."""
    cfg = model.cfg
    arch = hf_architecture_for(cfg)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    if not _is_zero(sd.get("unembed.bias")):
        raise NotExpressibleError(
            f"the unembedding has a non-zero bias, which {arch} cannot hold (GPT-Neo/GPT-2 heads are bias-free); "
            "this run was trained with the legacy architecture"
        )
    if arch == GPT_NEO and not all(_is_zero(sd.get(f"blocks.{l}.attn.qkv.bias")) for l in range(cfg.n_layers)):
        raise NotExpressibleError(
            "local (sliding-window) layers with non-zero q/k/v biases: GPT-Neo's q/k/v have no bias and GPT-2 "
            "has no local layers"
        )
    d = cfg.d_model
    out: dict[str, torch.Tensor] = {"transformer.wte.weight": sd["embed.weight"], "transformer.wpe.weight": sd["pos_embed.weight"]}
    ones, zeros = torch.ones(d, dtype=sd["embed.weight"].dtype), torch.zeros(d, dtype=sd["embed.weight"].dtype)

    def ln(ours: str, theirs: str) -> None:  # LNPre (folded) models export identity LayerNorms
        out[theirs + ".weight"] = sd.get(ours + ".w", ones)
        out[theirs + ".bias"] = sd.get(ours + ".b", zeros)

    for l in range(cfg.n_layers):
        p, h = f"blocks.{l}.", f"transformer.h.{l}."
        ln(p + "ln1", h + "ln_1")
        ln(p + "ln2", h + "ln_2")
        qkv_w = sd[p + "attn.qkv.weight"]
        qkv_b = sd.get(p + "attn.qkv.bias", torch.zeros(3 * d, dtype=qkv_w.dtype))
        if arch == GPT_NEO:
            a = h + "attn.attention."
            for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
                out[a + name + ".weight"] = qkv_w[i * d : (i + 1) * d]
            out[a + "out_proj.weight"], out[a + "out_proj.bias"] = sd[p + "attn.out.weight"], sd[p + "attn.out.bias"]
            out[h + "mlp.c_fc.weight"], out[h + "mlp.c_fc.bias"] = sd[p + "mlp.fc_in.weight"], sd[p + "mlp.fc_in.bias"]
            out[h + "mlp.c_proj.weight"], out[h + "mlp.c_proj.bias"] = sd[p + "mlp.fc_out.weight"], sd[p + "mlp.fc_out.bias"]
        else:  # GPT-2's Conv1D stores (in, out): transpose every nn.Linear weight
            out[h + "attn.c_attn.weight"], out[h + "attn.c_attn.bias"] = qkv_w.T, qkv_b
            out[h + "attn.c_proj.weight"], out[h + "attn.c_proj.bias"] = sd[p + "attn.out.weight"].T, sd[p + "attn.out.bias"]
            out[h + "mlp.c_fc.weight"], out[h + "mlp.c_fc.bias"] = sd[p + "mlp.fc_in.weight"].T, sd[p + "mlp.fc_in.bias"]
            out[h + "mlp.c_proj.weight"], out[h + "mlp.c_proj.bias"] = sd[p + "mlp.fc_out.weight"].T, sd[p + "mlp.fc_out.bias"]
    ln("ln_final", "transformer.ln_f")
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["unembed.weight"]
    return arch, {k: v.contiguous() for k, v in out.items()}


def params_from_hf(hf_sd: dict[str, torch.Tensor], cfg: ModelConfig, arch: str, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Our ``HookedTransformer.state_dict()`` from an HF state dict of architecture ``arch``.

    Accepts keys with or without the ``transformer.`` prefix (the original ``gpt2`` files have none);
    attention-mask buffers are ignored; any other unknown or missing key is an error naming it."""
    sd = {}
    for key, value in hf_sd.items():
        if key.endswith(_BUFFER_SUFFIXES):  # ("h.0.attn.c_attn.bias" does not end in ".attn.bias")
            continue
        sd[key.removeprefix("transformer.")] = value
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise NotExpressibleError(f"{source}: missing weight {key!r} for {arch}")
        used.add(key)
        return sd[key]

    d = cfg.d_model
    out = {"embed.weight": take("wte.weight"), "pos_embed.weight": take("wpe.weight")}
    for l in range(cfg.n_layers):
        p, h = f"blocks.{l}.", f"h.{l}."
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            out[p + ours + ".w"], out[p + ours + ".b"] = take(h + theirs + ".weight"), take(h + theirs + ".bias")
        if arch == GPT_NEO:
            a = h + "attn.attention."
            out[p + "attn.qkv.weight"] = torch.cat([take(a + f"{x}_proj.weight") for x in "qkv"], dim=0)
            out[p + "attn.out.weight"], out[p + "attn.out.bias"] = take(a + "out_proj.weight"), take(a + "out_proj.bias")
            out[p + "mlp.fc_in.weight"], out[p + "mlp.fc_in.bias"] = take(h + "mlp.c_fc.weight"), take(h + "mlp.c_fc.bias")
            out[p + "mlp.fc_out.weight"], out[p + "mlp.fc_out.bias"] = take(h + "mlp.c_proj.weight"), take(h + "mlp.c_proj.bias")
        else:
            out[p + "attn.qkv.weight"], out[p + "attn.qkv.bias"] = take(h + "attn.c_attn.weight").T, take(h + "attn.c_attn.bias")
            out[p + "attn.out.weight"], out[p + "attn.out.bias"] = take(h + "attn.c_proj.weight").T, take(h + "attn.c_proj.bias")
            out[p + "mlp.fc_in.weight"], out[p + "mlp.fc_in.bias"] = take(h + "mlp.c_fc.weight").T, take(h + "mlp.c_fc.bias")
            out[p + "mlp.fc_out.weight"], out[p + "mlp.fc_out.bias"] = take(h + "mlp.c_proj.weight").T, take(h + "mlp.c_proj.bias")
    out["ln_final.w"], out["ln_final.b"] = take("ln_f.weight"), take("ln_f.bias")
    if cfg.tie_embeddings:
        used.add("lm_head.weight")  # HF re-ties it to wte on load, whatever the file holds
        out["unembed.weight"] = out["embed.weight"]
    else:
        out["unembed.weight"] = take("lm_head.weight")
    unknown = sorted(set(sd) - used)
    if unknown:
        raise NotExpressibleError(f"{source}: unexpected weights for {arch}: {unknown[:3]}")
    if out["pos_embed.weight"].shape[0] != cfg.n_ctx or out["embed.weight"].shape != (cfg.d_vocab, d):
        raise NotExpressibleError(f"{source}: embedding shapes do not match config.json")
    return {k: v.contiguous() for k, v in out.items()}
