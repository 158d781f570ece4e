"""Neuron logit effects: checked through the model's own modules, TL-name accessor, stored with the index."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.support.story_world import make_model
from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.neuron_index import NeuronIndexConfig, build_neuron_index
from tinyinterp.interp.neuron_logits import logit_effects, neuron_weights


@pytest.fixture
def model(story_tokenizer):
    m = make_model(story_tokenizer, seed=3)
    with torch.no_grad():  # a non-trivial final LayerNorm weight, so folding it in matters
        m.ln_final.w.copy_(torch.linspace(0.2, 2.0, m.cfg.d_model))
        m.ln_final.b.copy_(torch.linspace(-1.0, 1.0, m.cfg.d_model))
    return m


@torch.no_grad()
def direct_effect_through_modules(model, layer: int, neuron: int) -> torch.Tensor:
    """The neuron's direct logit effect measured with the model's modules, no weight names involved.

    The neuron's output direction is the MLP's output for a one-hot activation minus its output for zero.
    Passed through ln_final at a tiny size (its variance far below LayerNorm's eps), LayerNorm is linear
    with a constant scale 1/sqrt(eps): exactly the "scale frozen" approximation, up to that constant."""
    mlp = model.blocks[layer].mlp
    one = torch.zeros(model.cfg.d_mlp)
    one[neuron] = 1.0
    direction = mlp.fc_out(one) - mlp.fc_out(torch.zeros_like(one))
    eps = model.cfg.layer_norm_eps
    delta = 1e-3 * eps**0.5 / direction.std().item()
    shifted = model.unembed(model.ln_final(delta * direction[None, None]))[0, 0]
    base = model.unembed(model.ln_final(torch.zeros(1, 1, model.cfg.d_model)))[0, 0]
    effect = (shifted - base) * eps**0.5 / delta
    return effect - effect.mean()


def test_effects_match_the_model_modules(model):
    eff = logit_effects(model, n_top=7)
    for layer, neuron in ((0, 3), (1, 100)):
        expected = direct_effect_through_modules(model, layer, neuron)
        top_vals, top_ids = torch.topk(expected, 7)
        low_vals, low_ids = torch.topk(expected, 7, largest=False)
        assert eff["logit_top_tokens"][layer, neuron].tolist() == top_ids.tolist()
        assert eff["logit_bottom_tokens"][layer, neuron].tolist() == low_ids.tolist()
        torch.testing.assert_close(eff["logit_top_values"][layer, neuron], top_vals, rtol=2e-3, atol=2e-4)
        torch.testing.assert_close(eff["logit_bottom_values"][layer, neuron], low_vals, rtol=2e-3, atol=2e-4)


def test_accessor_prefers_transformerlens_names(model):
    """A model exposing W_out/W_U (TL bridges; ours after the TL-conformance change) is read through them."""
    cfg = model.cfg
    W_out = torch.randn(cfg.n_layers, cfg.d_mlp, cfg.d_model)
    W_U = torch.randn(cfg.d_model, cfg.d_vocab)
    tl_style = SimpleNamespace(cfg=cfg, W_out=W_out, W_U=W_U, ln_final=SimpleNamespace(w=torch.ones(cfg.d_model)),
                               blocks=model.blocks, unembed=model.unembed, tokenizer=None)
    w = neuron_weights(tl_style)
    assert torch.equal(w.W_out, W_out) and torch.equal(w.W_U, W_U) and w.centre
    eff = logit_effects(tl_style, n_top=3)
    direction = W_out[1, 9] - W_out[1, 9].mean()
    assert eff["logit_top_tokens"][1, 9].tolist() == torch.topk(direction @ W_U, 3).indices.tolist()
    # fallback for a model without the TL names: our parameter names, same numbers
    bare = SimpleNamespace(cfg=cfg, blocks=model.blocks, unembed=model.unembed, ln_final=model.ln_final)
    ours = neuron_weights(bare)
    torch.testing.assert_close(ours.W_out[1, 9], model.blocks[1].mlp.fc_out.weight[:, 9].detach())
    torch.testing.assert_close(ours.W_U, model.unembed.weight.detach().T)
    torch.testing.assert_close(ours.ln_w, model.ln_final.w.detach())
    if hasattr(model, "W_out"):  # our model with the TL-conformant names: both routes agree
        torch.testing.assert_close(neuron_weights(model).W_out, ours.W_out)
        torch.testing.assert_close(neuron_weights(model).W_U, ours.W_U)


def test_rms_and_folded_norms(model):
    cfg = model.cfg
    folded = SimpleNamespace(cfg=SimpleNamespace(**{k: getattr(cfg, k) for k in ("n_layers", "d_mlp", "d_model")},
                                                 normalization_type="LNPre"),
                             W_out=torch.randn(cfg.n_layers, cfg.d_mlp, cfg.d_model), W_U=torch.randn(cfg.d_model, 11),
                             ln_final=SimpleNamespace())
    w = neuron_weights(folded)
    assert w.ln_w is None and w.centre
    folded.cfg.normalization_type = "RMS"
    assert not neuron_weights(folded).centre
    with pytest.raises(TinyinterpError, match="expected W_out"):
        neuron_weights(SimpleNamespace(cfg=cfg, W_out=torch.zeros(1, 2, 3), W_U=folded.W_U))


def test_effects_are_stored_with_the_index(model, story_corpus, story_tokenizer, tmp_path):
    index = build_neuron_index(model, story_corpus, tmp_path / "idx", NeuronIndexConfig(k=3, seq_len=24, max_docs=4, n_logits=5),
                               progress=False)
    fresh = logit_effects(model, n_top=5)
    for key, value in fresh.items():
        assert torch.equal(index.tensors[key], value), key
    table = index.logit_effects(1, 100, n=3)
    ids = fresh["logit_top_tokens"][1, 100, :3].tolist()
    assert table["promoted"].token_id.tolist() == ids
    assert table["promoted"].token.tolist() == [story_tokenizer.token_str(i) for i in ids]
    assert table["suppressed"].effect.is_monotonic_increasing and table["promoted"].effect.is_monotonic_decreasing
