"""Interventions in the real model: a hand computation, identities between modes, the graph's linear prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.attribution_graphs import hand_graph, make_graph
from tinyinterp.attribution.interventions import FeatureIntervention, intervene, predict_logit_change
from tinyinterp.attribution.nodes import GraphError
from tinyinterp.dictionaries import DictionaryConfig, SparseCoder
from tinyinterp.dictionaries.config import transcoder_hooks

TOKENS = [0, 17, 42, 5, 63, 8, 99, 3]


def random_transcoders(model, width=32, k=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    coders = {}
    for layer in range(model.cfg.n_layers):
        d = model.cfg.d_model
        coder = SparseCoder(DictionaryConfig("transcoder", *transcoder_hooks(layer), d, d, width, k))
        coder.reset_parameters(g)
        with torch.no_grad():
            coder.b_enc.uniform_(0.1, 0.5, generator=g)  # every feature has a chance to fire
        coders[layer] = coder
    return coders


@torch.no_grad()
def strongest_feature(model, coders, layer, pos):
    _, cache = model.run_with_cache(torch.tensor([TOKENS]))
    acts = coders[layer].encode(cache[f"blocks.{layer}.ln2.hook_normalized"][0, pos])
    feature = int(acts.argmax())
    assert acts[feature] > 0
    return feature, float(acts[feature]), cache


def test_ablation_in_the_last_layer_matches_a_hand_computation(tiny_model):
    model, coders = tiny_model, random_transcoders(tiny_model)
    last = model.cfg.n_layers - 1
    feature, a, cache = strongest_feature(model, coders, last, -1)
    result = intervene(model, coders, TOKENS, [FeatureIntervention(last, feature, pos=len(TOKENS) - 1)], [1, 2, 3])
    # by hand: the residual stream loses a · W_dec[feature]; then ln_final and the unembedding
    with torch.no_grad():
        resid = cache[f"blocks.{last}.hook_resid_post"][0, -1].double() - a * coders[last].W_dec[feature].double()
        x = resid - resid.mean()
        x = x / (x.pow(2).mean() + model.ln_final.eps).sqrt() * model.ln_final.w.double() + model.ln_final.b.double()
        logits = x @ model.W_U.double() + model.b_U.double()
    torch.testing.assert_close(result.full_logits_after, logits, rtol=0, atol=1e-5)
    centred = logits - logits.mean()
    before = result.full_logits_before - result.full_logits_before.mean()
    torch.testing.assert_close(result.measured, (centred - before)[[1, 2, 3]], rtol=0, atol=1e-5)
    assert result.activations == [{"layer": last, "pos": len(TOKENS) - 1, "feature": feature,
                                   "before": pytest.approx(a, abs=1e-6), "after": 0.0}]
    assert result.measured.abs().max() > 1e-4  # the ablation did something


def test_an_earlier_position_of_the_last_layer_cannot_reach_the_last_logits(tiny_model):
    model, coders = tiny_model, random_transcoders(tiny_model)
    last = model.cfg.n_layers - 1
    feature, _, _ = strongest_feature(model, coders, last, 2)
    result = intervene(model, coders, TOKENS, [FeatureIntervention(last, feature, pos=2)], [1])
    assert torch.equal(result.full_logits_after, result.full_logits_before)


def test_zero_scale_is_ablation_and_steering_by_zero_is_a_no_op(tiny_model):
    model, coders = tiny_model, random_transcoders(tiny_model)
    feature, _, _ = strongest_feature(model, coders, 0, 3)
    targets = [4, 9]
    ablate = intervene(model, coders, TOKENS, [FeatureIntervention(0, feature, pos=3)], targets)
    scale0 = intervene(model, coders, TOKENS, [FeatureIntervention(0, feature, pos=3, mode="scale", value=0.0)], targets)
    steer0 = intervene(model, coders, TOKENS, [FeatureIntervention(0, feature, pos=3, mode="steer", value=0.0)], targets)
    scale1 = intervene(model, coders, TOKENS, [FeatureIntervention(0, feature, mode="scale", value=1.0)], targets)
    assert ablate.measured.abs().max() > 1e-5
    assert torch.equal(scale0.full_logits_after, ablate.full_logits_after)
    assert torch.equal(steer0.full_logits_after, steer0.full_logits_before)
    assert torch.equal(scale1.full_logits_after, scale1.full_logits_before)
    steer = intervene(model, coders, TOKENS, [FeatureIntervention(0, feature, pos=3, mode="steer", value=2.0)], targets)
    assert steer.activations[0]["after"] == pytest.approx(steer.activations[0]["before"] + 2.0)
    assert not torch.equal(steer.full_logits_after, steer.full_logits_before)


def test_every_position_is_the_supernode_of_all_positions(tiny_model):
    model, coders = tiny_model, random_transcoders(tiny_model)
    feature, _, _ = strongest_feature(model, coders, 0, 1)
    everywhere = intervene(model, coders, TOKENS, [FeatureIntervention(0, feature)], [7])
    supernode = intervene(model, coders, TOKENS, [FeatureIntervention(0, feature, pos=p) for p in range(len(TOKENS))], [7])
    torch.testing.assert_close(everywhere.full_logits_after, supernode.full_logits_after, rtol=0, atol=1e-6)
    assert len(everywhere.activations) == len(TOKENS)
    assert everywhere.top_tokens(3)[0][1] <= 1.0 and len(everywhere.top_tokens(3)) == 3


@pytest.mark.parametrize("iv, targets, message", [
    (FeatureIntervention(9, 0), [1], "layer 9"),
    (FeatureIntervention(0, 32), [1], "feature 32"),
    (FeatureIntervention(0, 1, pos=len(TOKENS)), [1], "position 8"),
    (FeatureIntervention(0, 1), [100], "target token 100"),
    (FeatureIntervention(0, 1), [], "no target"),
])
def test_bad_interventions_are_one_line_errors(tiny_model, iv, targets, message):
    with pytest.raises(GraphError, match=message) as info:
        intervene(tiny_model, random_transcoders(tiny_model), TOKENS, [iv], targets)
    assert "\n" not in str(info.value)


def test_bad_mode_and_long_prompt(tiny_model):
    with pytest.raises(GraphError, match="mode"):
        FeatureIntervention(0, 1, mode="double")
    with pytest.raises(GraphError, match="context"):
        intervene(tiny_model, random_transcoders(tiny_model), [1] * (tiny_model.cfg.n_ctx + 1), [], [1])


def chain_graph():
    """f0 (L0, a=1) -> f1 (L1, a=4) with edge 2; f1 -> logit 8; f0 -> logit 1 (n_pos 1, 2 layers)."""
    n = 2 + 2 + 1 + 1
    A = np.zeros((n, n))
    A[1, 0] = 2.0
    A[5, 1], A[5, 0] = 8.0, 1.0
    return make_graph(A, features=[(0, 0, 3), (1, 0, 4)], n_layers=2, input_tokens=[1], logit_tokens=[11],
                      logit_probabilities=[1.0], activations=[1.0, 4.0])


def test_prediction_by_hand():
    graph = hand_graph()  # f0: a = 1.5, edge to the logit 3
    assert predict_logit_change(graph, [FeatureIntervention(0, 7)]).tolist() == pytest.approx([-3.0])
    assert predict_logit_change(graph, [FeatureIntervention(0, 7, mode="scale", value=0.5)]).tolist() == pytest.approx([-1.5])
    assert predict_logit_change(graph, [FeatureIntervention(0, 7, mode="steer", value=3.0)]).tolist() == pytest.approx([6.0])
    chain = chain_graph()
    # ablate f0: Δa0 = -1, Δa1 = 2/1 · -1 = -2, Δlogit = 1/1 · -1 + 8/4 · -2 = -5
    assert predict_logit_change(chain, [FeatureIntervention(0, 3)]).tolist() == pytest.approx([-5.0])
    assert predict_logit_change(chain, [FeatureIntervention(1, 4)]).tolist() == pytest.approx([-8.0])
    both = [FeatureIntervention(0, 3), FeatureIntervention(1, 4)]  # the supernode: f1 is clamped, not fed by f0
    assert predict_logit_change(chain, both).tolist() == pytest.approx([-9.0])
    assert predict_logit_change(chain, [FeatureIntervention(0, 3, pos=0)]).tolist() == pytest.approx([-5.0])


def test_no_prediction_for_a_feature_outside_the_graph():
    assert predict_logit_change(chain_graph(), [FeatureIntervention(0, 99)]) is None
    with pytest.raises(GraphError, match="not logit nodes"):
        predict_logit_change(chain_graph(), [FeatureIntervention(0, 3)], [12])
