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
