"""External HF models (GPT-2, GPT-Neo) load through tinyinterp.load(..., backend="bridge") with the same hook names.

The default (native) backend is tested in test_native_import.py."""

import pytest
import torch

import tinyinterp
from tests.support.hf_models import save_tiny_hf_model
from tests.support.hooks import LEGACY_HOOKS
from tinyinterp.errors import ModelLoadError
from tinyinterp.hf.bridge import ExternalModel


@pytest.fixture(scope="module", params=["gpt2", "gpt-neo"])
def hf_model_dir(request, tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp(request.param)
    return save_tiny_hf_model(out, request.param, shared_data / "tokenizers" / "gpt2" / "tokenizer.json")


@pytest.fixture(scope="module")
def hf_model(hf_model_dir):
    return tinyinterp.load(hf_model_dir, backend="bridge")


def test_local_hf_folder_loads_with_legacy_hook_names(hf_model):
    model = hf_model
    assert isinstance(model, ExternalModel)
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_mlp) == (2, 4, 128)
    tokens = torch.tensor([model.tokenizer.encode("Once upon a time, Lily saw a cat.")])
    logits, cache = model.run_with_cache(tokens)
    assert set(LEGACY_HOOKS) <= set(cache)
    assert cache["blocks.1.attn.hook_pattern"].shape == (1, 4, tokens.shape[1], tokens.shape[1])
    assert logits.shape == (1, tokens.shape[1], 50257)
    assert model.tokenizer.decode(tokens[0].tolist()) == "Once upon a time, Lily saw a cat."


def test_external_logits_match_transformers(hf_model, hf_model_dir):
    from transformers import AutoModelForCausalLM

    model = hf_model
    hf = AutoModelForCausalLM.from_pretrained(hf_model_dir, attn_implementation="eager").eval()
    tokens = torch.tensor([model.tokenizer.encode("The dog ran to the park.")])
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
        ref = hf(tokens).logits.log_softmax(-1)
    assert (ours - ref).abs().max() < 1e-4


def test_hook_edit_changes_external_output(hf_model):
    model = hf_model
    tokens = torch.tensor([model.tokenizer.encode("Tom has a red ball.")])

    def zero_mlp(act, hook):
        return torch.zeros_like(act)

    with torch.no_grad():
        clean = model(tokens)
        edited = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", zero_mlp)])
    assert (clean - edited).abs().max() > 1e-4


@pytest.mark.parametrize("backend", ["native", "bridge"])
def test_offline_hub_name_fails_with_one_clear_line(monkeypatch, backend):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        tinyinterp.load("roneneldan/TinyStories-1M-not-cached", backend=backend)
    message = str(err.value)
    assert "could not download" in message and "--local-dir" in message and "\n" not in message


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such directory"):
        tinyinterp.load(tmp_path / "nope" / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a tinyinterp run directory"):
        tinyinterp.load(tmp_path / "empty")
