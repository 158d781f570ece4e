"""Append-only JSONL logs that survive ``kill -9``: the one JSONL implementation of tinyinterp.

Every log the project keeps (``metrics.jsonl``, completions, grades, datagen stories, explanations,
batch outputs) is one JSON object a line, written by one process at a time:

* **Append** (:func:`append_jsonl`, :class:`AppendLog`): one ``write`` per record, flushed and fsynced
  before returning, so a kill loses at most the line being written — and leaves it torn at the end.
* **Torn-tail repair** (:func:`repair_torn_tail`): cut the file back to its last newline. Only the
  log's one writer may do this (before appending): a reader doing it could cut a line a live writer
  is in the middle of.
* **Strict read** (:func:`read_jsonl`): a torn last line (no newline after it) is ignored with a
  warning; any other unreadable line is an error (:class:`~tinyinterp.errors.DataError`), or with
  ``skip_bad`` is dropped with a warning.
* **Tolerant read** (:func:`scan_jsonl`, :func:`iter_jsonl`): every unreadable line is skipped;
  :func:`scan_jsonl` reports which lines it skipped.
* **Dedupe by key** (:func:`read_records`, :func:`compact`): the first record of each key wins.

Rewrites (:func:`write_jsonl`, :func:`compact`) go through :mod:`tinyinterp.io.atomic`, so they are
all-or-nothing. No torch import.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from tinyinterp.io.atomic import atomic_write_text
from tinyinterp.errors import DataError

log = logging.getLogger(__name__)

_TAIL_CHUNK = 65536  # bytes read per step when looking backwards for the last newline


def dumps_line(record: dict[str, Any]) -> str:
    """One record as a JSONL line (``\\n`` included); non-ASCII text kept as is."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def append_jsonl(path: Path, record: dict[str, Any], fsync: bool = True) -> None:
    """Append one record (one ``write``) and fsync: a crash loses at most the line being written."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(dumps_line(record))
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` atomically with ``records``, one a line."""
    atomic_write_text(Path(path), "".join(dumps_line(r) for r in records))


def repair_torn_tail(path: Path) -> int:
    """Cut ``path`` back to its last newline; returns the bytes removed (0 when intact or absent).

    Scans backwards from the end, so a large log is not read whole. Only the log's writer may call
    this (see the module docstring).
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        keep, pos = 0, size
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            f.seek(start)
            newline = f.read(pos - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            pos = start
        if keep < size:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
            log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run", path, size - keep)
        return size - keep


@dataclass
class JsonlContents:
    """What :func:`scan_jsonl` read: the records, and the lines it could not use."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    """1-based numbers of unreadable lines (bad JSON or not an object), the torn last line included."""
    torn_tail: bool = False
    """The file ends in an unreadable line without a newline: a write interrupted by a crash."""


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def scan_jsonl(path: Path) -> JsonlContents:
    """Tolerant read of the whole file: every readable record, and the numbers of the lines skipped."""
    path = Path(path)
    out = JsonlContents()
    if not path.is_file():
        return out
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = _parse(line)
        if record is None:
            out.skipped.append(number)
            out.torn_tail = number == len(lines) and not text.endswith("\n")
        else:
            out.records.append(record)
    return out


def read_jsonl(path: Path, skip_bad: bool = False) -> list[dict[str, Any]]:
    """Records of an append-only log; a missing file is empty.

    A torn last line is ignored with a warning. A bad line elsewhere raises :class:`DataError`, or
    with ``skip_bad`` is dropped with a warning (for healing a log damaged by an older version).
    """
    if Path(path).exists() and not Path(path).is_file():  # a folder in the log's place is damage, not "no log yet"
        raise DataError(f"{path}: exists but is not a file; move it away (a new log starts) or put the log back")
    contents = scan_jsonl(path)
    for number in contents.skipped:
        if contents.torn_tail and number == contents.skipped[-1]:
            log.warning("%s: ignoring torn last line", path)
        elif skip_bad:
            log.warning("%s:%d: dropping an unreadable line", path, number)
        else:
            raise DataError(f"{path}:{number}: not valid JSON (damaged in the middle of the log, not a torn last "
                            "line); remove that line, or rerun the command that writes this log to repair it")
    return contents.records


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Tolerant streaming read: parsed records in file order, each unreadable line skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = _parse(line)
            if record is None:
                log.warning("%s:%d: skipping an unreadable line", path, number)
                continue
            yield record


def read_records(path: Path, key: str = "id") -> dict[Any, dict[str, Any]]:
    """Records by ``key`` (tolerant read), first occurrence wins; records without ``key`` are left out."""
    out: dict[Any, dict[str, Any]] = {}
    for record in iter_jsonl(path):
        if key in record and record[key] not in out:
            out[record[key]] = record
    return out


def compact(path: Path, key: str = "id") -> int:
    """Rewrite ``path`` atomically without duplicates or bad lines if it has any; returns lines removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        n_lines = sum(1 for line in f if line.strip())
    records = read_records(path, key)
    removed = n_lines - len(records)
    if removed:
        write_jsonl(path, records.values())
        log.info("%s: removed %d duplicate or unreadable lines", path, removed)
    return removed


class AppendLog:
    """One writer appending JSON lines to an open file, each flushed (and fsynced) before ``append`` returns.

    Opening repairs a torn tail first, so the first record never lands on a half-written line.
    """

    def __init__(self, path: Path, fsync: bool = True, lazy: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self._f = None
        if not lazy:  # lazy: the file is only created by the first append (no empty error logs)
            self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        if self._f is None:
            self._open()
        self._f.write(dumps_line(record))  # one write per record: a kill tears at most the last line
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
