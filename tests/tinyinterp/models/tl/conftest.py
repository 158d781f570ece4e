"""Fixtures for the TransformerLens-conformance tests: a restricted GPT-Neo BPE over real TinyStories
text (so " Lily" and " Tom" are single tokens, as in the paper's tokenizer) and tiny GPT-Neo models."""

from __future__ import annotations

import pytest

from tests.support.tl_models import build


@pytest.fixture(scope="session")
def story_texts(shared_data) -> list[str]:
    text = (shared_data / "tinystories" / "train-v2-gpt4-head.txt").read_text(encoding="utf-8")
    return [s.strip() for s in text.split("<|endoftext|>")[:400] if s.strip()]


@pytest.fixture(scope="session")
def neo_tokenizer(shared_data, story_texts):
    from tinyinterp.data.tokenizer import Tokenizer

    base = shared_data / "tokenizers" / "gpt2" / "tokenizer.json"
    return Tokenizer.restricted_bpe(base, story_texts, k=2000, progress=False)


@pytest.fixture
def neo_model(neo_tokenizer):
    return build(neo_tokenizer)
