"""Tiny GPT-Neo models for the TransformerLens-conformance tests, the bridged pair every check compares,
and the table of largest differences the report test prints."""

from __future__ import annotations

import torch


def build(tokenizer, preset: str = "test-neo", seed: int = 0, **overrides):
    """A random-init model whose LayerNorm weights and biases are random too, so that folding them is
    a real test (fresh LayerNorms are the identity)."""
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.models.zoo import preset_config

    torch.manual_seed(seed)
    model = HookedTransformer(preset_config(preset, d_vocab=tokenizer.vocab_size, **overrides), tokenizer=tokenizer)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b")) or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def bridged_pair(tokenizer, tmp_path_factory, **build_kwargs):
    """(our model with TL's default weight processing, the TransformerBridge of its Hugging Face export in
    compatibility mode — which applies the same processing): the two sides of every conformance check."""
    from transformer_lens.model_bridge import TransformerBridge

    from tinyinterp.hf.export import export_model

    ours = build(tokenizer, **build_kwargs)
    folder = export_model(ours, tmp_path_factory.mktemp("export") / "hf")
    bridge = TransformerBridge.boot_transformers(str(folder), device="cpu")
    bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    ours.process_weights()
    return ours, bridge


def record_diff(table: dict[str, float], name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    """Max |a - b|, also kept (as the largest seen under ``name``) in ``table`` for the report test."""
    d = float((a.detach().float() - b.detach().float()).abs().max())
    table[name] = max(d, table.get(name, 0.0))
    return d
