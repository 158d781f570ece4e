"""GPT-2 (``GPT2LMHeadModel``, ``gpt2`` … ``gpt2-xl``): ``Conv1D`` weights stored (in, out), fused
``c_attn`` with bias, ``scale_attn_weights``, all layers global, ``lm_head`` without bias, usually tied."""

from __future__ import annotations

import torch

from tinyinterp.hf.family import (
    MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB, MAX_WIDTH, BadCheckpointError, ConfigReader, Family, layer_norm_shapes,
)


class GPT2(Family):
    name = "gpt2"
    hf_architecture = "GPT2LMHeadModel"
    model_type = "gpt2"
    layers_key = "n_layer"

    def fields(self, n_layers: int, window_size: int = 256) -> dict:
        return dict(attn_types=None, use_attn_scale=True, qkv_bias=True, tie_embeddings=True, unembed_bias=False)

    def accepts(self, cfg) -> bool:
        return cfg.attn_types is None or "local" not in cfg.attn_types

    def config_fields(self, read: ConfigReader) -> dict:
        d_model = read.int("n_embd", MAX_WIDTH)
        n_heads = read.int("n_head", d_model)
        if d_model % n_heads:
            raise BadCheckpointError(f"{read.source}: config.json n_embd={d_model} is not divisible by n_head={n_heads}")
        if read.bool("scale_attn_by_inverse_layer_idx", False):
            read.unsupported.append("GPT-2 config: scale_attn_by_inverse_layer_idx=true has no tinyinterp equivalent")
        d_mlp = read.raw("n_inner")
        return dict(
            d_model=d_model, n_layers=read.int("n_layer", MAX_LAYERS), n_heads=n_heads,
            d_mlp=4 * d_model if d_mlp is None else read.int("n_inner", 4 * MAX_WIDTH),
            d_vocab=read.int("vocab_size", MAX_VOCAB), n_ctx=read.int("n_positions", MAX_POSITIONS),
            act_fn=read.activation(), layer_norm_eps=read.float("layer_norm_epsilon", 1e-5),
            init_range=read.float("initializer_range", 0.02, hi=10.0),
            tie_embeddings=read.bool("tie_word_embeddings", True),
            attn_types=None, use_attn_scale=read.bool("scale_attn_weights", True), qkv_bias=True, unembed_bias=False,
        )

    def hf_config(self, cfg, common: dict) -> dict:
        return dict(
            model_type=self.model_type, n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.d_mlp,
            n_positions=cfg.n_ctx, scale_attn_weights=cfg.use_attn_scale, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            **common,
        )

    def block_shapes(self, cfg, layer: int) -> dict[str, tuple[int, ...]]:
        d, m, h = cfg.d_model, cfg.d_mlp, f"h.{layer}."  # Conv1D: (in, out)
        return {
            **layer_norm_shapes(h, d), h + "attn.c_attn.weight": (d, 3 * d), h + "attn.c_attn.bias": (3 * d,),
            h + "attn.c_proj.weight": (d, d), h + "attn.c_proj.bias": (d,),
            h + "mlp.c_fc.weight": (d, m), h + "mlp.c_fc.bias": (m,), h + "mlp.c_proj.weight": (m, d), h + "mlp.c_proj.bias": (d,),
        }

    def block_from_hf(self, take, cfg, layer: int) -> dict:
        p, h = f"blocks.{layer}.", f"h.{layer}."
        return {  # GPT-2's Conv1D stores (in, out): transpose every weight into nn.Linear's (out, in)
            p + "attn.qkv.weight": take(h + "attn.c_attn.weight").T, p + "attn.qkv.bias": take(h + "attn.c_attn.bias"),
            p + "attn.out.weight": take(h + "attn.c_proj.weight").T, p + "attn.out.bias": take(h + "attn.c_proj.bias"),
            p + "mlp.fc_in.weight": take(h + "mlp.c_fc.weight").T, p + "mlp.fc_in.bias": take(h + "mlp.c_fc.bias"),
            p + "mlp.fc_out.weight": take(h + "mlp.c_proj.weight").T, p + "mlp.fc_out.bias": take(h + "mlp.c_proj.bias"),
        }

    def block_to_hf(self, sd: dict, cfg, layer: int) -> dict:
        p, h = f"blocks.{layer}.", f"h.{layer}."
        qkv_w = sd[p + "attn.qkv.weight"]
        qkv_b = sd.get(p + "attn.qkv.bias", torch.zeros(3 * cfg.d_model, dtype=qkv_w.dtype))
        return {
            h + "attn.c_attn.weight": qkv_w.T, h + "attn.c_attn.bias": qkv_b,
            h + "attn.c_proj.weight": sd[p + "attn.out.weight"].T, h + "attn.c_proj.bias": sd[p + "attn.out.bias"],
            h + "mlp.c_fc.weight": sd[p + "mlp.fc_in.weight"].T, h + "mlp.c_fc.bias": sd[p + "mlp.fc_in.bias"],
            h + "mlp.c_proj.weight": sd[p + "mlp.fc_out.weight"].T, h + "mlp.c_proj.bias": sd[p + "mlp.fc_out.bias"],
        }


GPT2_FAMILY = GPT2()
