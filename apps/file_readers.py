"""Tolerant readers of a run's data files for the app: confined to the runs root, bad lines skipped and counted.

A run folder is data someone else wrote. Every read here first passes :func:`apps.runs_root.open_in_root`
(a symlink out of the root is refused in one line). A JSONL log with a torn or hand-edited line, or a
record that does not have the shape a page needs, costs that line, never the page: :func:`read_jsonl`
returns the good records plus the numbers of the lines it skipped, and :func:`skipped_note` turns them
into the one line a page shows (``grades.jsonl: skipped 1 unreadable line (line 3)``).

    >>> log = read_jsonl(run / "analysis" / "eval" / "grades.jsonl")
    >>> log.records, log.skipped    # [{...}, ...], [3]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from apps.runs_root import active_root, open_in_root
from tinyinterp.errors import DataError

MAX_SHOWN_LINES = 5


@dataclass
class JsonlRead:
    """What :func:`read_jsonl` found: good records, and the (1-based) line numbers it skipped."""

    path: Path
    records: list[dict] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def read_json(path: str | Path) -> Any:
    """One JSON document inside the runs root; a bad one is one :class:`DataError` line naming the file."""
    shown = active_root().shown(Path(path))
    try:
        with open_in_root(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"{shown}: file not found") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{shown}: not valid JSON ({type(e).__name__})") from None
    except IsADirectoryError:
        raise DataError(f"{shown}: is a directory, expected a JSON file") from None


def read_jsonl(path: str | Path, accept: Callable[[dict], bool] | None = None, max_records: int | None = None) -> JsonlRead:
    """The JSON-object lines of an append-only log; unreadable lines (and, with ``accept``, records it
    rejects) are skipped and their line numbers kept. A missing file reads as empty."""
    out = JsonlRead(Path(path))
    try:
        with open_in_root(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return out
    except IsADirectoryError:
        raise DataError(f"{active_root().shown(Path(path))}: is a directory, expected a JSONL file") from None
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")  # a writer killed mid-line: not an error, just not there yet
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            good = isinstance(record, dict) and (accept is None or accept(record))
        except (ValueError, RecursionError, TypeError, KeyError):
            good = False
        if good:
            out.records.append(record)
            if max_records is not None and len(out.records) >= max_records:
                break
        elif not (number == len(lines) and torn_tail):
            out.skipped.append(number)
    return out


def skipped_note(path: Path, skipped: list[int], what: str = "line") -> str | None:
    """``grades.jsonl: skipped 2 unreadable lines (lines 3, 9)`` (None when nothing was skipped)."""
    if not skipped:
        return None
    shown = ", ".join(map(str, skipped[:MAX_SHOWN_LINES])) + (", …" if len(skipped) > MAX_SHOWN_LINES else "")
    plural = "s" if len(skipped) > 1 else ""
    return (f"{active_root().shown(Path(path))}: skipped {len(skipped)} unreadable {what}{plural} "
            f"({'lines' if plural else 'line'} {shown})")


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (NaN, ±inf, huge ints, strings, bools and the rest)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def plain_int(value: Any, low: int = 0, high: int = 2**53) -> int | None:
    """``value`` if it is an int (not a bool) in ``[low, high]``, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value
