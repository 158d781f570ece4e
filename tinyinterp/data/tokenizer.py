"""Tokenizers for tinyinterp: the paper's restricted GPT-Neo BPE, a freshly trained BPE, or any HF tokenizer.

Every tokenizer is a real Hugging Face ``tokenizers`` byte-level BPE saved as one ``tokenizer.json``
that ``tokenizers.Tokenizer.from_file`` and ``transformers.PreTrainedTokenizerFast(tokenizer_file=...)``
both load. The end-of-text token ``<|endoftext|>`` always has the last id (``vocab_size - 1``).

**Restricted BPE (the default, as in Eldan & Li 2023).** Take the GPT-Neo (= GPT-2) BPE, count how often
each of its tokens occurs in the training corpus, and keep the K most frequent (default 10,000) plus
``<|endoftext|>``: vocabulary size K + 1. The 256 byte-level alphabet tokens are always kept, and each
token is kept *together with its merge ancestors* (the two pieces whose merge forms it, recursively).
Only merges whose two pieces and result are all kept survive, in their original order, and ids are
compacted to 0..K-1 in base-id order. If the corpus uses fewer than K distinct tokens, the rest of the
vocabulary is filled with base tokens in the base BPE's own merge order, so the size is always K + 1.

*In-vocabulary text tokenizes exactly as the base tokenizer does* (same token strings): every merge
the base applies to form a kept token is kept, and since the base always picks the lowest-rank merge
among all merges, it is also the lowest-rank among the kept subset. *Out-of-vocabulary fallback*: for
a word whose base tokens are not all kept, BPE stops merging at the largest kept pieces, ending at
single bytes in the worst case; since every byte is a token, ANY text (emoji, other scripts, mojibake)
round-trips exactly: ``decode(encode(x)) == x``.

Example::

    tok = Tokenizer.restricted_bpe("../shared/data/tokenizers/gpt2/tokenizer.json", stories, k=10_000)
    tok.save("runs/demo/tokenizer.json"); ids = tok.encode("Once upon a time")
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import RemoteEntryNotFoundError
from tokenizers import decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm

from tinyinterp.io.atomic import atomic_write_text
from tinyinterp.errors import DataError, ModelLoadError, TinyinterpError
from tinyinterp.data.tokenizer_hf import HFTokenizerSurface, _ids_list

log = logging.getLogger(__name__)

EOT_TOKEN = "<|endoftext|>"
DEFAULT_BASE = "EleutherAI/gpt-neo-125M"
TOKENIZER_FILE = "tokenizer.json"
_COUNT_BATCH = 1024  # documents per Rust encode_batch call while counting frequencies


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE token strings."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_BYTE_OF_CHAR = {c: b for b, c in _bytes_to_unicode().items()}


def _merge_pair(merge: str | Sequence[str]) -> tuple[str, str]:
    """A merge as a pair; tokenizer.json stores either ``"a b"`` (older) or ``["a", "b"]`` (newer)."""
    if isinstance(merge, str):
        a, b = merge.split(" ")
        return a, b
    return merge[0], merge[1]


def _load_hf(name_or_path: str | Path, error: type[TinyinterpError]) -> tokenizers.Tokenizer:
    """An HF tokenizer from a tokenizer.json file, a folder holding one (or vocab/merges files), or a hub name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (path / TOKENIZER_FILE).is_file():
            path = path / TOKENIZER_FILE
        elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return _byte_level_bpe_from_files(path / "vocab.json", path / "merges.txt")
        else:
            raise error(f"{path}: folder holds neither {TOKENIZER_FILE} nor vocab.json + merges.txt")
    if path.is_file():
        try:
            return tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises bare Exceptions on bad JSON
            raise error(f"{path}: not a readable tokenizer.json ({str(e).splitlines()[0][:120]})") from None
    if path.suffix == ".json" or path.is_absolute() or str(name_or_path).startswith("."):
        raise error(f"{path}: tokenizer file not found; pass an existing tokenizer.json or a folder holding one")
    try:
        return tokenizers.Tokenizer.from_pretrained(str(name_or_path))
    except RemoteEntryNotFoundError:  # online, but the repo ships only the older vocab.json + merges.txt
        try:
            files = [hf_hub_download(str(name_or_path), f) for f in ("vocab.json", "merges.txt")]
            return _byte_level_bpe_from_files(Path(files[0]), Path(files[1]))
        except Exception as e:
            raise error(
                f"tokenizer '{name_or_path}': the hub repo has neither tokenizer.json nor vocab.json + merges.txt ({type(e).__name__})"
            ) from None
    except Exception as e:
        raise error(
            f"tokenizer '{name_or_path}' could not be downloaded from the Hugging Face Hub ({type(e).__name__}); "
            f"pass a local tokenizer.json (e.g. ../shared/data/tokenizers/gpt2/tokenizer.json) instead"
        ) from None


