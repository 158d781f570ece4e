"""Tokenizer: the restricted GPT-Neo BPE (layout, equality with the base, OOV fallback), fresh BPE, HF wrapping."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers.pre_tokenizers import ByteLevel

from tinyinterp.data.corpus_readers import iter_documents
from tinyinterp.errors import DataError, ModelLoadError, TinyinterpError
from tinyinterp.data.tokenizer import EOT_TOKEN, Tokenizer

STORIES = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "One day, a big dog ran into the park. The dog was happy and wagged its tail.",
    "Tom and Sue went to the beach. They built a sand castle and laughed.",
] * 5


@pytest.fixture(scope="module")
def gpt2_json(shared_data):
    return shared_data / "tokenizers" / "gpt2" / "tokenizer.json"


@pytest.fixture(scope="module")
def base(gpt2_json):
    return Tokenizer.from_hf(gpt2_json)


@pytest.fixture(scope="module")
def v1_docs(shared_data):
    return list(iter_documents(shared_data / "tinystories" / "train-v1-hf-head.txt"))


@pytest.fixture(scope="module")
def small(gpt2_json, v1_docs):
    """K=1000 on the v1 head: small enough that many corpus tokens are out of vocabulary."""
    return Tokenizer.restricted_bpe(gpt2_json, v1_docs, k=1000, progress=False)


def _spec(tok: Tokenizer) -> dict:
    return json.loads(tok.hf.to_str())


def _pair(m):
    return tuple(m.split(" ")) if isinstance(m, str) else tuple(m)


def test_restricted_full_k_on_both_train_files(shared_data, gpt2_json, base):
    files = [shared_data / "tinystories" / f for f in ("train-v1-hf-head.txt", "train-v2-gpt4-head.txt")]
    docs = list(iter_documents(files))
    tok = Tokenizer.restricted_bpe(gpt2_json, docs, k=10_000, progress=False)
    assert tok.vocab_size == 10_001 and tok.eot_id == 10_000 and tok.token_str(tok.eot_id) == EOT_TOKEN
    vocab = tok.hf.get_vocab(with_added_tokens=True)
    assert sorted(vocab.values()) == list(range(10_001))  # compacted, no holes
    assert set(ByteLevel.alphabet()) <= set(vocab)
    # The corpus uses fewer than 10k distinct tokens (6,656), so all are kept: every story tokenizes like the base.
    base_vocab = base.hf.get_vocab(with_added_tokens=True)
    to_base = np.array([base_vocab[tok.hf.id_to_token(i)] for i in range(tok.vocab_size)])
    sample = docs[::4]  # every 4th story of both files keeps the test fast
    for ours, theirs in zip(tok.encode_batch(sample), base.encode_batch(sample)):
        assert np.array_equal(to_base[ours], theirs)  # same token strings, ids mapped


def test_every_kept_token_keeps_its_merge_ancestors(small, gpt2_json):
    base_merges = [_pair(m) for m in json.loads(gpt2_json.read_text())["model"]["merges"]]
    parents = {a + b: (a, b) for a, b in base_merges}
    spec = _spec(small)
    vocab = spec["model"]["vocab"]
    kept_merges = [_pair(m) for m in spec["model"]["merges"]]
    for a, b in kept_merges:
        assert a in vocab and b in vocab and a + b in vocab
    for token in vocab:
        if token in parents:
            assert all(p in vocab for p in parents[token]), token
    # Merges keep their base order (ranks decide BPE output), and every kept merge the base would allow is there.
    rank = {m: i for i, m in enumerate(base_merges)}
    assert [rank[m] for m in kept_merges] == sorted(rank[m] for m in kept_merges)
    assert len(kept_merges) == sum(1 for a, b in base_merges if a in vocab and b in vocab and a + b in vocab)


def test_most_frequent_corpus_tokens_are_kept(small, base, v1_docs):
    counts = Counter(i for ids in base.encode_batch(v1_docs) for i in ids)
    vocab = small.hf.get_vocab()
    top = [base.hf.id_to_token(i) for i, _ in counts.most_common(300)]
    assert all(t in vocab for t in top)
    rare = [base.hf.id_to_token(i) for i, c in counts.items() if c == 1]
    assert sum(t not in vocab for t in rare) > len(rare) // 2  # K=1000 cannot hold the long tail


def _compare_words(restricted: Tokenizer, base: Tokenizer, texts: list[str]) -> tuple[int, int]:
    """Word by word (BPE never merges across pre-tokens): words whose base tokens are all kept must tokenize
    exactly like the base; the others must fall back to kept pieces of the same bytes. Returns the counts."""
    vocab = restricted.hf.get_vocab()
    n_in = n_oov = 0
    for doc in texts:
        for _, (start, end) in base.hf.pre_tokenizer.pre_tokenize_str(doc):
            word = doc[start:end]
            theirs = [base.hf.id_to_token(i) for i in base.encode(word)]
            ours = [restricted.hf.id_to_token(i) for i in restricted.encode(word)]
            if all(t in vocab for t in theirs):
                assert ours == theirs, word
                n_in += 1
            else:
                assert "".join(ours) == "".join(theirs) and all(t in vocab for t in ours), word
                n_oov += 1
    return n_in, n_oov


def test_in_vocabulary_words_tokenize_like_base_and_oov_falls_back(small, base, v1_docs):
    n_in, n_oov = _compare_words(small, base, v1_docs[:100])
    assert n_in > 1000 and n_oov > 20  # both branches really exercised


def test_real_corpus_round_trips_exactly(small, v1_docs):
    mojibake = [d for d in v1_docs if "â€" in d]
    assert mojibake, "the v1 head is known to contain mojibake"
    assert small.decode_batch(small.encode_batch(v1_docs)) == v1_docs
    assert small.decode(small.encode(v1_docs[0])) == v1_docs[0]


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=0, max_size=60))
def test_any_unicode_round_trips(small, text):
    assert small.decode(small.encode(text)) == text


def test_small_corpus_is_filled_in_base_merge_order(gpt2_json, base):
    tok = Tokenizer.restricted_bpe(gpt2_json, STORIES, k=400, progress=False)
    assert tok.vocab_size == 401
    vocab = tok.hf.get_vocab()
    used = {base.hf.id_to_token(i) for s in STORIES for i in base.encode(s)}
    assert used <= set(vocab)
    filled = set(vocab) - used - set(ByteLevel.alphabet())
    lowest = {base.hf.id_to_token(i) for i in range(256, 400)}
    assert len(filled & lowest) > len(filled) // 2


def test_restricted_from_a_local_fresh_base_without_shared_data(tmp_path):
    texts = [f"the cat number {i} sat on the mat and looked at bird {i * 7}" for i in range(200)]
    fresh = Tokenizer.train_bpe(texts, vocab_size=400, progress=False)
    base_path = fresh.save(tmp_path / "base.json")
    tok = Tokenizer.restricted_bpe(base_path, texts[:20], k=300, progress=False)
    assert tok.vocab_size == 301 and tok.eot_id == 300
    n_in, n_oov = _compare_words(tok, fresh, texts)
    assert n_in > 100 and n_oov > 0
    assert tok.decode(tok.encode("żółw 🐢 néé")) == "żółw 🐢 néé"


def test_train_bpe_puts_eot_last_and_round_trips():
    tok = Tokenizer.train_bpe(STORIES, vocab_size=300, progress=False)
    assert tok.eot_id == tok.vocab_size - 1 <= 300
    assert tok.decode(tok.encode(STORIES[0])) == STORIES[0]
    assert len(tok.encode(STORIES[0])) < len(STORIES[0].encode())  # it learned merges


def test_save_load_and_fingerprint(small, tmp_path, base):
    path = small.save(tmp_path / "run" / "tokenizer.json")
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokenizer.json"]  # no temp file left
    again = Tokenizer.load(tmp_path / "run")
    assert again.fingerprint() == small.fingerprint() != base.fingerprint()
    text = "Once upon a time, Lily saw a 🐶."
    assert again.encode(text) == small.encode(text)
    assert tokenizers.Tokenizer.from_file(str(path)).encode(text).ids == small.encode(text)
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_file=str(path))
    assert fast(text, add_special_tokens=False)["input_ids"] == small.encode(text)
    assert fast.convert_tokens_to_ids(EOT_TOKEN) == small.eot_id


def test_from_hf_folder_and_vocab_merges_pair(gpt2_json, tmp_path, base):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(gpt2_json.parent / name, folder / name)
    old_style = Tokenizer.from_hf(folder)
    assert old_style.fingerprint() == base.fingerprint() and old_style.eot_id == 50256
    assert Tokenizer.from_hf(gpt2_json.parent).fingerprint() == base.fingerprint()


def test_token_str_is_readable(base):
    assert base.token_str(base.encode(" the")[0]) == " the"
    partial = base.encode("🙂")
    assert len(partial) > 1 and all("\\x" in base.token_str(i) for i in partial)
    with pytest.raises(IndexError):
        base.token_str(base.vocab_size + 5)


def test_offline_hub_names_fail_with_one_line():
    with pytest.raises(ModelLoadError, match="could not be downloaded") as e:
        Tokenizer.from_hf("EleutherAI/gpt-neo-125M")
    assert "\n" not in str(e.value) and "tokenizer.json" in str(e.value)
    with pytest.raises(DataError, match="could not be downloaded"):
        Tokenizer.restricted_bpe("EleutherAI/gpt-neo-125M", STORIES, k=300, progress=False)


def test_bad_inputs_raise_one_line_errors(tmp_path, gpt2_json):
    with pytest.raises(DataError, match="not found"):
        Tokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a readable tokenizer.json"):
        Tokenizer.load(bad)
    with pytest.raises(TinyinterpError, match="too small"):
        Tokenizer.restricted_bpe(gpt2_json, STORIES, k=100, progress=False)
    with pytest.raises(DataError, match="empty"):
        Tokenizer.restricted_bpe(gpt2_json, [], k=300, progress=False)
