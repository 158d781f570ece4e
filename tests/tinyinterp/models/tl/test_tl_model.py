"""Our HookedTransformer is a TransformerLens model: protocol, ActivationCache, weights in TL shapes
(views vs copies), hook_scale / hook_result, local attention, weight processing, tokens, generate."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformer_lens.ActivationCache import ActivationCache

from tinyinterp.models.config import ModelConfig
from tinyinterp.errors import TinyinterpError
from tinyinterp.models.transformer import HookedTransformer, _attention_mask

from tests.support.tl_models import build

PROMPT = "When Lily and Tom went to the park, Tom gave the ball to"


def test_is_a_transformerlens_model(neo_model):
    protocol = pytest.importorskip("transformer_lens.model_protocol", reason="TransformerLens 3.x has no model_protocol (the protocol checks apply from TL 4)")
    TransformerLensModel, TransformerLensModelWithWeights = protocol.TransformerLensModel, protocol.TransformerLensModelWithWeights
    assert isinstance(neo_model, TransformerLensModel)
    assert isinstance(neo_model, TransformerLensModelWithWeights)


def test_run_with_cache_returns_activation_cache(neo_model):
    tokens = neo_model.to_tokens(PROMPT)
    logits, cache = neo_model.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache)
    assert torch.equal(cache["pattern", 0], cache["blocks.0.attn.hook_pattern"])
    assert torch.equal(cache["resid_post", -1], cache[f"blocks.{neo_model.cfg.n_layers - 1}.hook_resid_post"])
    assert cache["scale", 0, "ln1"].shape == (1, tokens.shape[1], 1)
    _, raw = neo_model.run_with_cache(tokens, return_cache_object=False)
    assert isinstance(raw, dict) and raw.keys() == cache.cache_dict.keys()
    _, single = neo_model.run_with_cache(tokens, remove_batch_dim=True, names_filter=lambda n: "pattern" in n)
    assert single["pattern", 1].shape == (neo_model.cfg.n_heads, tokens.shape[1], tokens.shape[1])
    # Text input works too, as in TL.
    logits_text, _ = neo_model.run_with_cache(PROMPT)
    assert torch.allclose(logits, logits_text)


def test_accumulated_resid_reconstructs_logits(neo_model):
    """Logit lens at the last layer with the final LayerNorm equals the model's own logits."""
    tokens = neo_model.to_tokens(PROMPT)
    logits, cache = neo_model.run_with_cache(tokens)
    stack = cache.accumulated_resid(apply_ln=True)
    assert stack.shape[0] == neo_model.cfg.n_layers + 1
    lens = stack[-1] @ neo_model.W_U + neo_model.b_U
    assert (lens - logits).abs().max() < 1e-4


def test_decompose_resid_sums_to_final_residual(neo_model):
    tokens = neo_model.to_tokens(PROMPT)
    _, cache = neo_model.run_with_cache(tokens)
    parts = cache.decompose_resid()
    final = cache["resid_post", -1]
    assert (parts.sum(0) - final).abs().max() < 1e-4


def test_head_results_and_full_decomposition(neo_model):
    """stack_head_results from hook_z + W_O, plus neurons, embeddings and biases, rebuild the
    residual stream; the opt-in hook_result agrees with what TL computes."""
    tokens = neo_model.to_tokens(PROMPT)
    _, cache = neo_model.run_with_cache(tokens)
    full = cache.get_full_resid_decomposition(expand_neurons=True)
    assert (full.sum(0) - cache["resid_post", -1]).abs().max() < 1e-3
    heads = cache.stack_head_results()
    neo_model.set_use_attn_result(True)
    try:
        _, cache2 = neo_model.run_with_cache(tokens)
    finally:
        neo_model.set_use_attn_result(False)
    result = cache2["result", 0]
    assert result.shape == (1, tokens.shape[1], neo_model.cfg.n_heads, neo_model.cfg.d_model)
    assert (result.sum(2) + neo_model.blocks[0].attn.b_O - cache2["attn_out", 0]).abs().max() < 1e-5
    assert (heads[: neo_model.cfg.n_heads] - result[0].permute(1, 0, 2)[:, None]).abs().max() < 1e-5


def test_apply_ln_to_stack_and_logit_attrs(neo_model):
    tokens = neo_model.to_tokens(PROMPT)
    logits, cache = neo_model.run_with_cache(tokens)
    stack = cache.decompose_resid(pos_slice=-1)
    normed = cache.apply_ln_to_stack(stack, pos_slice=-1)
    # With LN folded into W_U the per-component attributions sum to the (centred) logit.
    attrs = cache.logit_attrs(stack, tokens=" ball", pos_slice=-1)
    assert attrs.shape == (stack.shape[0], 1)
    assert normed.shape == stack.shape


