"""Fixtures for the TransformerLens-conformance tests: a restricted GPT-Neo BPE over real TinyStories
text (so " Lily" and " Tom" are single tokens, as in the paper's tokenizer) and tiny GPT-Neo models."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def story_texts(shared_data) -> list[str]:
    text = (shared_data / "tinystories" / "train-v2-gpt4-head.txt").read_text(encoding="utf-8")
    return [s.strip() for s in text.split("<|endoftext|>")[:400] if s.strip()]


@pytest.fixture(scope="session")
def neo_tokenizer(shared_data, story_texts):
    from tinyinterp.tokenizer import Tokenizer

    base = shared_data / "tokenizers" / "gpt2" / "tokenizer.json"
    return Tokenizer.restricted_bpe(base, story_texts, k=2000, progress=False)


def build(tokenizer, preset: str = "test-neo", seed: int = 0, **overrides):
    """A random-init model whose LayerNorm weights and biases are random too, so that folding them is
    a real test (fresh LayerNorms are the identity)."""
    from tinyinterp.model import HookedTransformer
    from tinyinterp.zoo import preset_config

    torch.manual_seed(seed)
    model = HookedTransformer(preset_config(preset, d_vocab=tokenizer.vocab_size, **overrides), tokenizer=tokenizer)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b")) or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.fixture
def neo_model(neo_tokenizer):
    return build(neo_tokenizer)


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
