"""Token categories on known sentences; purity on hand-built top-k lists with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hypothesis import given, settings
from hypothesis import strategies as st

from tinyinterp.interp.categories import (
    CAT, CATEGORIES, PurityResult, TokenCategorizer, category_purity, chance_purity, first_occurrences, neuron_purity,
    purity_of_labels,
)
from tinyinterp.interp.neuron_index import NeuronIndex


@pytest.fixture(scope="module")
def categorizer(story_tokenizer):
    return TokenCategorizer(story_tokenizer)


def labelled(tok, cat, text):
    ids = tok.encode(text)
    return [(tok.token_str(i).strip(), CATEGORIES[l]) for i, l in zip(ids, cat.label_stream(np.array(ids)))]


def test_sentence_labels(story_tokenizer, categorizer):
    got = dict(labelled(story_tokenizer, categorizer, 'One day, Lucy saw a big ball. Tom jumped with her and 3 toys.'))
    assert got["Lucy"] == "name" and got["big"] == "adjective" and got["ball"] == "noun"
    assert got["jumped"] == "verb" and got["a"] == "determiner" and got["with"] == "preposition"
    assert got["her"] == "pronoun" and got["and"] == "conjunction" and got[","] == "punctuation"
    assert got["3"] == "number" and got["Tom"] == "name"


def test_capitalised_word_is_a_name_only_mid_sentence(shared_data):
    """With the real GPT-2 BPE: 'Park' is a name mid-sentence, the noun after a full stop or a quote."""
    from tinyinterp.data.paths import gpt2_tokenizer_file
    from tinyinterp.data.tokenizer import Tokenizer

    tok = Tokenizer.load(gpt2_tokenizer_file())
    cat = TokenCategorizer(tok)
    got = labelled(tok, cat, 'They went to Park. Park was big. The dog said: "Park!" Lily and Mom ran.')
    assert [c for w, c in got if w == "Park"] == ["name", "noun", "noun"]
    assert ("The", "determiner") in got and ("Lily", "name") in got and ("Mom", "name") in got
    assert ("ran", "verb") in got and ("big", "adjective") in got


def test_doc_offsets_reset_context(story_tokenizer, categorizer):
    ids = np.array(story_tokenizer.encode("the Ball") * 2)
    n = len(ids) // 2
    with_docs = categorizer.label_stream(ids, np.array([0, n, 2 * n]))
    assert with_docs[n] == categorizer.label_stream(ids[n:])[0]  # a document start is a sentence start


def test_purity_of_labels_known_answers():
    labels = np.array([[0, 0, 0, 1], [2, 3, 3, -1], [-1, -1, -1, -1], [4, 5, 4, 5]])
    purity, majority = purity_of_labels(labels)
    assert purity[0] == 0.75 and majority[0] == 0
    assert purity[1] == pytest.approx(2 / 3) and majority[1] == 3
    assert np.isnan(purity[2])
    assert purity[3] == 0.5 and majority[3] == 4  # tie goes to the earlier category


def test_first_occurrences():
    tokens = np.array([[7, 7, 3, 7, -1], [1, 2, 3, 4, 5]])
    assert first_occurrences(tokens).tolist() == [[True, False, True, False, False], [True] * 5]


def test_chance_purity_extremes():
    assert chance_purity(np.array([1.0, 0, 0]), k=10) == 1.0
    uniform = chance_purity(np.ones(11), k=20)
    assert 0.15 < uniform < 0.35


def test_neuron_purity_on_hand_built_index(story_tokenizer, story_corpus, tmp_path):
    """Neuron 0 fires on three different nouns, neuron 1 on one noun repeated, neuron 2 on mixed tokens."""
    tok = story_tokenizer.encode
    noun_ids = [tok(" " + w)[0] for w in ("ball", "dog", "tree", "cake")]
    the, comma, lucy = tok(" the")[0], tok(",")[0], tok(" Lucy")[0]
    top_tokens = torch.tensor([[noun_ids + [noun_ids[0]], [noun_ids[1]] * 5, [the, comma, lucy, noun_ids[2], the]]], dtype=torch.int32)
    prev = torch.full_like(top_tokens, the)  # mid-sentence: after ' the'
    tensors = {"top_tokens": top_tokens, "top_prev_tokens": prev, "top_values": torch.ones(1, 3, 5)}
    index = NeuronIndex(tmp_path, {"model": "hand", "n_layers": 1, "d_mlp": 3, "k": 5}, tensors,
                        corpus=story_corpus, tokenizer=story_tokenizer)
    result = neuron_purity(index)
    assert result.purity[0].tolist() == pytest.approx([1.0, 1.0, 0.4])
    assert [CATEGORIES[m] for m in result.majority[0]] == ["noun", "noun", "determiner"]
    assert result.n_distinct[0].tolist() == [4, 1, 4]
    assert result.role_mask()[0].tolist() == [True, False, False]  # one repeated word is not a role
    assert result.top(1, by="role").neuron[0] == 0
    assert sum(result.base_rates.values()) == pytest.approx(1.0) and 0 < result.chance_purity < 1
    result.save(tmp_path)
    again = PurityResult.load(tmp_path)
    np.testing.assert_allclose(again.purity, result.purity)
    assert again.layer_summary().share_role[0] == pytest.approx(1 / 3)


def hand_index(tok, rows: list[list[tuple[str, str]]], tmp_path, corpus):
    """A one-layer index whose neuron i has top-k ``rows[i]``: (token text, text of the token before)."""
    def ids(text: str) -> int:
        (only,) = tok.encode(text)  # every text here is one token of the story BPE
        return only

    top = torch.tensor([[ids(t) for t, _ in row] for row in rows], dtype=torch.int32)[None]
    prev = torch.tensor([[ids(p) for _, p in row] for row in rows], dtype=torch.int32)[None]
    k = top.shape[-1]
    tensors = {"top_tokens": top, "top_prev_tokens": prev, "top_values": torch.ones(1, len(rows), k)}
    return NeuronIndex(tmp_path, {"model": "hand", "n_layers": 1, "d_mlp": len(rows), "k": k}, tensors, corpus=corpus, tokenizer=tok)


PIECES = ["ked", "und", "mped", "ree", "oft"]  # word pieces of the story BPE, after a token ending in a letter
LILY_NEURON = [(" Lily", " the")] * 14 + [(p, "oo") for p in PIECES[:4]]  # the example, k = 18


def test_reported_category_and_type_purity_describe_the_same_tokens(story_tokenizer, story_corpus, tmp_path):
    """' Lily' x14 + four word pieces: the distinct tokens are 1 name and 4 pieces ('other'), so the neuron
    is 'other' with type purity 0.80 and purity 4/18, never 'name 0.80'."""
    result = neuron_purity(hand_index(story_tokenizer, [LILY_NEURON], tmp_path, story_corpus))
    assert CATEGORIES[result.majority[0, 0]] == "other"
    assert result.type_purity[0, 0] == pytest.approx(0.8) and result.purity[0, 0] == pytest.approx(4 / 18)
    assert result.n_distinct[0, 0] == 5 and not result.role_mask()[0, 0]
    row = result.to_frame().iloc[0]
    assert row.category == "other" and row.type_purity == pytest.approx(0.8)


def test_role_list_holds_only_role_neurons(story_tokenizer, story_corpus, tmp_path):
    from tinyinterp.interp.summary import summarize

    pad = lambda row: (row * 18)[:18]  # noqa: E731
    rows = [
        pad([(" jumped", " the"), (" ran", " the"), (" played", " the"), (" looked", " the")]),  # 0: verbs, role
        pad([(" ball", " the"), (" dog", " the"), (" tree", " the"), (" big", " the"), (" red", " the")]),  # 1: 0.6 nouns
        pad([(p, "oo") for p in PIECES]),  # 2: five word pieces: type purity 1.0 but 'other'
        LILY_NEURON,  # 3: one name + pieces
        pad([(" ball", " the"), (" dog", " the"), (" tree", " the"), (" cake", " the"), (" big", " the")]),  # 4: 0.8 nouns
    ]
    result = neuron_purity(hand_index(story_tokenizer, rows, tmp_path, story_corpus))
    assert result.type_purity[0].tolist() == pytest.approx([1.0, 0.6, 1.0, 0.8, 0.8])
    assert result.role_mask()[0].tolist() == [True, False, False, False, True]
    top = result.top(10)
    assert top.neuron.tolist() == [0, 4] and top.role.all() and (top.type_purity >= 0.8).all()
    assert set(result.top(10, by="type_purity").neuron) == {0, 1, 4}  # ranked, but marked
    run = tmp_path / "run"
    result.save(run / "analysis" / "neurons")
    text = summarize(run)
    listed = text.split("Most pure role neurons")[1].split("Heads")[0]
    assert "L0 N0 " in listed and "L0 N4 " in listed
    assert not any(f"L0 N{n} " in listed for n in (1, 2, 3))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_purity_invariants(data):
    """For any top-k: the category has the most distinct tokens; both purities are shares of THAT category."""
    k = data.draw(st.integers(1, 12))
    tokens = np.array(data.draw(st.lists(st.integers(-1, 6), min_size=k, max_size=k)))[None]
    labels = np.array(data.draw(st.lists(st.integers(0, len(CATEGORIES) - 1), min_size=k, max_size=k)))[None]
    labels = np.where(tokens >= 0, labels, -1)
    first = first_occurrences(tokens)
    category, type_purity, purity = category_purity(labels, first)
    c = category[0]
    distinct = labels[first]
    if len(distinct) == 0:
        assert np.isnan(type_purity[0]) and np.isnan(purity[0])
        return
    counts = np.bincount(distinct, minlength=len(CATEGORIES))
    assert counts[c] == counts.max()
    assert type_purity[0] == pytest.approx(counts[c] / len(distinct))
    assert purity[0] == pytest.approx(np.mean(labels[tokens >= 0] == c))
