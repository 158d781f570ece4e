"""Tiny models and random transcoder sets for the attribution tests and bench (no training).

``build_model`` makes a random GPT-Neo (local + global layers, unscaled attention) or GPT-2-style
model whose LayerNorm weights and all biases are random too, so that the frozen LayerNorms and the
bias terms of the linear model are exercised. ``random_transcoders`` gives one random TopK transcoder
per layer with non-zero encoder and decoder biases.
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_model(arch: str = "gpt-neo", seed: int = 0, tokenizer=None, d_vocab: int = 50, preset: str = "test-neo",
                **overrides):
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.models.zoo import preset_config

    torch.manual_seed(seed)
    vocab = tokenizer.vocab_size if tokenizer is not None else d_vocab
    model = HookedTransformer(preset_config(preset, d_vocab=vocab, arch=arch, **overrides), tokenizer=tokenizer)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b")) or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def random_transcoders(model, d_sae: int = 64, k: int = 6, seed: int = 0, scan: str = "random"):
    """A :class:`TranscoderSet` of random unit-norm TopK transcoders, one per layer of ``model``."""
    from tinyinterp.attribution import TranscoderSet
    from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, transcoder_hooks

    d = model.cfg.d_model
    coders = []
    for layer in range(model.cfg.n_layers):
        g = torch.Generator().manual_seed(seed * 1000 + layer)
        coder = SparseCoder(DictionaryConfig("transcoder", *transcoder_hooks(layer), d, d, d_sae, k,
                                             model_name=getattr(model, "name", None) or ""))
        coder.reset_parameters(g)
        with torch.no_grad():
            coder.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.1)
            coder.b_dec.copy_(torch.randn(d, generator=g) * 0.1)
        coder.requires_grad_(False)
        coders.append(coder.to(next(model.parameters()).dtype))
    return TranscoderSet(coders, None, scan)


def save_transcoder_set(transcoders, folder: Path) -> Path:
    """Write each transcoder to ``folder/layer_LL`` (the layout ``load_transcoder_set`` reads)."""
    from tinyinterp.dictionaries import save_dictionary

    folder = Path(folder)
    for layer, coder in enumerate(transcoders):
        save_dictionary(coder, folder / f"layer_{layer:02d}")
    return folder


def target_rows(graph) -> list[int]:
    """Node indices with incoming edges: the features, then the logits."""
    return list(range(graph.n_selected)) + list(range(graph.logit_offset, graph.n_nodes))
