"""Datagen's rules on top of :mod:`tinyinterp.io.jsonl`: reading an input dataset, and pruning the error log.

The JSONL mechanics (fsynced appends, torn-tail repair, tolerant reads, dedupe by id) live in
:mod:`tinyinterp.io.jsonl`; this module adds what only datagen means: which file a step reads its
input records from, and that ``<out>.errors.jsonl`` lists only what is still failing.
"""

from __future__ import annotations

from pathlib import Path

from tinyinterp.errors import DataError
from tinyinterp.io.jsonl import iter_jsonl, read_records, write_jsonl


def load_input_records(path: Path, what: str = "--input") -> list[dict]:
    """Records of an input file, deduplicated; a missing or empty file is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} not found; pass the JSONL written by 'tinyinterp datagen stories'")
    records = list(read_records(path).values())
    if not records:
        raise DataError(f"{what} {path} has no readable records; regenerate it with 'tinyinterp datagen stories'")
    return records


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
    write_jsonl(errors, latest.values())
    return len(latest)
