"""GPT-Neo (``GPTNeoForCausalLM``, the official ``roneneldan/TinyStories-*``): q/k/v projections without
bias, ``out_proj`` with bias, attention scores NOT divided by sqrt(d_head), per-layer ``global``/``local``
attention (``attention_types`` run-length encoded, ``window_size``), ``lm_head`` without bias, usually tied."""

from __future__ import annotations

import torch

from tinyinterp.hf.family import (
    MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB, MAX_WIDTH, BadCheckpointError, ConfigReader, Family, layer_norm_shapes,
)

ATTENTION_KINDS = ("global", "local")


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


def _checked_attention_types(read: ConfigReader, n_layers: int) -> list[str]:
    """``attention_types`` expanded, after checking its shape and that it lists exactly ``n_layers``
    layers (counted before expanding, so ``[[["global"], 1000000000]]`` costs nothing)."""
    value = read.raw("attention_types")
    expected = 'a list of [["global"|"local", ...], repeat] pairs'
    if not isinstance(value, list) or not value:
        raise read.bad("attention_types", value, expected)
    total = 0
    for entry in value:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], (list, tuple)) and entry[0]
                and all(isinstance(k, str) and k in ATTENTION_KINDS for k in entry[0])
                and isinstance(entry[1], int) and not isinstance(entry[1], bool) and entry[1] >= 1):
            raise read.bad("attention_types", value, expected)
        total += len(entry[0]) * entry[1]
        if total > n_layers:
            break
    if total != n_layers:
        raise BadCheckpointError(
            f"{read.source}: config.json attention_types lists {total if total <= n_layers else f'more than {n_layers}'} "
            f"layers but num_layers is {n_layers}"
        )
    return expand_attention_types(value)


class GPTNeo(Family):
    name = "gpt-neo"
    hf_architecture = "GPTNeoForCausalLM"
    model_type = "gpt_neo"
    layers_key = "num_layers"

    def fields(self, n_layers: int, window_size: int = 256) -> dict:
        return dict(
            attn_types=[ATTENTION_KINDS[layer % 2] for layer in range(n_layers)], window_size=window_size,
            use_attn_scale=False, qkv_bias=False, tie_embeddings=True, unembed_bias=False,
        )

    def accepts(self, cfg) -> bool:
        # Bias-free q/k/v and unscaled attention; with local layers q/k/v biases may exist in the config
        # as long as they are zero (checked on the weights), since no other family has local layers.
        has_local = cfg.attn_types is not None and "local" in cfg.attn_types
        return not cfg.use_attn_scale and (has_local or not cfg.qkv_bias)

    def config_fields(self, read: ConfigReader) -> dict:
        d_model = read.int("hidden_size", MAX_WIDTH)
        n_layers = read.int("num_layers", MAX_LAYERS)
        n_heads = read.int("num_heads", d_model)
        if d_model % n_heads:
            raise BadCheckpointError(f"{read.source}: config.json hidden_size={d_model} is not divisible by num_heads={n_heads}")
        d_mlp = read.raw("intermediate_size")
        return dict(
            d_model=d_model, n_layers=n_layers, n_heads=n_heads,
            d_mlp=4 * d_model if d_mlp is None else read.int("intermediate_size", 4 * MAX_WIDTH),
            d_vocab=read.int("vocab_size", MAX_VOCAB), n_ctx=read.int("max_position_embeddings", MAX_POSITIONS),
            act_fn=read.activation(), layer_norm_eps=read.float("layer_norm_epsilon", 1e-5),
            init_range=read.float("initializer_range", 0.02, hi=10.0),
            tie_embeddings=read.bool("tie_word_embeddings", True),
            attn_types=_checked_attention_types(read, n_layers), window_size=read.int("window_size", MAX_POSITIONS, 256),
            use_attn_scale=False, qkv_bias=False, unembed_bias=False,
        )

    def hf_config(self, cfg, common: dict) -> dict:
        layers = [cfg.attn_type(layer) for layer in range(cfg.n_layers)]
        return dict(
            model_type=self.model_type, hidden_size=cfg.d_model, num_layers=cfg.n_layers, num_heads=cfg.n_heads,
            intermediate_size=cfg.d_mlp, max_position_embeddings=cfg.n_ctx,
            attention_types=compress_attention_types(layers), window_size=cfg.window_size,
            embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0, **common,
        )

    def block_shapes(self, cfg, layer: int) -> dict[str, tuple[int, ...]]:
        d, m, h = cfg.d_model, cfg.d_mlp, f"h.{layer}."
        a = h + "attn.attention."
        return {
            **layer_norm_shapes(h, d), **{a + f"{x}_proj.weight": (d, d) for x in "qkv"},
            a + "out_proj.weight": (d, d), a + "out_proj.bias": (d,),
            h + "mlp.c_fc.weight": (m, d), h + "mlp.c_fc.bias": (m,), h + "mlp.c_proj.weight": (d, m), h + "mlp.c_proj.bias": (d,),
        }

    def block_from_hf(self, take, cfg, layer: int) -> dict:
        p, h = f"blocks.{layer}.", f"h.{layer}."
        a = h + "attn.attention."
        return {
            p + "attn.qkv.weight": torch.cat([take(a + f"{x}_proj.weight") for x in "qkv"], dim=0),
            p + "attn.out.weight": take(a + "out_proj.weight"), p + "attn.out.bias": take(a + "out_proj.bias"),
            p + "mlp.fc_in.weight": take(h + "mlp.c_fc.weight"), p + "mlp.fc_in.bias": take(h + "mlp.c_fc.bias"),
            p + "mlp.fc_out.weight": take(h + "mlp.c_proj.weight"), p + "mlp.fc_out.bias": take(h + "mlp.c_proj.bias"),
        }

    def block_to_hf(self, sd: dict, cfg, layer: int) -> dict:
        p, h, d = f"blocks.{layer}.", f"h.{layer}.", cfg.d_model
        a = h + "attn.attention."
        qkv_w = sd[p + "attn.qkv.weight"]
        out = {a + f"{x}_proj.weight": qkv_w[i * d : (i + 1) * d] for i, x in enumerate("qkv")}
        out[a + "out_proj.weight"], out[a + "out_proj.bias"] = sd[p + "attn.out.weight"], sd[p + "attn.out.bias"]
        out[h + "mlp.c_fc.weight"], out[h + "mlp.c_fc.bias"] = sd[p + "mlp.fc_in.weight"], sd[p + "mlp.fc_in.bias"]
        out[h + "mlp.c_proj.weight"], out[h + "mlp.c_proj.bias"] = sd[p + "mlp.fc_out.weight"], sd[p + "mlp.fc_out.bias"]
        return out


GPT_NEO = GPTNeo()