def test_weights_have_tl_shapes(neo_model):
    c = neo_model.cfg
    L, H, d, dh, m, V = c.n_layers, c.n_heads, c.d_model, c.d_head, c.d_mlp, c.d_vocab
    shapes = {
        "W_E": (V, d), "W_pos": (c.n_ctx, d), "W_U": (d, V), "b_U": (V,),
        "W_Q": (L, H, d, dh), "W_K": (L, H, d, dh), "W_V": (L, H, d, dh), "W_O": (L, H, dh, d),
        "b_Q": (L, H, dh), "b_O": (L, d), "W_in": (L, d, m), "b_in": (L, m), "W_out": (L, m, d), "b_out": (L, d),
    }
    for name, shape in shapes.items():
        assert tuple(getattr(neo_model, name).shape) == shape, name
    assert neo_model.blocks[1].attn.W_O.shape == (H, dh, d)
    assert neo_model.QK.shape == (L, H, d, d) and neo_model.blocks[0].attn.OV.shape == (H, d, d)
    assert neo_model.accumulated_bias(1, mlp_input=True).shape == (d,)
    expected = neo_model.blocks[0].attn.b_O + neo_model.blocks[0].mlp.b_out + neo_model.blocks[1].attn.b_O
    assert torch.allclose(neo_model.accumulated_bias(1, mlp_input=True), expected)


def test_weights_compute_what_the_model_computes(neo_model):
    """q from hook_q equals ln1(resid) @ W_Q + b_Q; MLP pre-activations equal ln2(resid) @ W_in + b_in."""
    tokens = neo_model.to_tokens(PROMPT)
    _, cache = neo_model.run_with_cache(tokens)
    x = cache["normalized", 1, "ln1"]
    q = torch.einsum("bpd,hde->bphe", x, neo_model.blocks[1].attn.W_Q) + neo_model.blocks[1].attn.b_Q
    assert (q - cache["q", 1]).abs().max() < 1e-5
    pre = cache["normalized", 1, "ln2"] @ neo_model.W_in[1] + neo_model.b_in[1]
    assert (pre - cache["pre", 1]).abs().max() < 1e-5
    unembedded = cache["ln_final.hook_normalized"] @ neo_model.W_U + neo_model.b_U
    assert (unembedded - neo_model(tokens)).abs().max() < 1e-5


def test_per_block_weights_are_views_and_stacked_ones_copies(neo_model):
    tokens = neo_model.to_tokens(PROMPT)
    before = neo_model(tokens)
    stacked = neo_model.W_Q
    stacked.zero_()  # a copy: the model is unchanged
    assert torch.equal(neo_model(tokens), before)
    with torch.no_grad():
        neo_model.blocks[0].attn.W_Q[:] = 0  # a view: the model changes
        neo_model.blocks[0].mlp.W_out[:] = 0
    assert neo_model.blocks[0].attn.qkv.weight[: neo_model.cfg.d_model].abs().max() == 0
    assert neo_model.blocks[0].mlp.fc_out.weight.abs().max() == 0
    assert not torch.allclose(neo_model(tokens), before)
    assert neo_model.W_U.data_ptr() == neo_model.embed.weight.data_ptr()  # tied


def test_tl_state_dict_round_trips(neo_tokenizer):
    a, b = build(neo_tokenizer, seed=1), build(neo_tokenizer, seed=2)
    b.load_tl_state_dict(a.tl_state_dict())
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("preset", ["test-neo", "test-tiny"])
def test_process_weights_keeps_outputs(neo_tokenizer, preset):
    model = build(neo_tokenizer, preset=preset)
    tokens = model.to_tokens([PROMPT, "Once upon a time there was a little dog named Max who loved to run"], padding_side="right")
    before = model(tokens)
    model.process_weights()  # TL's from_pretrained defaults
    after = model(tokens)
    assert model.cfg.normalization_type == "LNPre" and model.blocks[0].ln1.w is None
    # centre_unembed: logits move by a per-position constant; log-probs are unchanged.
    shift = (after - before).mean(-1, keepdim=True)
    assert (after - before - shift).abs().max() < 1e-4
    assert (after.log_softmax(-1) - before.log_softmax(-1)).abs().max() < 1e-4
    # Folded weights are what TL expects: centred writing weights, W_U centred over d_model.
    assert model.W_out.mean(-1).abs().max() < 1e-5 and model.W_U.mean(0).abs().max() < 1e-5
    # Without centring the unembedding, raw logits are unchanged.
    fresh = build(neo_tokenizer, preset=preset)
    fresh.process_weights(center_unembed=False)
    assert (fresh(tokens) - before).abs().max() < 1e-4


