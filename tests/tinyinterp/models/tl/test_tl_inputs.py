"""TL's input conventions on our model: text or tokens everywhere (``forward``, ``run_with_cache``,
``run_with_hooks``, losses), TL's keywords (``prepend_bos``, ``padding_side``, ``attention_mask``,
``stop_at_layer``, ``return_type="predictions"``, ``loss_per_token``), and padding that changes nothing:
a left- or right-padded row gives the numbers the row gives alone, in ``forward`` and in ``generate``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyinterp.errors import TinyinterpError

WORDS = ["Once", " upon", " a", " time", " Lily", " and", " Tom", " went", " to", " the", " park", ".", " She", " was", " happy"]
texts_strategy = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map("".join), min_size=2, max_size=4
)


@pytest.fixture(scope="module")
def model(neo_tokenizer):
    from tests.support.tl_models import build

    return build(neo_tokenizer, preset="test-neo", seed=3)


def _real_rows(logits, mask, side):
    """Each row's logits at its real positions."""
    out = []
    for row, real in zip(logits, mask):
        n = int(real.sum())
        out.append(row[-n:] if side == "left" else row[:n])
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=texts_strategy, side=st.sampled_from(["left", "right"]), fast=st.booleans())
def test_a_padded_batch_equals_each_text_alone(model, texts, side, fast):
    model.set_fast_attention(fast)
    try:
        with torch.no_grad():
            batch = model(texts, padding_side=side)
            tokens = model.to_tokens(texts, padding_side=side)
            lengths = [model.to_tokens(t).shape[1] for t in texts]
            mask = torch.tensor([[True] * n + [False] * (tokens.shape[1] - n) for n in lengths])
            if side == "left":
                mask = mask.flip(1)
            for text, got in zip(texts, _real_rows(batch, mask, side)):
                alone = model(text)[0]
                assert (got - alone).abs().max() < 1e-5
            # The tensor with padding_side="left" (TL's get_attention_mask rule) masks what the text path masks.
            if side == "left":
                assert (model(tokens, padding_side="left") - batch).abs().max() < 1e-6
            # The loss skips padding: it is the token-weighted mean of the rows' own losses.
            per_row = [model(t, return_type="loss", loss_per_token=True)[0] for t in texts]
            expected = torch.cat(per_row).mean()
            assert abs(float(model(texts, return_type="loss", padding_side=side)) - float(expected)) < 1e-5
    finally:
        model.set_fast_attention(True)


def test_left_padding_without_a_mask_would_attend_to_the_pad(model):
    """The masked result is not the unmasked one: the padding really is excluded (old behaviour differs)."""
    texts = ["Once upon a time Lily went to the park.", "Tom"]
    tokens = model.to_tokens(texts, padding_side="left")
    with torch.no_grad():
        masked = model(tokens, padding_side="left")[1, -1]
        unmasked = model(tokens, padding_side="right")[1, -1]  # right: no mask for a tensor, as TL
        alone = model("Tom")[0, -1]
    assert (masked - alone).abs().max() < 1e-5
    assert (unmasked - alone).abs().max() > 1e-3


def test_text_is_accepted_everywhere(model):
    text = "Lily and Tom went to the park."
    tokens = model.to_tokens(text)
    with torch.no_grad():
        assert torch.equal(model(text), model(tokens))
        assert torch.equal(model(text, return_type="loss"), model(tokens, return_type="loss"))
        logits, cache = model.run_with_cache(text)
        assert torch.allclose(logits, model(tokens), atol=1e-6) and cache["blocks.0.hook_resid_pre"].shape[1] == tokens.shape[1]
        seen = {}
        model.run_with_hooks(text, fwd_hooks=[("blocks.1.hook_resid_post", lambda x, hook: seen.setdefault("x", x))])
        # (caching everything materialises the attention pattern: equal to float error, not bitwise)
        assert torch.allclose(seen["x"], cache["blocks.1.hook_resid_post"], atol=1e-6)
        raw = model(text, prepend_bos=False)
    assert raw.shape[1] == tokens.shape[1] - 1
    assert (raw[0, -1] - logits[0, -1]).abs().max() > 0  # without <|endoftext|> the model reads another input


def test_saelens_activation_store_call(model):
    """SAELens's activation store: run_with_cache(tokens, names_filter=[hook], stop_at_layer=..., prepend_bos=False)."""
    tokens = model.to_tokens(["Lily went to the park.", "Tom was happy."], prepend_bos=False)
    hook = "blocks.1.hook_resid_post"
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens, names_filter=[hook], stop_at_layer=2, prepend_bos=False)
        _, full = model.run_with_cache(tokens)
    assert list(cache.keys()) == [hook]
    assert out.shape == (*tokens.shape, model.cfg.d_model)
    assert torch.equal(cache[hook], out) and torch.allclose(out, full[hook], atol=1e-6)


def test_explicit_attention_mask_zeroes_padding(model):
    tokens = model.to_tokens(["Tom went to the park.", "Lily"], padding_side="right")
    mask = torch.tensor([[1] * tokens.shape[1], [1, 1] + [0] * (tokens.shape[1] - 2)])
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, attention_mask=mask)
    pattern = cache["pattern", 0]  # (batch, head, q, k)
    assert float(pattern[1, :, :, 2:].abs().max()) == 0  # nobody attends to padding keys
    assert float(pattern[1, :, 2:].abs().max()) == 0  # padding queries attend to nothing (TL's convention)
    assert torch.allclose(pattern[1, :, :2].sum(-1), torch.ones(model.cfg.n_heads, 2))
    per_token = model(tokens, attention_mask=mask, return_type="loss", loss_per_token=True)
    assert per_token.shape == (2, tokens.shape[1] - 1) and float(per_token[1, 1:].detach().abs().max()) == 0


def test_generate_continues_texts_of_different_lengths_as_alone(model):
    texts = ["Once upon a time Lily went to the park. She", "Tom", "Lily and Tom"]
    batch = model.generate(texts, max_new_tokens=6, do_sample=False, stop_at_eos=False, verbose=False)
    alone = [model.generate(t, max_new_tokens=6, do_sample=False, stop_at_eos=False, verbose=False) for t in texts]
    assert batch == alone
    no_cache = model.generate(texts, max_new_tokens=6, do_sample=False, stop_at_eos=False, verbose=False,
                              use_past_kv_cache=False)
    assert no_cache == alone


def test_return_type_predictions(model):
    texts = ["Lily went to the", "Tom"]
    with torch.no_grad():
        got = model(texts, return_type="predictions", padding_side="right")
        want = [model.tokenizer.decode([int(model(t)[0, -1].argmax())]) for t in texts]
        assert got == want
        assert model("Tom", return_type="predictions") == want[1]


def test_bad_input_is_one_line(model):
    with pytest.raises(TinyinterpError, match="padding_side"):
        model(["a", "bb"], padding_side="middle")
    with pytest.raises(TinyinterpError, match="return_type"):
        model("Tom", return_type="nonsense")
    with pytest.raises(TinyinterpError, match="input must be"):
        model(3.5)
