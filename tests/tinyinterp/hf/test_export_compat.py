"""The export's tokenizer_config.json / config.json carry names and keys transformers 4.x reads, and 5.x still loads.

transformers 4.x is not in this venv: scripts/compat.sh loads an export under 4.57 and compares logits; here we
assert on the written files (5.x's own ``save_pretrained`` writes ``TokenizersBackend``, a name 4.x lacks).
"""

import json

import pytest
import torch

from tinyinterp.hf.export import HF_TOKENIZER_CLASS, export_model
from tinyinterp.models.transformer import HookedTransformer
from tinyinterp.models.zoo import preset_config

# Tokenizer classes transformers 4.x (4.40 … 4.57) can import from a tokenizer_config.json.
_TRANSFORMERS_4_NAMES = {"PreTrainedTokenizerFast", "GPT2TokenizerFast", "GPT2Tokenizer"}


@pytest.fixture(scope="module")
def export(tmp_path_factory, shared_data):
    from tinyinterp.data.tokenizer import Tokenizer

    docs = (shared_data / "tinystories" / "train-v1-hf-head.txt").read_text(encoding="utf-8").splitlines()[:100]
    tok = Tokenizer.restricted_bpe(shared_data / "tokenizers" / "gpt2" / "tokenizer.json", docs, k=500, progress=False)
    torch.manual_seed(0)
    model = HookedTransformer(preset_config("test-neo", d_vocab=tok.vocab_size), tok).eval()
    return model, export_model(model, tmp_path_factory.mktemp("compat") / "hf")


def test_tokenizer_config_names_a_class_transformers_4_has(export):
    _, out = export
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == HF_TOKENIZER_CLASS and HF_TOKENIZER_CLASS in _TRANSFORMERS_4_NAMES
    assert config["bos_token"] == config["eos_token"] == "<|endoftext|>" and config["add_bos_token"] is False
    assert (out / "tokenizer.json").is_file()  # what PreTrainedTokenizerFast reads, in 4.x and 5.x alike


def test_model_config_has_the_dtype_key_of_both_versions(export):
    _, out = export
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == config["torch_dtype"] == "float32"  # 4.56+ / 5.x read dtype, older 4.x torch_dtype
    assert config["model_type"] == "gpt_neo" and config["architectures"] == ["GPTNeoForCausalLM"]


def test_installed_transformers_still_loads_the_export(export, shared_data):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, out = export
    hf_tok = AutoTokenizer.from_pretrained(out)
    text = (shared_data / "tinystories" / "train-v1-hf-head.txt").read_text(encoding="utf-8")[:4000]
    assert hf_tok(text)["input_ids"] == model.tokenizer.encode(text)
    assert hf_tok.bos_token_id == hf_tok.eos_token_id == model.tokenizer.eot_id
    hf = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert hf.dtype == torch.float32
    tokens = torch.tensor([model.tokenizer.encode(text)[:48]])
    with torch.no_grad():
        assert (hf(tokens).logits - model(tokens)).abs().max() < 1e-4
