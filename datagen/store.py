"""Append-only JSONL records that survive SIGKILL: flush+fsync per line, torn-tail repair, dedupe by id.

A generation process may die at any byte. On open, ``repair_torn_tail`` cuts the file back to its
last newline (a half-written record is dropped — it was never acknowledged, so the rerun simply
generates it again). Readers skip any other unparseable line with a warning, and keep the first
record of each id, so a file is always readable by ``datasets.load_dataset("json", ...)`` after
``compact``. Small state files are replaced atomically (write temp, fsync, rename).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from tinyinterp.atomic import atomic_write_json as _atomic_write_json
from tinyinterp.atomic import atomic_write_text
from tinyinterp.errors import DataError

log = logging.getLogger(__name__)


def atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write_json(path, obj, sort_keys=True)


def repair_torn_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline; returns the number of bytes cut (0 if intact)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        pos, chunk = size, 65536
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        if keep < size:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
            log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run", path, size - keep)
        return size - keep


def iter_jsonl(path: Path) -> Iterator[dict]:
    """Parsed records of ``path``; unparseable lines are skipped with a warning (never raised)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping an unreadable line", path, lineno)
                continue
            if isinstance(record, dict):
                yield record


def read_records(path: Path, key: str = "id") -> dict[str, dict]:
    """Records by ``key``, first occurrence wins (later duplicates are ignored)."""
    out: dict[str, dict] = {}
    for record in iter_jsonl(path):
        if key in record and record[key] not in out:
            out[record[key]] = record
    return out


def load_input_records(path: Path, what: str = "--input") -> list[dict]:
    """Records of an input file, deduplicated; a missing or empty file is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} not found; pass the JSONL written by 'tinyinterp datagen stories'")
    records = list(read_records(path).values())
    if not records:
        raise DataError(f"{what} {path} has no readable records; regenerate it with 'tinyinterp datagen stories'")
    return records


def compact(path: Path, key: str = "id") -> int:
    """Rewrite ``path`` atomically without duplicates or bad lines if it has any; returns lines removed."""
    path = Path(path)
    if not path.exists():
        return 0
    n_lines = sum(1 for line in open(path, "rb") if line.strip())
    records = read_records(path, key)
    removed = n_lines - len(records)
    if removed:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values()))
        log.info("%s: removed %d duplicate or unreadable lines", path, removed)
    return removed


def prune_errors(errors: Path, done: set[str]) -> int:
    """Drop error entries of ids that are now done (and older entries of the same id); returns entries left.

    The errors file answers "what is still failing?": after a successful rerun it must not list
    ids that have since been generated, and when nothing fails it does not exist at all.
    """
    errors = Path(errors)
    if not errors.exists():
        return 0
    latest: dict[str, dict] = {}
    for entry in iter_jsonl(errors):
        if entry.get("id") not in done:
            latest.pop(entry.get("id"), None)  # keep the newest entry of an id, in file order
            latest[entry.get("id")] = entry
    if not latest:
        errors.unlink()
        return 0
    atomic_write_text(errors, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in latest.values()))
    return len(latest)


class AppendLog:
    """One writer appending JSON lines, each flushed and fsynced before ``append`` returns."""

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

    def append(self, record: dict) -> None:
        if self._f is None:
            self._open()
        # One write call per record, so a kill leaves at most one torn line, at the end.
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
