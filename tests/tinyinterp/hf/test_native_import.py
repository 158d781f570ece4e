"""Native import of GPT-Neo / GPT-2 checkpoints: our HookedTransformer equals transformers and the bridge.

Random-init models are built locally from the official configurations (tests/support/hf_models.py), with
every parameter randomised so biases and LayerNorm weights matter. No network.
"""

import json

import pytest
import torch

import tinyinterp
from tests.support.hf_models import save_official_hf_model
from tests.support.hooks import compare_caches
from tinyinterp.hf.bridge import ExternalModel
from tinyinterp.models.transformer import HookedTransformer

TOL = 1e-4

# (official config, overrides, sequence length). The official window is 256, so the 1M case runs 300
# tokens; the window-8 copy tests windowing cheaply; the big ones need only a short sequence.
CASES = {
    "1m": ("TinyStories-1M", {}, 300),
    "1m-window8": ("TinyStories-1M", {"window_size": 8, "vocab_size": 1000}, 40),
    "33m": ("TinyStories-33M", {}, 24),
    "1layer-21m": ("TinyStories-1Layer-21M", {}, 24),
    "gpt2-xl-width": ("gpt2-xl-width", {}, 24),
    "gpt2-narrow": ("gpt2-xl-width", {"n_embd": 64, "n_head": 4, "vocab_size": 1000}, 40),
}
SLOW = {"33m", "1layer-21m", "gpt2-xl-width"}


@pytest.fixture(scope="module", params=[pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k for k in CASES])
def case(request, tmp_path_factory, shared_data):
    name, overrides, seq = CASES[request.param]
    folder = save_official_hf_model(
        tmp_path_factory.mktemp(request.param), name, tokenizer_json=shared_data / "tokenizers" / "gpt2" / "tokenizer.json",
        **overrides,
    )
    vocab = overrides.get("vocab_size", 50257)
    tokens = torch.randint(0, vocab, (2, seq), generator=torch.Generator().manual_seed(1))
    return folder, tokens


def _hf_logits(folder, tokens):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        return hf(tokens).logits


def test_native_import_matches_transformers(case):
    folder, tokens = case
    model = tinyinterp.load(folder)
    assert isinstance(model, HookedTransformer)
    try:  # the protocol exists from TL 4 on; TL 3.x (sae-lens's) has none to check against
        from transformer_lens.model_protocol import TransformerLensModelWithWeights
    except ImportError:
        TransformerLensModelWithWeights = HookedTransformer
    assert isinstance(model, TransformerLensModelWithWeights)
    with torch.no_grad():
        ours = model(tokens)
    ref = _hf_logits(folder, tokens)
    assert (ours - ref).abs().max() < TOL
    assert (ours.log_softmax(-1) - ref.log_softmax(-1)).abs().max() < TOL
    # Processed weights (TL's from_pretrained defaults) keep log-probabilities.
    with torch.no_grad():
        processed = model.process_weights()(tokens)
    assert (processed.log_softmax(-1) - ref.log_softmax(-1)).abs().max() < TOL


def test_native_hooks_match_bridge(case):
    folder, tokens = case

    arch = json.loads((folder / "config.json").read_text())["model_type"]
    bridge = tinyinterp.load(folder, backend="bridge")
    assert isinstance(bridge, ExternalModel)
    model = tinyinterp.load(folder).process_weights()  # what enable_compatibility_mode applies
    with torch.no_grad():
        ours_logits, ours = model.run_with_cache(tokens)
        their_logits, theirs = bridge.run_with_cache(tokens)
    n_layers = model.cfg.n_layers
    expected = {"hook_embed", "hook_pos_embed", "ln_final.hook_normalized"} | {
        f"blocks.{l}.{h}" for l in range(n_layers)
        for h in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_q",
                  "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_pattern", "attn.hook_attn_scores",
                  "mlp.hook_pre", "mlp.hook_post", "ln1.hook_normalized", "ln2.hook_normalized", "ln1.hook_scale")
    }
    assert expected <= set(ours.keys()) & set(theirs.keys())
    assert compare_caches(ours, theirs, arch) < TOL
    assert (ours_logits.log_softmax(-1) - their_logits.log_softmax(-1)).abs().max() < TOL


