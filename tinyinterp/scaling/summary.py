"""``sweep_summary.json``: one schema for both sweep programs, written and read here only.

    {"kind": "grid" | "scaling", "runs": [{"name": ..., "final_val_loss": ..., ...}, ...],
     "pending": [names not finished yet], "best": name of the lowest final validation loss, or null}

The grid sweep (``python -m training.grid_sweep``: preset x lr) writes kind ``grid``; the scaling sweep
(``tinyinterp sweep``) writes kind ``scaling``, whose runs also carry their shape, budget and compute
(:mod:`tinyinterp.scaling.analysis` reads those). A summary is rewritten atomically after every change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.layout import SWEEP_SUMMARY_FILE

GRID, SCALING = "grid", "scaling"
KINDS = (GRID, SCALING)


def best_run(runs: list[dict[str, Any]]) -> str | None:
    """Name of the run with the lowest finite final validation loss (None when no run has one)."""
    scored = [r for r in runs if isinstance(r.get("final_val_loss"), (int, float)) and math.isfinite(r["final_val_loss"])]
    return min(scored, key=lambda r: r["final_val_loss"])["name"] if scored else None


def write_sweep_summary(sweep_dir: Path, kind: str, runs: list[dict[str, Any]], pending: Iterable[str] = ()) -> dict[str, Any]:
    """Write ``SWEEP/sweep_summary.json`` (atomically) and return it."""
    if kind not in KINDS:
        raise ValueError(f"sweep summary kind must be one of {KINDS}, got {kind!r}")
    summary = {"kind": kind, "runs": list(runs), "pending": list(pending), "best": best_run(runs)}
    atomic_write_json(Path(sweep_dir) / SWEEP_SUMMARY_FILE, summary)
    return summary


def read_sweep_summary(sweep_dir: Path, kind: str = SCALING) -> dict[str, Any]:
    """The summary of ``sweep_dir``, checked: a mapping of ``kind`` whose ``runs`` are named mappings."""
    path = Path(sweep_dir) / SWEEP_SUMMARY_FILE
    redo = f"run `tinyinterp sweep summarize {sweep_dir}`" if kind == SCALING else "rerun the sweep"
    if not path.is_file():
        raise TinyinterpError(f"{path}: not found; {redo}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TinyinterpError(f"{path}: unreadable ({type(e).__name__}); {redo} to rewrite it") from None
    if not isinstance(summary, dict) or summary.get("kind") != kind:
        raise TinyinterpError(f"{path}: not a {kind} sweep; {redo}")
    runs = summary.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in runs):
        raise TinyinterpError(f"{path}: 'runs' must be a list of objects with a 'name'; {redo} to rewrite it")
    return summary
