"""Corpus: reading .txt/.jsonl/folders (bad bytes, bad lines, empty), tokenizing to a memmap, validation splits."""

from __future__ import annotations

import json
import logging
import random
import socket
import time

import numpy as np
import pytest

import tinyinterp.data.corpus as corpus_mod
from tinyinterp.data.corpus import (
    META_FILE,
    TOKENS_FILE,
    TokenizedCorpus,
    default_sources,
    is_validation_doc,
    iter_documents,
    prepare_corpus,
    tokenize_corpus,
)
from tinyinterp.errors import DataError
from tinyinterp.data.tokenizer import EOT_TOKEN, Tokenizer

STORIES = [f"Story {i}: once upon a time a {w} named Bob found {i * 3} red apples." for i, w in enumerate(["cat", "dog", "bird"] * 20)]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train_bpe(STORIES, vocab_size=320, progress=False)


def write_txt(path, docs, sep=f"\n{EOT_TOKEN}\n"):
    path.write_text(sep.join(docs) + sep, encoding="utf-8")
    return path


def test_txt_separators_on_lines_inline_and_absent(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text(f"  First story.\nSecond line.\n{EOT_TOKEN}\n\n{EOT_TOKEN}\nTwo.{EOT_TOKEN}Three\n  \n{EOT_TOKEN}", encoding="utf-8")
    assert list(iter_documents(f)) == ["First story.\nSecond line.", "Two.", "Three"]
    stream = tmp_path / "stream.txt"
    stream.write_text("Para one.\n\nPara two.\n", encoding="utf-8")
    assert list(iter_documents(stream)) == ["Para one.\n\nPara two."]


def test_jsonl_folder_order_and_max_docs(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"text": "from jsonl"}\n\n{"text": "x' + EOT_TOKEN + 'y", "id": 3}\n', encoding="utf-8")
    write_txt(tmp_path / "a.txt", ["from txt"])
    (tmp_path / "notes.md").write_text("ignored")
    assert list(iter_documents(tmp_path)) == ["from txt", "from jsonl", "x", "y"]
    assert list(iter_documents([tmp_path / "b.jsonl", tmp_path / "a.txt"], max_docs=2)) == ["from jsonl", "x"]


@pytest.mark.parametrize("line, match", [("{broken", "not valid JSON"), ('{"story": "x"}', "string 'text' field"), ("[1, 2]", "'text' field")])
def test_bad_jsonl_line_names_file_and_line(tmp_path, line, match):
    f = tmp_path / "c.jsonl"
    f.write_text('{"text": "ok"}\n{"text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=match) as e:
        list(iter_documents(f))
    assert f"{f}:3:" in str(e.value) and "\n" not in str(e.value)


def test_missing_empty_and_unsupported_sources(tmp_path):
    with pytest.raises(DataError, match="not found") as e:
        list(iter_documents(tmp_path / "nope.txt"))
    assert str(tmp_path / "nope.txt") in str(e.value)
    empty = write_txt(tmp_path / "empty.txt", ["  ", ""])
    with pytest.raises(DataError, match="empty"):
        list(iter_documents(empty))
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="no .txt or .jsonl"):
        list(iter_documents(tmp_path / "d"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(DataError, match="unsupported"):
        list(iter_documents(tmp_path / "x.csv"))


def test_bad_bytes_refused_by_default_or_replaced_with_warning(tmp_path, caplog):
    f = tmp_path / "bad.txt"
    head = f"Good story.\n{EOT_TOKEN}\nCaf".encode()
    f.write_bytes(head + b"\xe9 au lait\n" + EOT_TOKEN.encode())
    with pytest.raises(DataError, match="invalid UTF-8") as e:
        list(iter_documents(f))
    assert f"{f}:3:" in str(e.value) and f"offset {len(head)};" in str(e.value)
    with caplog.at_level(logging.WARNING):
        docs = list(iter_documents(f, bad_bytes="replace"))
    assert docs == ["Good story.", "Caf\ufffd au lait"]
    assert "bad.txt" in caplog.text and "1 line" in caplog.text
    with pytest.raises(DataError, match="bad_bytes"):
        list(iter_documents(f, bad_bytes="ignore"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket closes


@pytest.mark.parametrize("name", ["roneneldan/TinyStories", "nobody-xyz/no-such-dataset"])
def test_hub_dataset_offline_fails_fast_with_one_clear_line(name, monkeypatch):
    # An unreachable hub (here: an endpoint nobody listens on) must not cost datasets' ~25 s of retries.
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    with pytest.raises(DataError, match="Hugging Face Hub cannot be reached") as e:
        list(iter_documents(name))
    assert time.monotonic() - start < 5
    assert name in str(e.value) and "TINYINTERP_DATA" in str(e.value) and "\n" not in str(e.value)


def test_failed_build_leaves_no_files_behind(tmp_path, tok):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n<|endoftext|>\n  \n", encoding="utf-8")
    out = tmp_path / "run" / "analysis" / "heads" / "corpus_abc"
    (tmp_path / "run").mkdir()
    with pytest.raises(DataError, match="empty"):
        tokenize_corpus(iter_documents(empty), tok, out, progress=False)
    assert list((tmp_path / "run").iterdir()) == []  # no empty tokens.bin, no folders it made
    one = tmp_path / "one.txt"
    one.write_text("Just one story here.", encoding="utf-8")
    with pytest.raises(DataError, match="too few documents"):  # the train/val split of a single story fails
        prepare_corpus(one, tok, tmp_path / "data", val_fraction=0.01, progress=False)
    assert not (tmp_path / "data").exists()


def test_tokenize_corpus_memmap_round_trip(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(corpus_mod, "_BATCH_DOCS", 7)  # several batches, one append each
    c = tokenize_corpus(iter(STORIES), tok, tmp_path / "c", progress=False, source="unit")
    again = TokenizedCorpus.open(tmp_path / "c")
    assert isinstance(again.tokens, np.memmap) and again.tokens.dtype == np.uint16
    assert (again.n_docs, again.n_tokens) == (len(STORIES), sum(len(tok.encode(s)) for s in STORIES))
    assert [tok.decode(again.document(i)) for i in range(again.n_docs)] == STORIES
    assert tok.decode(again.document(-1)) == STORIES[-1]
    assert again.doc_offsets.dtype == np.int64 and again.doc_offsets[0] == 0
    assert tok.eot_id not in set(again.tokens.tolist())
    meta = json.loads((tmp_path / "c" / META_FILE).read_text())
    assert meta["tokenizer_fingerprint"] == tok.fingerprint() == c.tokenizer_fingerprint and meta["source"] == "unit"
    with pytest.raises(IndexError):
        again.document(len(STORIES))
    split = tokenize_corpus([f"first {EOT_TOKEN} second", "  ", "third"], tok, tmp_path / "s", progress=False)
    assert [tok.decode(split.document(i)) for i in range(split.n_docs)] == ["first", "second", "third"]


class _BigVocab:
    """A stand-in with a vocabulary over 65,536 so ids need uint32 (training such a BPE here is too slow)."""

    vocab_size, eot_id = 70_000, 69_999

    def encode_batch(self, texts):
        return [[65_536 + ord(ch) % 1000 for ch in t] for t in texts]

    def fingerprint(self):
        return "big"


def test_large_vocabulary_uses_uint32(tmp_path):
    c = tokenize_corpus(["ab", "c"], _BigVocab(), tmp_path / "big", progress=False)
    assert c.tokens.dtype == np.uint32 and c.tokens.tolist() == [65_536 + 97, 65_536 + 98, 65_536 + 99]


def test_interrupted_build_is_never_opened(tmp_path, tok):
    out = tmp_path / "c"
    tokenize_corpus(STORIES[:5], tok, out, progress=False)

    def crashing():
        yield from STORIES
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(crashing(), tok, out, progress=False)
    with pytest.raises(DataError, match="unfinished"):
        TokenizedCorpus.open(out)
    with pytest.raises(DataError, match="not found"):
        TokenizedCorpus.open(tmp_path / "never")


def test_corrupt_files_and_tokenizer_mismatch(tmp_path, tok):
    c = tokenize_corpus(STORIES, tok, tmp_path / "c", progress=False)
    other = Tokenizer.train_bpe(STORIES, vocab_size=300, progress=False)
    c.check_tokenizer(tok)
    with pytest.raises(DataError, match="tokenized with tokenizer") as e:
        c.check_tokenizer(other)
    assert "\n" not in str(e.value)
    with open(tmp_path / "c" / TOKENS_FILE, "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(DataError, match="not .* bytes"):
        TokenizedCorpus.open(tmp_path / "c")
    (tmp_path / "c" / META_FILE).write_text("{")
    with pytest.raises(DataError, match="corrupt corpus metadata"):
        TokenizedCorpus.open(tmp_path / "c")


def test_hash_split_is_deterministic_and_order_free(tmp_path, tok):
    src = write_txt(tmp_path / "train.txt", STORIES)
    train, val = prepare_corpus(src, tok, tmp_path / "a", val_fraction=0.2, progress=False)
    shuffled = STORIES[:]
    random.Random(1).shuffle(shuffled)
    src2 = write_txt(tmp_path / "shuffled.txt", shuffled)
    train2, val2 = prepare_corpus(src2, tok, tmp_path / "b", val_fraction=0.2, progress=False)

    def texts(c):
        return {tok.decode(c.document(i)) for i in range(c.n_docs)}

    assert texts(val) == texts(val2) == {s for s in STORIES if is_validation_doc(s, 0.2)}
    assert texts(train) | texts(val) == set(STORIES) and not texts(train) & texts(val)
    assert 2 <= val.n_docs <= 25
    _, val_seed = prepare_corpus(src, tok, tmp_path / "c", val_fraction=0.2, seed=5, progress=False)
    assert texts(val_seed) != texts(val)


def test_prepare_reuses_a_finished_build_and_rebuilds_on_change(tmp_path, tok):
    src, val_src = write_txt(tmp_path / "t.txt", STORIES), write_txt(tmp_path / "v.txt", ["A held out story."])
    train, val = prepare_corpus(src, tok, tmp_path / "out", val_source=val_src, progress=False)
    assert val.n_docs == 1 and tok.decode(val.document(0)) == "A held out story."
    stamp = (tmp_path / "out" / "train" / META_FILE).stat().st_mtime_ns
    prepare_corpus(src, tok, tmp_path / "out", val_source=val_src, progress=False)
    assert (tmp_path / "out" / "train" / META_FILE).stat().st_mtime_ns == stamp
    other = Tokenizer.train_bpe(STORIES, vocab_size=300, progress=False)
    train3, _ = prepare_corpus(src, other, tmp_path / "out", val_source=val_src, progress=False)
    assert train3.tokenizer_fingerprint == other.fingerprint()


def test_default_sources_local_or_hub(shared_data, monkeypatch):
    local = default_sources()
    assert [p.name for p in local.train] == ["train-v1-hf-head.txt", "train-v2-gpt4-head.txt"]
    assert local.val.name == "validation-hf-head.unsegmented.txt"
    monkeypatch.setattr(corpus_mod, "data_dir", lambda required=False: None)
    hub = default_sources()
    assert hub.train == ["roneneldan/TinyStories"] and hub.val == "roneneldan/TinyStories"


def test_real_train_files_tokenize_and_round_trip(shared_data, tmp_path):
    src = default_sources()
    docs = list(iter_documents(src.train))
    assert len(docs) == 994 + 1727  # SOURCES.md story counts
    tok = Tokenizer.load(shared_data / "tokenizers" / "gpt2" / "tokenizer.json")  # restricted BPE: test_tokenizer.py
    train, val = prepare_corpus(src.train, tok, tmp_path / "data", val_source=src.val, progress=False)
    assert train.n_docs == len(docs) and val.n_docs == 1  # the validation file is one unsegmented stream
    assert train.tokens.dtype == np.uint16 and int(train.tokens.max()) < tok.eot_id
    for i in (0, 993, 994, len(docs) - 1):  # both files, both ends
        assert tok.decode(train.document(i)) == docs[i]
    assert tok.decode(val.document(0)[:4]) == "Spot. Spot saw"