def _byte_level_bpe_from_files(vocab: Path, merges: Path) -> tokenizers.Tokenizer:
    """A GPT-2-style tokenizer from the older vocab.json + merges.txt pair (what some model folders ship)."""
    hf = tokenizers.Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([tokenizers.AddedToken(EOT_TOKEN, special=True)])  # reuses its vocab.json id if present
    return hf


def _select_tokens(
    vocab: dict[str, int], merges: list[tuple[str, str]], counts: np.ndarray, alphabet: set[str], special: set[str], k: int
) -> set[str]:
    """The ``k`` base tokens to keep: the alphabet, then tokens by corpus frequency, each with its merge ancestors."""
    parents: dict[str, tuple[str, str]] = {}
    for a, b in merges:
        parents.setdefault(a + b, (a, b))
    kept = set(alphabet)

    def add_with_ancestors(token: str) -> None:
        need, stack = set(), [token]
        while stack:  # the token plus every merge piece needed to form it, recursively
            t = stack.pop()
            if t not in kept and t not in need:
                need.add(t)
                stack.extend(parents.get(t, ()))
        if len(kept) + len(need) <= k:  # a closure that overflows is skipped; a later, smaller one may fit
            kept.update(need)

    by_id = sorted((i, t) for t, i in vocab.items() if t not in special)
    used = sorted((t for i, t in by_id if counts[i] > 0), key=lambda t: (-counts[vocab[t]], vocab[t]))
    for token in used:
        if len(kept) >= k:
            break
        add_with_ancestors(token)
    n_from_corpus = len(kept)
    for _, token in by_id:  # too few distinct corpus tokens: fill in the base BPE's own merge order
        if len(kept) >= k:
            break
        add_with_ancestors(token)
    if len(kept) > n_from_corpus:
        n_filled = len(kept) - n_from_corpus
        log.info("corpus uses only %d tokens (with ancestors); filled %d more in base merge order", n_from_corpus, n_filled)
    return kept