def test_processed_model_saves_and_reloads(tmp_path, neo_tokenizer):
    from tinyinterp.runs import rundir

    model = build(neo_tokenizer).process_weights()
    tokens = model.to_tokens(PROMPT)
    rundir.save_run(tmp_path / "run", model, neo_tokenizer)
    again = rundir.load_run(tmp_path / "run")
    assert again.cfg.normalization_type == "LNPre" and again.cfg.qkv_bias
    assert torch.equal(again(tokens), model(tokens))


def test_hook_scale_is_the_layernorm_scale(neo_model):
    tokens = neo_model.to_tokens(PROMPT)
    plain = neo_model(tokens)
    logits, cache = neo_model.run_with_cache(tokens, names_filter=lambda n: n.endswith(("hook_scale", "hook_resid_pre")))
    assert (logits - plain).abs().max() < 1e-5  # the explicit LayerNorm path agrees with the fused one
    resid = cache["resid_pre", 1]
    expected = (resid.var(-1, unbiased=False, keepdim=True) + neo_model.cfg.eps).sqrt()
    assert (cache["scale", 1, "ln1"] - expected).abs().max() < 1e-5


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 12), past=st.integers(0, 12), window=st.one_of(st.none(), st.integers(1, 10)))
def test_attention_mask_matches_gpt_neo(T, past, window):
    mask = _attention_mask(T, past, window, torch.device("cpu"))
    for i in range(T):
        for j in range(past + T):
            query = past + i
            visible = j <= query and (window is None or query - j < window)
            assert bool(mask[i, j]) == visible


def test_local_layers_fast_and_slow_paths_agree_beyond_the_window(neo_tokenizer):
    model = build(neo_tokenizer)  # test-neo: layer 1 is local with an 8-token window
    assert model.cfg.attn_type(1) == "local"
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 40))
    fast = model(tokens)
    _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")
    pattern = cache["pattern", 1]
    q, k = torch.arange(40)[:, None], torch.arange(40)[None]
    assert pattern[..., (q - k >= 8) | (k > q)].abs().max() == 0  # nothing outside the window
    model.set_fast_attention(False)
    assert (model(tokens) - fast).abs().max() < 1e-5
    # A global layer differs from a local one on long inputs.
    glob = build(neo_tokenizer, attn_types=["global", "global"])
    assert (glob(tokens)[:, 20:] - fast[:, 20:]).abs().max() > 1e-4
    assert (glob(tokens)[:, :8] - fast[:, :8]).abs().max() < 1e-5


def test_kv_cache_matches_full_forward_past_the_window(neo_tokenizer):
    model = build(neo_tokenizer)
    tokens = torch.randint(0, model.cfg.d_vocab, (1, 30))
    full = model(tokens)
    cache = model.new_kv_cache()
    parts = [model(tokens[:, :5], kv_cache=cache)]
    parts += [model(tokens[:, i : i + 1], kv_cache=cache) for i in range(5, 20)]
    parts.append(model(tokens[:, 20:], kv_cache=cache))
    assert (torch.cat(parts, dim=1) - full).abs().max() < 1e-5


def test_to_tokens_prepends_endoftext_as_bos(neo_model, neo_tokenizer):
    eot = neo_tokenizer.eot_id
    tokens = neo_model.to_tokens(PROMPT)
    assert tokens[0, 0] == eot and tokens[0, 1:].tolist() == neo_tokenizer.encode(PROMPT)
    assert neo_model.to_tokens(PROMPT, prepend_bos=False)[0].tolist() == neo_tokenizer.encode(PROMPT)
    batch = neo_model.to_tokens(["Lily", "Lily ran to Tom"], padding_side="left")
    lily = neo_tokenizer.encode("Lily")
    assert batch.shape == (2, 1 + len(neo_tokenizer.encode("Lily ran to Tom")))
    assert batch[0, -len(lily):].tolist() == lily and (batch[0, : -len(lily)] == eot).all()
    strs = neo_model.to_str_tokens(PROMPT)
    assert strs[0] == "<|endoftext|>" and "".join(strs[1:]) == PROMPT
    assert neo_model.to_str_tokens(tokens) == strs and neo_model.to_str_tokens(tokens[0]) == strs
    assert neo_model.to_string(tokens[0, 1:]) == PROMPT
    tom = neo_model.to_single_token(" Tom")
    assert neo_model.get_token_position(" Tom", PROMPT) == strs.index(" Tom")
    assert neo_model.get_token_position(tom, tokens, mode="last") == len(strs) - 1 - strs[::-1].index(" Tom")
    with pytest.raises(TinyinterpError, match="not one"):
        neo_model.to_single_token(" Lily and Tom")
    assert torch.equal(neo_model.tokens_to_residual_directions(" Tom"), neo_model.W_U[:, tom])
    assert neo_model.tokens_to_residual_directions(torch.tensor([[tom, tom]])).shape == (1, 2, neo_model.cfg.d_model)
    assert neo_model.tokens_to_residual_directions(torch.tensor([tom])).shape == (neo_model.cfg.d_model,)


@settings(max_examples=30, deadline=None)
@given(text=st.text(min_size=1, max_size=40))
def test_to_str_tokens_round_trips_any_text(neo_tokenizer, text):
    model = HookedTransformer(ModelConfig(32, 1, n_heads=4, d_vocab=neo_tokenizer.vocab_size), tokenizer=neo_tokenizer)
    ids = model.to_tokens(text, prepend_bos=False)[0]
    assert model.to_string(ids) == text
    assert "".join(model.to_str_tokens(text, prepend_bos=False)) == text or "\ufffd" in "".join(model.to_str_tokens(ids))


def test_generate_greedy_matches_the_library_sampler(neo_model):
    from tinyinterp.models.generation import SamplingConfig, generate_tokens

    prompt = neo_model.to_tokens("Once upon a time")
    ours = neo_model.generate(prompt, max_new_tokens=12, do_sample=False, stop_at_eos=False, verbose=False)
    library = generate_tokens(neo_model, [prompt[0].tolist()], SamplingConfig(max_new_tokens=12, temperature=0, stop_at_eot=False))
    assert ours[0, prompt.shape[1]:].tolist() == library[0]
    no_cache = neo_model.generate(prompt, max_new_tokens=12, do_sample=False, stop_at_eos=False, use_past_kv_cache=False, verbose=False)
    assert torch.equal(ours, no_cache)
    text = neo_model.generate("Once upon a time", max_new_tokens=5, temperature=0.7, top_k=20, top_p=0.9, seed=3, verbose=False)
    assert isinstance(text, str) and text.startswith("<|endoftext|>Once upon a time")
    again = neo_model.generate("Once upon a time", max_new_tokens=5, temperature=0.7, top_k=20, top_p=0.9, seed=3, verbose=False)
    assert text == again


def test_generate_stops_at_eos(neo_model, neo_tokenizer):
    with torch.no_grad():
        neo_model.embed.weight[neo_tokenizer.eot_id] *= 0  # tied: EOT's logit is 0 …
        neo_model.ln_final.b.zero_()
    eos = int(neo_model(neo_model.to_tokens("Lily"))[0, -1].argmax())  # … so use whatever greedy picks first
    out = neo_model.generate("Lily", max_new_tokens=8, do_sample=False, eos_token_id=eos, verbose=False, return_type="tokens")
    assert out.shape[1] == neo_model.to_tokens("Lily").shape[1] + 1 and out[0, -1] == eos


def test_old_run_configs_load_as_before():
    """A config.json written before the architecture options existed builds the same model as then."""
    old = {"d_model": 32, "n_layers": 2, "n_heads": 4, "d_mlp": 128, "d_vocab": 50, "n_ctx": 64,
           "act_fn": "gelu_new", "layer_norm_eps": 1e-5, "init_range": 0.02, "tie_embeddings": False, "preset": "test-tiny"}
    model = HookedTransformer(ModelConfig.from_dict(old))
    names = set(model.state_dict())
    assert "unembed.bias" in names and "blocks.0.attn.qkv.bias" in names and "blocks.0.ln1.w" in names
    assert model.cfg.use_attn_scale and model.cfg.attn_types is None


def test_loss_per_token_and_text_input(neo_model):
    tokens = neo_model.to_tokens(PROMPT)
    per_token = neo_model(tokens, return_type="loss", loss_per_token=True)
    assert per_token.shape == (1, tokens.shape[1] - 1)
    assert torch.allclose(per_token.mean(), neo_model(tokens, return_type="loss"))
    logp = neo_model(tokens).log_softmax(-1)[0, :-1].gather(-1, tokens[0, 1:, None])[:, 0]
    assert torch.allclose(per_token[0], -logp, atol=1e-5)
    assert torch.equal(neo_model(PROMPT), neo_model(tokens))
