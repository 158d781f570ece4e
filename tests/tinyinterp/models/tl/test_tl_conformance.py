"""TL-style analysis scripts run unchanged on our model and on the TransformerBridge of its Hugging Face
export, with equal results: direct logit attribution, activation patching, head detection, SVD of an
OV circuit and FactoredMatrix copying scores. Both sides get TL's default weight processing (the
bridge through ``enable_compatibility_mode()``, ours through ``process_weights()``).

Each test also records its max difference in ``CONFORMANCE`` (printed by the last test) for the notes."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import head_detector, patching
from transformer_lens.SVDInterpreter import SVDInterpreter

from tests.support.tl_models import bridged_pair, record_diff

CLEAN = "When Lily and Tom went to the park, Tom gave the ball to"
CORRUPT = "When Lily and Tom went to the park, Lily gave the ball to"
REPEATED = "Lily and Tom went to the park. Lily and Tom went to the park."
TOL = 1e-4
CONFORMANCE: dict[str, float] = {}


@pytest.fixture(scope="module")
def pair(neo_tokenizer, tmp_path_factory):
    """(our processed model, the bridge of its export in compatibility mode)."""
    return bridged_pair(neo_tokenizer, tmp_path_factory, preset="test-neo", seed=7)


def _diff(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    return record_diff(CONFORMANCE, name, a, b)


def _tokens(model, text):
    # Our to_tokens prepends <|endoftext|>; the bridge's HF tokenizer decides for itself. Feed both the
    # same ids so that the comparison is about the models.
    return model.to_tokens(text)


def test_both_are_tl_models(pair):
    protocol = pytest.importorskip("transformer_lens.model_protocol", reason="TransformerLens 3.x has no model_protocol (the protocol checks apply from TL 4)")
    TransformerLensModelWithWeights = protocol.TransformerLensModelWithWeights
    ours, bridge = pair
    assert isinstance(ours, TransformerLensModelWithWeights)
    assert isinstance(bridge, TransformerLensModelWithWeights)


def test_direct_logit_attribution(pair):
    ours, bridge = pair
    tokens = _tokens(ours, CLEAN)
    results = []
    for model in (ours, bridge):
        _, cache = model.run_with_cache(tokens)
        stack, labels = cache.decompose_resid(pos_slice=-1, return_labels=True)
        stack = cache.apply_ln_to_stack(stack, pos_slice=-1)
        answer = ours.to_single_token(" Lily")
        direction = model.tokens_to_residual_directions(torch.tensor([answer]))
        attrs = cache.logit_attrs(stack, tokens=torch.tensor([answer]), pos_slice=-1)
        results.append((labels, attrs, stack @ direction))
    assert results[0][0] == results[1][0]
    assert _diff("decompose_resid + logit_attrs", results[0][1], results[1][1]) < TOL
    assert _diff("apply_ln_to_stack @ residual direction", results[0][2], results[1][2]) < TOL


def test_accumulated_resid_logit_lens(pair):
    ours, bridge = pair
    tokens = _tokens(ours, CLEAN)
    lens = []
    for model in (ours, bridge):
        _, cache = model.run_with_cache(tokens)
        lens.append(cache.accumulated_resid(apply_ln=True, pos_slice=-1) @ model.W_U)
    assert _diff("accumulated_resid (logit lens)", *lens) < TOL


def test_full_resid_decomposition_and_head_results(pair):
    ours, bridge = pair
    tokens = _tokens(ours, CLEAN)
    stacks = []
    for model in (ours, bridge):
        _, cache = model.run_with_cache(tokens)
        stacks.append((cache.get_full_resid_decomposition(pos_slice=-1, expand_neurons=True), cache.stack_head_results(pos_slice=-1)))
    assert _diff("get_full_resid_decomposition", stacks[0][0], stacks[1][0]) < TOL
    assert _diff("stack_head_results", stacks[0][1], stacks[1][1]) < TOL


def test_activation_patching(pair):
    ours, bridge = pair
    clean, corrupt = _tokens(ours, CLEAN), _tokens(ours, CORRUPT)
    assert clean.shape == corrupt.shape
    lily, tom = ours.to_single_token(" Lily"), ours.to_single_token(" Tom")

    def metric(logits):
        return logits[0, -1, lily] - logits[0, -1, tom]

    out = {}
    for name, model in (("ours", ours), ("bridge", bridge)):
        _, clean_cache = model.run_with_cache(clean)
        out[name] = (
            patching.get_act_patch_resid_pre(model, corrupt, clean_cache, metric),
            patching.get_act_patch_attn_head_out_by_pos(model, corrupt, clean_cache, metric),
        )
    assert out["ours"][0].shape == (ours.cfg.n_layers, clean.shape[1])
    assert _diff("patching.get_act_patch_resid_pre", out["ours"][0], out["bridge"][0]) < TOL
    assert _diff("patching.get_act_patch_attn_head_out_by_pos", out["ours"][1], out["bridge"][1]) < TOL
    # Patching the whole clean residual stream before layer 0 at every position restores the clean metric.
    assert (out["ours"][0][0].sum() != 0)


@pytest.mark.parametrize("head", ["previous_token_head", "duplicate_token_head", "induction_head"])
def test_head_detector(pair, head):
    ours, bridge = pair
    # detect_head tokenizes with each model's own to_tokens: the exported tokenizer must agree with ours.
    assert torch.equal(ours.to_tokens(REPEATED), bridge.to_tokens(REPEATED))
    scores = [head_detector.detect_head(model, REPEATED, head) for model in (ours, bridge)]
    assert scores[0].shape == (ours.cfg.n_layers, ours.cfg.n_heads)
    assert _diff(f"head_detector.detect_head({head})", *scores) < TOL


def test_svd_interpreter_on_ov(pair):
    ours, bridge = pair
    vecs = [SVDInterpreter(model).get_singular_vectors("OV", layer_index=1, head_index=2, num_vectors=4) for model in (ours, bridge)]
    # Singular vectors are defined up to sign: compare absolute values.
    assert _diff("SVDInterpreter OV singular vectors (|.|)", vecs[0].abs(), vecs[1].abs()) < TOL


def test_factored_matrix_copying_scores(pair):
    ours, bridge = pair
    scores = []
    for model in (ours, bridge):
        full_ov = model.W_E @ model.OV @ model.W_U  # FactoredMatrix (layer, head, vocab, vocab)
        eig = full_ov.eigenvalues
        scores.append((eig.sum(-1) / eig.abs().sum(-1)).real)
    assert scores[0].shape == (ours.cfg.n_layers, ours.cfg.n_heads)
    assert _diff("FactoredMatrix eigenvalue copying score", *scores) < 1e-3


def test_zz_report(pair):
    """Print the max differences (read by the closing note)."""
    assert CONFORMANCE, "run the whole module"
    for name, d in sorted(CONFORMANCE.items()):
        print(f"conformance: {name}: max |ours - bridge| = {d:.2e}")
