"""HookedTransformer: hook names, fast-vs-pattern attention agreement, hook editing, KV cache."""

import pytest
import torch

from tests.support.hooks import LEGACY_HOOKS
from tinyinterp.models.config import ModelConfig
from tinyinterp.errors import TinyinterpError
from tinyinterp.models.transformer import HookedTransformer
from tinyinterp.models.zoo import PRESETS, preset_config


def test_every_legacy_hook_name_fires_with_its_shape(tiny_model):
    tokens = torch.randint(0, 100, (3, 10))
    _, cache = tiny_model.run_with_cache(tokens)
    assert set(LEGACY_HOOKS) <= set(cache)
    cfg = tiny_model.cfg
    assert cache["blocks.1.attn.hook_q"].shape == (3, 10, cfg.n_heads, cfg.d_head)
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, cfg.n_heads, 10, 10)
    assert cache["blocks.1.mlp.hook_post"].shape == (3, 10, cfg.d_mlp)
    assert cache["blocks.0.hook_resid_post"].shape == (3, 10, cfg.d_model)
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert torch.allclose(pattern.sum(-1), torch.ones(3, cfg.n_heads, 10))
    assert torch.all(pattern.triu(diagonal=1) == 0), "attention must be causal"


def test_names_filter_caches_only_requested(tiny_model):
    _, cache = tiny_model.run_with_cache(torch.randint(0, 100, (1, 5)), names_filter=lambda n: n.endswith("mlp.hook_post"))
    assert sorted(cache) == ["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"]


def test_fast_path_matches_pattern_path(tiny_model):
    tokens = torch.randint(0, 100, (4, 33))
    with torch.no_grad():
        fast_logits, fast_loss = tiny_model(tokens, return_type="both")
        tiny_model.set_fast_attention(False)
        slow_logits, slow_loss = tiny_model(tokens, return_type="both")
        tiny_model.set_fast_attention(True)
    assert (fast_logits - slow_logits).abs().max() < 1e-5
    assert abs(fast_loss.item() - slow_loss.item()) < 1e-5


def test_pattern_hook_fires_and_edits_output(tiny_model):
    tokens = torch.randint(0, 100, (2, 12))
    seen = []

    def uniform_over_past(pattern, hook):
        seen.append(hook.name)
        T = pattern.shape[-1]
        uniform = torch.ones(T, T).tril()
        return (uniform / uniform.sum(-1, keepdim=True)).expand_as(pattern)

    with torch.no_grad():
        clean = tiny_model(tokens)
        edited = tiny_model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", uniform_over_past)])
        again = tiny_model(tokens)
    assert seen == ["blocks.0.attn.hook_pattern"]
    assert (clean - edited).abs().max() > 1e-4, "editing the pattern must change the output"
    assert torch.equal(clean, again), "hooks must be removed after run_with_hooks"


def test_loss_is_next_token_cross_entropy(tiny_model):
    tokens = torch.randint(0, 100, (2, 9))
    logits, loss = tiny_model(tokens, return_type="both")
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 100), tokens[:, 1:].reshape(-1))
    assert torch.allclose(loss, manual)
    targets = torch.randint(0, 100, (2, 9))
    with_targets = tiny_model(tokens, return_type="loss", targets=targets)
    assert torch.allclose(with_targets, torch.nn.functional.cross_entropy(logits.reshape(-1, 100), targets.reshape(-1)))


@pytest.mark.parametrize("fast", [True, False])
def test_kv_cache_matches_full_forward(tiny_model, fast):
    tiny_model.set_fast_attention(fast)
    tokens = torch.randint(0, 100, (2, 20))
    with torch.no_grad():
        full = tiny_model(tokens)
        cache = tiny_model.new_kv_cache()
        parts = [tiny_model(tokens[:, :7], kv_cache=cache)]
        parts += [tiny_model(tokens[:, i : i + 1], kv_cache=cache) for i in range(7, 12)]
        parts.append(tiny_model(tokens[:, 12:], kv_cache=cache))
    assert len(cache) == 20
    assert (torch.cat(parts, dim=1) - full).abs().max() < 1e-5


def test_context_overflow_is_a_clear_error(tiny_model):
    with pytest.raises(TinyinterpError, match="exceeds the model's context of 64"):
        tiny_model(torch.zeros(1, 65, dtype=torch.long))


def test_param_count_formula_matches_module():
    for name in ("test-tiny", "test-neo", "tinystories-1m", "tinystories-33m"):
        cfg = preset_config(name, d_vocab=1234)
        assert cfg.n_params() == sum(p.numel() for p in HookedTransformer(cfg).parameters())


def test_presets_have_the_paper_shapes():
    shapes = {n: (p.d_model, p.n_layers, p.n_heads, p.n_ctx) for n, p in PRESETS.items()}
    assert shapes["tinystories-1m"] == (64, 8, 16, 2048)
    assert shapes["tinystories-33m"] == (768, 4, 16, 2048)
    assert shapes["tinystories-2l-33m"] == (1024, 2, 16, 2048)
    cfg = preset_config("tinystories-28m", d_vocab=10001)
    assert cfg.d_mlp == 2048 and cfg.act_fn == "gelu_new"
    # GPT-Neo, as the official checkpoints: alternating global/local (window 256), unscaled scores,
    # bias-free q/k/v, tied unembedding without bias.
    assert cfg.attn_types == ["global", "local"] * 4 and cfg.window_size == 256
    assert not cfg.use_attn_scale and not cfg.qkv_bias and cfg.tie_embeddings and not cfg.unembed_bias
    assert preset_config("tinystories-1l-21m", d_vocab=10).attn_types == ["global"]


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        ModelConfig(d_model=30, n_layers=1, n_heads=4)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("tinystories-9000m", d_vocab=10)