class Tokenizer(HFTokenizerSurface):
    """A byte-level BPE with ``<|endoftext|>``; the one tokenizer type models, corpora and analyses share.

    It also has the Hugging Face tokenizer surface TL utilities and SAELens read (``bos_token_id``,
    ``padding_side``, ``tokenizer(texts, return_tensors="pt", padding=True)``, ``batch_decode``, …):
    see :mod:`tinyinterp.data.tokenizer_hf`.
    """

    eot_token: str = EOT_TOKEN

    def __init__(self, hf: tokenizers.Tokenizer, eot_token: str = EOT_TOKEN):
        self._hf = hf
        self.eot_token = eot_token
        eot_id = hf.token_to_id(eot_token)
        if eot_id is None:
            raise TinyinterpError(f"tokenizer has no {eot_token!r} token; tinyinterp needs it to separate documents")
        self.eot_id: int = eot_id
        self._fingerprint: str | None = None

    # ----- construction -----------------------------------------------------------------------

    @classmethod
    def restricted_bpe(cls, base: str | Path, texts: Iterable[str], k: int = 10_000, progress: bool = True) -> Tokenizer:
        """The paper's scheme: ``base`` (a byte-level BPE) restricted to the ``k`` most frequent tokens of ``texts``.

        ``base`` is a tokenizer.json path, a folder, or a hub name such as ``EleutherAI/gpt-neo-125M``.
        Result: ``k`` tokens (ids 0..k-1, base-id order) plus ``<|endoftext|>`` with id ``k``.
        """
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if k < len(alphabet):
            raise TinyinterpError(f"vocabulary size k={k} is too small: the byte alphabet alone has {len(alphabet)} tokens")
        base_hf = _load_hf(base, DataError)
        spec = json.loads(base_hf.to_str())
        model = spec["model"]
        if model.get("type") != "BPE" or any(c not in model["vocab"] for c in alphabet):
            raise DataError(f"{base}: the base tokenizer must be a byte-level BPE (like GPT-2 / GPT-Neo)")
        vocab: dict[str, int] = model["vocab"]
        merges = [_merge_pair(m) for m in model["merges"]]
        special = {t["content"] for t in spec.get("added_tokens", [])} | {EOT_TOKEN}
        counts = _count_tokens(base_hf, texts, max(vocab.values()) + 1, progress)
        kept = _select_tokens(vocab, merges, counts, set(alphabet), special, k)

        model["vocab"] = {t: new_id for new_id, t in enumerate(sorted(kept, key=vocab.__getitem__))}  # base-id order
        model["merges"] = [[a, b] for a, b in merges if a in kept and b in kept and a + b in kept]  # ranks kept
        spec["added_tokens"] = [
            {"id": len(kept), "content": EOT_TOKEN, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
        ]
        spec["truncation"] = spec["padding"] = None
        log.info("restricted %s to %d tokens + %s (%d merges)", base, len(kept), EOT_TOKEN, len(model["merges"]))
        return cls(tokenizers.Tokenizer.from_str(json.dumps(spec)))

    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int = 10_000, progress: bool = True) -> Tokenizer:
        """A fresh byte-level BPE of ``vocab_size`` tokens trained on ``texts``, plus ``<|endoftext|>`` (last id)."""
        hf = tokenizers.Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=progress
        )
        hf.train_from_iterator(texts, trainer=trainer)
        hf.add_special_tokens([tokenizers.AddedToken(EOT_TOKEN, special=True, normalized=False)])
        return cls(hf)

    @classmethod
    def from_hf(cls, name_or_path: str | Path, eot_token: str = EOT_TOKEN) -> Tokenizer:
        """Wrap an HF tokenizer: a tokenizer.json, a model folder, or a hub name (for external models)."""
        return cls(_load_hf(name_or_path, ModelLoadError), eot_token=eot_token)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a ``tokenizer.json`` written by :meth:`save` (or a folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise DataError(f"{path}: tokenizer file not found")
        return cls(_load_hf(path, DataError))

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as one ``tokenizer.json`` (atomically); ``path`` may be a folder."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        atomic_write_text(path, self._hf.to_str(pretty=True))
        return path

    # ----- use ----------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._hf.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def hf(self) -> tokenizers.Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (read it; do not mutate it)."""
        return self._hf

    def encode(self, text: str, add_special_tokens: bool = False, **hf_kwargs: Any):
        """Token ids of ``text`` (a list; nothing prepended). HF keywords (``return_tensors="pt"``,
        ``truncation``, ``max_length``, …) go through HF's ``encode`` and return what it returns."""
        if hf_kwargs:
            return self.hf_tokenizer.encode(text, add_special_tokens=add_special_tokens, **hf_kwargs)
        return self._hf.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts at once in Rust, in parallel (no offsets computed)."""
        return [e.ids for e in self._hf.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int] | int, skip_special_tokens: bool = False, **hf_kwargs: Any) -> str:
        """Text of ``ids`` (a list, numpy array, tensor or one id); ``<|endoftext|>`` is kept as text unless
        ``skip_special_tokens``. Other HF keywords (``clean_up_tokenization_spaces``) use HF's decode."""
        return self._hf_decode(_ids_list(ids), skip_special_tokens, **hf_kwargs)

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> list[str]:
        lists = [ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids] for ids in batch]
        return self._hf.decode_batch(lists, skip_special_tokens=False)

    def token_str(self, token_id: int) -> str:
        """Readable text of one token; bytes that are not whole UTF-8 characters show as ``\\xNN``."""
        token = self._hf.id_to_token(int(token_id))
        if token is None:
            raise IndexError(f"token id {token_id} is outside the vocabulary (size {self.vocab_size})")
        if token_id != self.eot_id and all(c in _BYTE_OF_CHAR for c in token):
            return bytes(_BYTE_OF_CHAR[c] for c in token).decode("utf-8", errors="backslashreplace")
        return self._hf.decode([int(token_id)], skip_special_tokens=False) if token_id != self.eot_id else token

    def fingerprint(self) -> str:
        """sha256 of the vocabulary (id -> token), the merges and the added tokens; stable across saves."""
        if self._fingerprint is None:
            spec = json.loads(self._hf.to_str())
            model = spec.get("model", {})
            canonical = {
                "vocab": sorted(self._hf.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1]),
                "merges": [list(_merge_pair(m)) for m in model.get("merges", [])],
                "added": sorted((t["id"], t["content"], t.get("special", False)) for t in spec.get("added_tokens", [])),
            }
            self._fingerprint = hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """The summary a run's ``config.json`` keeps in its ``tokenizer`` section."""
        return {
            "vocab_size": self.vocab_size, "eot_id": self.eot_id, "eot_token": self.eot_token, "fingerprint": self.fingerprint()
        }

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eot_id={self.eot_id}, fingerprint={self.fingerprint()[:12]})"


def _count_tokens(hf: tokenizers.Tokenizer, texts: Iterable[str], n: int, progress: bool) -> np.ndarray:
    """How often each base token id occurs in ``texts`` (batch-encoded in Rust)."""
    counts = np.zeros(n, dtype=np.int64)
    it = iter(texts)
    bar = tqdm(desc="counting tokens", unit="doc", disable=not progress)
    n_docs = 0
    while batch := list(islice(it, _COUNT_BATCH)):
        encs = hf.encode_batch_fast(batch, add_special_tokens=False)
        ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64)
        if ids.size:
            counts += np.bincount(ids, minlength=n)[:n]
        n_docs += len(batch)
        bar.update(len(batch))
    bar.close()
    if n_docs == 0:
        raise DataError("no texts to count tokens on: the corpus for the restricted tokenizer is empty")
    return counts
