"""The POS-labelled child lexicon: size, coverage of the original TinyStories prompt words, inflections."""

from __future__ import annotations

import pytest

from tinyinterp.errors import DataError
from tinyinterp.data.lexicon import POS_TAGS, load_lexicon, read_lexicon_file


def test_size_and_parts_of_speech():
    lex = load_lexicon()
    assert len(lex) >= 1400
    for pos in POS_TAGS:
        words = lex.words(pos)
        assert len(words) >= 250, pos
        assert all(lex.pos_of(w) == pos for w in words)
    assert len(set().union(*(lex.words(p) for p in POS_TAGS))) == len(lex)


def test_overlap_with_original_prompt_words(shared_data):
    words = (shared_data / "tinystories-vocab" / "vocab_words_from_instructions.txt").read_text().split()
    stats = load_lexicon().overlap_with(words)
    print(f"lexicon overlap with tinystories-vocab: {stats['coverage']:.1%} of {stats['n_given']} words")
    assert stats["n_given"] == 1603
    assert stats["coverage"] >= 0.60
    assert stats["n_exact"] + stats["n_inflected"] + len(stats["missing"]) == stats["n_given"]


@pytest.mark.parametrize("word,pos,lemma", [
    ("dog", "noun", "dog"), ("Puppies", "noun", "puppy"), ("boxes", "noun", "box"), ("children", "noun", "child"),
    ("jumped", "verb", "jump"), ("stopped", "verb", "stop"), ("cried", "verb", "cry"), ("baked", "verb", "bake"),
    ("running", "verb", "run"), ("ran", "verb", "run"), ("hugs", "verb", "hug"),
    ("bigger", "adjective", "big"), ("happiest", "adjective", "happy"), ("nicer", "adjective", "nice"),
])
def test_inflections(word, pos, lemma):
    lex = load_lexicon()
    assert lex.pos_of(word) == pos
    assert lex.lemma_of(word) == lemma


def test_unknown_and_suffix_rules_respect_pos():
    lex = load_lexicon()
    assert lex.pos_of("xylophonezz") is None
    assert lex.pos_of("the") is None
    # '-er' only maps to adjectives: 'dogger' is not a form of the noun 'dog'
    assert lex.pos_of("dogger") is None


def test_bad_file_is_one_line_error(tmp_path):
    bad = tmp_path / "lex.tsv"
    bad.write_text("word\tpos\ncat\tanimal\n")
    with pytest.raises(DataError, match="lex.tsv:2"):
        read_lexicon_file(bad)
