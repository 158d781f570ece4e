"""The HF tokenizer surface of our Tokenizer equals transformers' own tokenizer over the same tokenizer.json."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyinterp.errors import TinyinterpError
from tinyinterp.data.tokenizer import EOT_TOKEN, Tokenizer


@pytest.fixture(scope="module")
def tok(shared_data):
    docs = (shared_data / "tinystories" / "train-v1-hf-head.txt").read_text(encoding="utf-8").splitlines()[:200]
    return Tokenizer.restricted_bpe(shared_data / "tokenizers" / "gpt2" / "tokenizer.json", docs, k=800, progress=False)


@pytest.fixture(scope="module")
def reference(tok):
    """transformers' own PreTrainedTokenizerFast over our tokenizer.json, configured as TL configures GPT-2."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(tok.hf), bos_token=EOT_TOKEN, eos_token=EOT_TOKEN,
                                   pad_token=EOT_TOKEN, unk_token=EOT_TOKEN, clean_up_tokenization_spaces=False)


def test_special_token_attributes_are_endoftext(tok):
    assert tok.bos_token == tok.eos_token == tok.pad_token == EOT_TOKEN
    assert tok.bos_token_id == tok.eos_token_id == tok.pad_token_id == tok.eot_id == 800
    assert tok.vocab_size == len(tok) == len(tok.get_vocab()) == len(tok.vocab) == 801  # ours counts <|endoftext|>
    assert tok.get_vocab()[EOT_TOKEN] == tok.eot_id
    assert getattr(tok, "sep_token_id", "missing") is None  # forwarded to HF: SAELens reads it with getattr


TEXTS = st.lists(st.text(st.characters(codec="utf-8"), max_size=40), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=TEXTS, side=st.sampled_from(["left", "right"]))
def test_call_pads_like_transformers_and_keeps_our_ids(tok, reference, texts, side):
    tok.padding_side = reference.padding_side = side
    ours = tok(texts, return_tensors="pt", padding=True)
    theirs = reference(texts, return_tensors="pt", padding=True)
    assert torch.equal(ours["input_ids"], theirs["input_ids"]) and torch.equal(ours["attention_mask"], theirs["attention_mask"])
    for row, mask, text in zip(ours["input_ids"], ours["attention_mask"], texts):
        assert row[mask.bool()].tolist() == tok.encode(text)  # unpadded ids are exactly ours
        pads = (mask == 0).nonzero().flatten().tolist()
        width = len(row)
        expected = list(range(width - len(pads), width)) if side == "right" else list(range(len(pads)))
        assert pads == expected and all(row[p] == tok.eot_id for p in pads)
    assert tok.batch_decode(ours["input_ids"]) == reference.batch_decode(theirs["input_ids"])
    assert tok.batch_decode(ours["input_ids"], skip_special_tokens=True) == texts


def test_padding_side_defaults_right_rejects_nonsense_and_survives_pickling(tok):
    fresh = Tokenizer(copy.deepcopy(tok.hf))
    assert fresh.padding_side == "right"
    fresh.padding_side = "left"
    for clone in (pickle.loads(pickle.dumps(fresh)), copy.deepcopy(fresh)):
        assert clone.padding_side == "left"
        assert clone(["a", "a b c"], padding=True)["input_ids"][0][0] == clone.eot_id
    with pytest.raises(TinyinterpError, match="padding_side must be 'left' or 'right'"):
        fresh.padding_side = "middle"


def test_truncation_max_length_and_encode_keywords(tok, reference):
    text = "Once upon a time, there was a little girl named Lily. She loved to play outside."
    assert tok.encode(text) == reference.encode(text, add_special_tokens=False)  # our plain encode: a list
    assert torch.equal(tok.encode(text, return_tensors="pt"), torch.tensor([tok.encode(text)]))
    cut = tok(text, truncation=True, max_length=5)["input_ids"]
    assert cut == tok.encode(text)[:5]
    fixed = tok(["Lily", text], padding="max_length", truncation=True, max_length=7, return_tensors="pt")
    assert fixed["input_ids"].shape == (2, 7) and fixed["attention_mask"][0].sum() == len(tok.encode("Lily"))
    assert tok(text, add_special_tokens=True)["input_ids"] == tok.encode(text)  # no BOS template, as GPT-2
    # the HF view has its own backend: a padded call does not leak padding into our own encode
    tok(["a", text], padding="max_length", max_length=64)
    assert tok.encode("a") == reference.encode("a", add_special_tokens=False) and len(tok.encode("a")) == 1


def test_decode_keywords_and_token_conversion(tok, reference):
    ids = tok.encode("Lily saw a dog.") + [tok.eot_id]
    assert tok.decode(ids) == reference.decode(ids) == "Lily saw a dog." + EOT_TOKEN
    assert tok.decode(ids, skip_special_tokens=True) == "Lily saw a dog."
    assert tok.decode(torch.tensor(ids[0])) == reference.decode(ids[0])  # a 0-d tensor, as HF accepts
    assert tok.decode(ids, clean_up_tokenization_spaces=True) == reference.decode(ids, clean_up_tokenization_spaces=True)
    assert tok.convert_ids_to_tokens(ids) == reference.convert_ids_to_tokens(ids)
    assert tok.convert_ids_to_tokens(ids[1]) == reference.convert_ids_to_tokens(ids[1])
    assert tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(ids)) == ids
    assert tok.tokenize(" a dog") == reference.tokenize(" a dog")


def test_vocabulary_cannot_grow(tok):
    with pytest.raises(TinyinterpError, match="vocabulary is fixed"):
        tok.add_special_tokens({"pad_token": "<PAD>"})
    with pytest.raises(TinyinterpError, match="not in the vocabulary"):
        tok.pad_token = "<PAD>"
    assert tok.pad_token == EOT_TOKEN


def test_tl_tokenize_and_concatenate_runs_on_our_tokenizer(tok):
    """TL's own dataset utility reads pad/eos/bos and calls tokenizer(texts, add_special_tokens=False)."""
    from datasets import Dataset
    from transformer_lens.utilities import tokenize_and_concatenate

    texts = ["Lily saw a dog. The dog was happy."] * 6
    data = tokenize_and_concatenate(Dataset.from_dict({"text": texts}), tok, max_length=9, num_proc=None)
    rows = torch.stack(list(data["tokens"]))
    flat = []
    for t in texts:
        flat += tok.encode(t) + [tok.eot_id]
    assert rows.shape[1] == 9 and (rows[:, 0] == tok.eot_id).all()
    assert rows[:, 1:].reshape(-1).tolist() == flat[: rows.shape[0] * 8]
