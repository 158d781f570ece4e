"""Bad input to attribution is one line naming what is wrong: prompt, transcoder folder, target."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.support.attribution_models import build_model, random_transcoders, save_transcoder_set
from tinyinterp.attribution import attribute, load_transcoder_set
from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, save_dictionary
from tinyinterp.errors import TinyinterpError


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


@pytest.fixture
def model(tiny_tokenizer):
    return build_model("gpt-neo", seed=0, tokenizer=tiny_tokenizer)


@pytest.fixture
def folder(model, tmp_path):
    return save_transcoder_set(random_transcoders(model, seed=1), tmp_path / "transcoders")


def test_prompt_longer_than_context(model, folder):
    transcoders = load_transcoder_set(folder, model)
    tokens = torch.zeros(model.cfg.n_ctx + 1, dtype=torch.long)
    with pytest.raises(TinyinterpError) as e:
        attribute(model, transcoders, tokens)
    assert "65 tokens exceeds the model's context of 64" in one_line(e)
    with pytest.raises(TinyinterpError) as e:
        attribute(model, transcoders, "Lily " * 80)
    assert "exceeds the model's context" in one_line(e)
    attribute(model, transcoders, tokens[:-1], max_n_logits=1)  # exactly n_ctx is fine


def test_target_that_is_not_one_token(model, folder, tiny_tokenizer):
    transcoders = load_transcoder_set(folder, model)
    word = " playground and"
    assert len(tiny_tokenizer.encode(word)) > 1
    with pytest.raises(TinyinterpError) as e:
        attribute(model, transcoders, "Lily went to the", target=word)
    assert "--target ' playground and' is" in one_line(e) and "not one" in one_line(e)
    with pytest.raises(TinyinterpError) as e:
        attribute(model, transcoders, "Lily went to the", target=10_000)
    assert "outside the vocabulary" in one_line(e)


def test_transcoders_for_another_layer_count(model, folder, tiny_tokenizer, tmp_path):
    deeper = build_model("gpt-neo", seed=0, tokenizer=tiny_tokenizer, n_layers=3)
    with pytest.raises(TinyinterpError) as e:
        load_transcoder_set(folder, deeper)
    assert "no transcoder for layer(s) [2]" in one_line(e)
    shallow = build_model("gpt-neo", seed=0, tokenizer=tiny_tokenizer, n_layers=1)
    with pytest.raises(TinyinterpError) as e:
        load_transcoder_set(folder, shallow)
    assert "a transcoder for layer 1, but the model has 1 layers" in one_line(e)


def test_transcoders_for_another_model(folder, tiny_tokenizer):
    wider = build_model("gpt-neo", seed=0, tokenizer=tiny_tokenizer, d_model=48)
    with pytest.raises(TinyinterpError) as e:
        load_transcoder_set(folder, wider)
    assert "widths 32 -> 32, the model's MLPs 48 -> 48" in one_line(e)
    named = build_model("gpt-neo", seed=0, tokenizer=tiny_tokenizer)
    named.name = "roneneldan/TinyStories-33M"
    other = random_transcoders(named, seed=2)  # records the model name it belongs to
    path = save_transcoder_set(other, folder.parent / "named")
    load_transcoder_set(path, named)
    with pytest.raises(TinyinterpError) as e:
        load_transcoder_set(path, named, model_name="roneneldan/TinyStories-1M")
    assert "trained on model 'roneneldan/TinyStories-33M', not 'roneneldan/TinyStories-1M'" in one_line(e)


def test_missing_duplicate_and_wrong_dictionaries(model, folder, tmp_path):
    missing = tmp_path / "missing"
    shutil.copytree(folder, missing)
    shutil.rmtree(missing / "layer_00")
    with pytest.raises(TinyinterpError) as e:
        load_transcoder_set(missing, model)
    assert "no transcoder for layer(s) [0]" in one_line(e)

    duplicate = tmp_path / "duplicate"
    shutil.copytree(folder, duplicate)
    shutil.copytree(folder / "layer_01", duplicate / "layer_01_again")
    with pytest.raises(TinyinterpError) as e:
        load_transcoder_set(duplicate, model)
    assert "two transcoders for layer 1 (layer_01 and layer_01_again)" in one_line(e)

    sae = tmp_path / "with_sae"
    shutil.copytree(folder, sae)
    hook = "blocks.0.hook_resid_post"
    save_dictionary(SparseCoder(DictionaryConfig("sae", hook, hook, 32, 32, 16, 2)), sae / "sae")
    with pytest.raises(TinyinterpError) as e:
        load_transcoder_set(sae, model)
    assert "is not an MLP transcoder" in one_line(e)

    for bad, expected in ((tmp_path / "nowhere", "not a folder"), (tmp_path, "no dictionary sub-folders")):
        with pytest.raises(TinyinterpError) as e:
            load_transcoder_set(bad, model)
        assert expected in one_line(e)


def test_bad_options(model, folder):
    transcoders = load_transcoder_set(folder, model)
    for kwargs, expected in (({"max_n_logits": 0}, "--max-n-logits"), ({"desired_logit_prob": 1.5}, "--desired-logit-prob"),
                             ({"batch_size": 0}, "--batch-size")):
        with pytest.raises(TinyinterpError) as e:
            attribute(model, transcoders, "Lily went", **kwargs)
        assert expected in one_line(e)
