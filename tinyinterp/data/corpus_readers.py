"""Read raw documents (stories) from ``.txt`` / ``.jsonl`` files, folders of them, or a Hugging Face hub dataset.

``iter_documents(source)`` yields stripped, non-empty document strings and never holds a whole file in
memory. A ``.txt`` file separates documents with ``<|endoftext|>`` (a line of its own, as in
``TinyStories-train.txt``, or inline); a ``.txt`` without any separator is ONE document (a stream, e.g.
the unsegmented validation file). A ``.jsonl`` file has one JSON object per line with a ``text`` field.
A folder means all its ``.txt``/``.jsonl`` files in sorted order. Anything else that looks like
``owner/name`` is a hub dataset loaded with ``datasets.load_dataset(..., streaming=True)`` (default
``roneneldan/TinyStories``). Documents never contain ``<|endoftext|>``: text is split on it everywhere.

**Bad bytes.** Corpus files must be UTF-8. By default (``bad_bytes="error"``) a byte sequence that is not
valid UTF-8 stops reading with one line naming the file, the line number and the byte offset, so a
corrupt or wrongly encoded file is never silently trained on; convert the file (e.g.
``iconv -f latin1 -t utf-8``) or opt in to ``bad_bytes="replace"``, which replaces each bad sequence
with U+FFFD and logs one warning with the file name and the number of lines affected. Text that is valid
UTF-8 but looks garbled (TinyStories' own mojibake such as ``â€œ``) is kept exactly as it is.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from tinyinterp.errors import DataError

log = logging.getLogger(__name__)

EOT_TOKEN = "<|endoftext|>"
DEFAULT_HUB_DATASET = "roneneldan/TinyStories"
CORPUS_SUFFIXES = (".txt", ".jsonl")
BAD_BYTES_POLICIES = ("error", "replace")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

Source = str | Path


def split_documents(text: str) -> list[str]:
    """``text`` split on ``<|endoftext|>``, each piece stripped, empty pieces dropped."""
    return [d for d in (p.strip() for p in text.split(EOT_TOKEN)) if d]


def iter_documents(
    source: Source | Iterable[Source], split: str = "train", bad_bytes: str = "error", max_docs: int | None = None
) -> Iterator[str]:
    """Documents of ``source`` (a file, folder, hub dataset name, or a list of these, read in order).

    ``split`` only matters for hub datasets. ``max_docs`` stops after that many documents (in total).
    Raises DataError (one line) for a missing path, a bad line, bad bytes, or when nothing is found.
    """
    if bad_bytes not in BAD_BYTES_POLICIES:
        raise DataError(f"bad_bytes={bad_bytes!r}: choose one of {', '.join(BAD_BYTES_POLICIES)}")
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if not sources:
        raise DataError("no corpus source given; pass a .txt/.jsonl file, a folder, or a hub dataset name")
    n = 0
    for src in sources:
        for doc in _iter_one(src, split, bad_bytes):
            if max_docs is not None and n >= max_docs:
                return
            n += 1
            yield doc
    if n == 0:
        names = ", ".join(str(s) for s in sources)
        raise DataError(f"{names}: the corpus is empty (no non-empty documents); check the file or the split")


def describe_source(source: Source | Iterable[Source]) -> str:
    """A stable text naming the source(s), recorded in a corpus's meta.json."""
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    return " + ".join(str(Path(s).resolve()) if Path(s).expanduser().exists() else str(s) for s in sources)


def _iter_one(source: Source, split: str, bad_bytes: str) -> Iterator[str]:
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CORPUS_SUFFIXES)
        if not files:
            raise DataError(f"{path}: folder holds no .txt or .jsonl files")
        for f in files:
            yield from _iter_file(f, bad_bytes)
    elif path.is_file():
        yield from _iter_file(path, bad_bytes)
    elif isinstance(source, str) and _HUB_NAME.match(source) and path.suffix not in CORPUS_SUFFIXES:
        yield from _iter_hub(source, split)
    else:
        raise DataError(f"{path}: corpus file not found; pass an existing .txt/.jsonl file or folder, or set TINYINTERP_DATA")


def _iter_file(path: Path, bad_bytes: str) -> Iterator[str]:
    if path.suffix not in CORPUS_SUFFIXES:
        raise DataError(f"{path}: unsupported corpus file type; use .txt (<|endoftext|>-separated) or .jsonl (a 'text' field)")
    reader = _LineReader(path, bad_bytes)
    yield from (_iter_jsonl if path.suffix == ".jsonl" else _iter_txt)(reader)
    if reader.n_replaced:
        log.warning("%s: replaced invalid UTF-8 bytes with U+FFFD on %d line(s)", path, reader.n_replaced)


class _LineReader:
    """Lines of a file decoded as UTF-8, one at a time, applying the bad-bytes policy per line."""

    def __init__(self, path: Path, bad_bytes: str):
        self.path, self.bad_bytes, self.n_replaced = path, bad_bytes, 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        offset = 0
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if self.bad_bytes == "error":
                        raise DataError(
                            f"{self.path}:{lineno}: invalid UTF-8 byte at offset {offset + e.start}; "
                            f"convert the file to UTF-8 or read it with bad_bytes='replace'"
                        ) from None
                    self.n_replaced += 1
                    line = raw.decode("utf-8", errors="replace")
                offset += len(raw)
                yield lineno, line


def _iter_txt(reader: _LineReader) -> Iterator[str]:
    buf: list[str] = []
    for _, line in reader:
        if EOT_TOKEN not in line:
            buf.append(line)
            continue
        first, *rest = line.split(EOT_TOKEN)
        buf.append(first)
        for piece in rest:  # every separator on this line ends the document collected so far
            doc = "".join(buf).strip()
            if doc:
                yield doc
            buf = [piece]
    doc = "".join(buf).strip()
    if doc:
        yield doc


def _iter_jsonl(reader: _LineReader) -> Iterator[str]:
    for lineno, line in reader:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{reader.path}:{lineno}: not valid JSON ({e.msg}); each line must be an object with a 'text' field"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{reader.path}:{lineno}: each line must be a JSON object with a string 'text' field")
        yield from split_documents(record["text"])


def _iter_hub(name: str, split: str) -> Iterator[str]:
    from tinyinterp.hf.hub import hub_reachable, offline_mode

    # Offline, datasets would retry for ~25 s before failing; with HF_HUB_OFFLINE / HF_DATASETS_OFFLINE
    # set it answers from its cache at once, so only that case goes on to load_dataset.
    if not offline_mode() and not hub_reachable():
        raise DataError(
            f"dataset '{name}': the Hugging Face Hub cannot be reached from this machine; pass --data a local "
            f".txt/.jsonl file or set TINYINTERP_DATA (or HF_DATASETS_OFFLINE=1 to use a cached copy)"
        )
    try:
        import datasets

        dataset = datasets.load_dataset(name, split=split, streaming=True)
        rows = iter(dataset)
        first = next(rows, None)
    except Exception as e:  # offline, unknown name, missing split: datasets raises many types
        raise DataError(
            f"dataset '{name}' (split {split}) could not be downloaded from the Hugging Face Hub ({type(e).__name__}); "
            f"set TINYINTERP_DATA or pass --data a local .txt/.jsonl file"
        ) from None
    if first is None:
        return
    for record in _chain_first(first, rows):
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise DataError(f"dataset '{name}' (split {split}) has no string 'text' column; pass a local file instead")
        yield from split_documents(text)


def _chain_first(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest
