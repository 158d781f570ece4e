"""Export to Hugging Face: transformers, AutoTokenizer and the bridge open the folder offline and agree with us."""

import json

import pytest
import torch

import tinyinterp
from tests.support.hooks import compare_caches
from tinyinterp import rundir
from tinyinterp.cli import main
from tinyinterp.errors import TinyinterpError
from tinyinterp.export import export_model, export_run
from tinyinterp.hf_convert import NotExpressibleError
from tinyinterp.model import HookedTransformer
from tinyinterp.zoo import preset_config

TOL = 1e-4


@pytest.fixture(scope="module")
def stories(shared_data):
    text = (shared_data / "tinystories" / "train-v1-hf-head.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()][:120]


@pytest.fixture(scope="module")
def restricted_tokenizer(shared_data, stories):
    from tinyinterp.tokenizer import Tokenizer

    return Tokenizer.restricted_bpe(shared_data / "tokenizers" / "gpt2" / "tokenizer.json", stories, k=600, progress=False)


def _randomize(model: HookedTransformer, seed: int = 0) -> HookedTransformer:
    """Non-trivial biases and LayerNorm weights (init leaves them 0 / 1, hiding conversion mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith(".w"):
                p.copy_(1 + 0.2 * noise)
            elif name.endswith((".b", "bias")):
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)
    return model.eval()


def _run(tmp_path, tokenizer, preset: str, seed: int = 0, name: str = "run", **overrides):
    model = _randomize(HookedTransformer(preset_config(preset, d_vocab=tokenizer.vocab_size, **overrides), tokenizer), seed)
    return rundir.save_run(tmp_path / name, model, tokenizer)


@pytest.fixture(scope="module")
def neo_export(tmp_path_factory, restricted_tokenizer):
    """A GPT-Neo run (window 8, so local layers matter on short text) and its export."""
    tmp = tmp_path_factory.mktemp("neo")
    run = _run(tmp, restricted_tokenizer, "test-neo")
    return run, export_run(run, tmp / "hf")


def _tokens(tokenizer, stories, n_ctx=64):
    return torch.tensor([tokenizer.encode(" ".join(stories[:3]))[:n_ctx], tokenizer.encode(" ".join(stories[3:6]))[:n_ctx]])


def test_export_writes_a_folder_transformers_loads_offline(neo_export, stories):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, out = neo_export
    assert sorted(p.name for p in out.iterdir()) >= ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["GPTNeoForCausalLM"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    ours = tinyinterp.load(run)
    hf = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    hf_tok = AutoTokenizer.from_pretrained(out)
    for story in stories:  # identical tokenization on the shared TinyStories text
        assert hf_tok(story)["input_ids"] == ours.tokenizer.encode(story)
    assert hf_tok.eos_token_id == ours.tokenizer.eot_id
    tokens = _tokens(ours.tokenizer, stories)
    assert tokens.shape[1] > 8  # longer than the local window
    with torch.no_grad():
        assert (ours(tokens) - hf(tokens).logits).abs().max() < TOL


def test_bridge_of_export_has_our_activations(neo_export, stories):
    run, out = neo_export
    ours = tinyinterp.load(run).process_weights()  # what the bridge's compatibility mode applies
    bridge = tinyinterp.load(out, backend="bridge")
    tokens = _tokens(ours.tokenizer, stories)
    with torch.no_grad():
        our_logits, our_cache = ours.run_with_cache(tokens)
        their_logits, their_cache = bridge.run_with_cache(tokens)
    assert {"blocks.1.attn.hook_pattern", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"} <= set(their_cache.keys())
    assert compare_caches(our_cache, their_cache, "gpt_neo") < TOL
    assert (our_logits.log_softmax(-1) - their_logits.log_softmax(-1)).abs().max() < TOL


def test_export_then_import_is_bit_identical(neo_export):
    run, out = neo_export
    original, imported = tinyinterp.load(run), tinyinterp.load(out)
    assert imported.cfg.attn_types == original.cfg.attn_types and imported.cfg.window_size == 8
    a, b = original.state_dict(), imported.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert imported.tokenizer.encode("Lily saw a dog.") == original.tokenizer.encode("Lily saw a dog.")


def test_gpt2_style_run_exports_as_gpt2(tmp_path, restricted_tokenizer, stories):
    from transformers import AutoModelForCausalLM

    # legacy arch: untied unembedding; its bias is zeroed, so GPT-2 (whose lm_head has none) can hold it.
    run = _run(tmp_path, restricted_tokenizer, "test-tiny")
    model = tinyinterp.load(run)
    with torch.no_grad():
        model.unembed.bias.zero_()
    out = export_model(model, tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    hf = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    tokens = _tokens(model.tokenizer, stories)
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max() < TOL
    imported = tinyinterp.load(out)
    assert all(torch.equal(imported.state_dict()[k], v) for k, v in model.state_dict().items() if k != "unembed.bias")


def test_inexpressible_runs_fail_with_one_line(tmp_path, restricted_tokenizer, capsys):
    legacy = _run(tmp_path, restricted_tokenizer, "test-tiny", name="legacy")  # trained-like non-zero unembedding bias
    assert main(["export", str(legacy), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unembedding has a non-zero bias" in err and "\n" not in err
    assert not (tmp_path / "out").exists()

    scaled_local = HookedTransformer(preset_config("test-neo", d_vocab=restricted_tokenizer.vocab_size, use_attn_scale=True),
                                     restricted_tokenizer)
    with pytest.raises(NotExpressibleError, match="local .* scaled attention"):
        export_model(scaled_local, tmp_path / "out")
    biased_local = _randomize(HookedTransformer(
        preset_config("test-neo", d_vocab=restricted_tokenizer.vocab_size, qkv_bias=True), restricted_tokenizer))
    with pytest.raises(NotExpressibleError, match="q/k/v biases"):
        export_model(biased_local, tmp_path / "out")


def test_cli_export_replaces_an_earlier_export_but_not_other_folders(neo_export, tmp_path, capsys):
    run, _ = neo_export
    out = tmp_path / "hf"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0  # re-export over an earlier export
    assert tinyinterp.load(out).cfg.n_layers == 2
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(TinyinterpError, match="not an earlier Hugging Face export"):
        export_run(run, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_folded_layernorm_model_exports_as_identity_layernorms(tmp_path, restricted_tokenizer, stories):
    from transformers import AutoModelForCausalLM

    # GPT-2 arch with zero LayerNorm biases: folding LN creates no unembedding bias, so HF can hold the result.
    model = _randomize(HookedTransformer(preset_config("test-tiny", d_vocab=restricted_tokenizer.vocab_size, arch="gpt2"),
                                         restricted_tokenizer))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".b"):
                p.zero_()
    model.process_weights(fold_ln=True, center_writing_weights=False, center_unembed=False, fold_value_biases=False)
    assert model.cfg.normalization_type == "LNPre"
    out = export_model(model, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    tokens = _tokens(model.tokenizer, stories)
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max() < TOL