def test_local_layers_see_only_the_window(tmp_path, shared_data):
    folder = save_official_hf_model(
        tmp_path / "neo", "TinyStories-1M", tokenizer_json=shared_data / "tokenizers" / "gpt2" / "tokenizer.json",
        window_size=8, vocab_size=1000, num_layers=2, attention_types=[[["global", "local"], 1]],
    )
    model = tinyinterp.load(folder)
    assert model.cfg.attn_types == ["global", "local"] and model.cfg.window_size == 8
    assert not model.cfg.use_attn_scale and not model.cfg.qkv_bias and model.cfg.tie_embeddings
    tokens = torch.randint(0, 1000, (1, 20), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    local, glob = cache["blocks.1.attn.hook_pattern"][0], cache["blocks.0.attn.hook_pattern"][0]
    query, key = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
    assert (local[:, query - key >= 8] == 0).all() and (local[:, (query - key < 8) & (key <= query)] > 0).all()
    assert (glob[:, key <= query] > 0).all()


def test_imported_model_generates_with_kv_cache(tmp_path, shared_data):
    folder = save_official_hf_model(
        tmp_path / "neo", "TinyStories-1M", tokenizer_json=shared_data / "tokenizers" / "gpt2" / "tokenizer.json",
        window_size=8,
    )
    model = tinyinterp.load(folder)
    prompt = model.to_tokens("Once upon a time, there was a little girl named Lily. She")
    with_cache = model.generate(prompt, max_new_tokens=12, do_sample=False, use_past_kv_cache=True, verbose=False)
    without = model.generate(prompt, max_new_tokens=12, do_sample=False, use_past_kv_cache=False, verbose=False)
    assert torch.equal(with_cache, without)


def test_unsupported_architecture_option_falls_back_to_bridge(tmp_path, shared_data, caplog):
    from tinyinterp.hf.convert import NotExpressibleError, config_from_hf

    folder = save_official_hf_model(
        tmp_path / "gpt2", "gpt2-xl-width", tokenizer_json=shared_data / "tokenizers" / "gpt2" / "tokenizer.json",
        n_embd=32, n_head=4, n_layer=2, n_positions=64, scale_attn_by_inverse_layer_idx=True,
    )

    with pytest.raises(NotExpressibleError, match="scale_attn_by_inverse_layer_idx"):
        config_from_hf(json.loads((folder / "config.json").read_text()))
    with caplog.at_level("INFO"):
        model = tinyinterp.load(folder)
    assert isinstance(model, ExternalModel)
    assert "TransformerBridge" in caplog.text


def test_bad_backend_and_bridge_on_a_run_are_one_line_errors(tiny_run):
    from tinyinterp.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="choose one of native, bridge"):
        tinyinterp.load(tiny_run, backend="fast")
    with pytest.raises(ModelLoadError, match="tinyinterp export"):
        tinyinterp.load(tiny_run, backend="bridge")


@pytest.mark.parametrize("backend", ["native", "bridge"])
def test_cli_generate_takes_a_backend(tmp_path, shared_data, capsys, backend):
    from tinyinterp.cli import main

    folder = save_official_hf_model(
        tmp_path / "neo", "TinyStories-1M", tokenizer_json=shared_data / "tokenizers" / "gpt2" / "tokenizer.json",
        window_size=8, num_layers=2, attention_types=[[["global", "local"], 1]],
    )
    argv = ["generate", str(folder), "Once upon a time", "--max-new-tokens", "12", "--temperature", "0", "--json",
            "--backend", backend]
    assert main(argv) == 0
    completion = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["completion"]
    model = tinyinterp.load(folder)  # greedy: both backends continue the prompt exactly as our model does
    # The CLI and model.generate share one BOS policy: <|endoftext|> first (model.generate returns it too).
    expected = model.generate("Once upon a time", max_new_tokens=12, do_sample=False,
                              stop_at_eos=False, verbose=False).removeprefix(model.tokenizer.eot_token)
    assert completion and expected.startswith("Once upon a time" + completion)


@pytest.mark.parametrize("official, preset", [
    ("TinyStories-1M", "tinystories-1m"), ("TinyStories-33M", "tinystories-33m"),
    ("TinyStories-1Layer-21M", "tinystories-1l-21m"),
])
def test_official_configs_are_the_zoo_presets(official, preset):
    from tests.support.hf_models import OFFICIAL_HF_CONFIGS
    from tinyinterp.hf.convert import config_from_hf
    from tinyinterp.models.zoo import preset_config

    imported = config_from_hf(OFFICIAL_HF_CONFIGS[official])
    assert imported.to_dict() == {**preset_config(preset, d_vocab=50257).to_dict(), "preset": None}


def test_attention_types_round_trip_through_the_run_length_form():
    from hypothesis import given, strategies as st

    from tinyinterp.hf.gpt_neo import compress_attention_types, expand_attention_types

    @given(st.lists(st.sampled_from(["global", "local"]), min_size=1, max_size=24))
    def check(layers):
        compressed = compress_attention_types(layers)
        assert expand_attention_types(compressed) == layers
        assert len(compressed[0][0]) <= len(layers)

    check()
    assert compress_attention_types(["global", "local"] * 4) == [[["global", "local"], 4]]


def test_original_gpt2_file_layout_is_read():
    """openai-community/gpt2's files have no ``transformer.`` prefix and carry ``h.{l}.attn.bias`` mask buffers."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tinyinterp.hf.convert import GPT2, NotExpressibleError, config_from_hf, params_from_hf

    hf = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=16, vocab_size=50))
    cfg = config_from_hf(hf.config)
    modern = params_from_hf(hf.state_dict(), cfg, GPT2)
    original = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    original.update({f"h.{l}.attn.bias": torch.ones(1, 1, 16, 16) for l in range(2)})
    original.update({f"h.{l}.attn.masked_bias": torch.tensor(-1e4) for l in range(2)})
    assert all(torch.equal(v, params_from_hf(original, cfg, GPT2)[k]) for k, v in modern.items())
    with pytest.raises(NotExpressibleError, match="unexpected weights"):
        params_from_hf({**original, "h.0.attn.rotary.weight": torch.zeros(2)}, cfg, GPT2)
    del original["h.1.mlp.c_fc.weight"]
    with pytest.raises(NotExpressibleError, match="missing weight 'h.1.mlp.c_fc.weight'"):
        params_from_hf(original, cfg, GPT2)
