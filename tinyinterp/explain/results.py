"""Where explanations live and how to read them: one append-only JSONL per explainer, one line per neuron.

``RUN/analysis/explanations/<slug>.jsonl`` (slug ``baseline`` or ``llm-<model>``) holds one record per
finished neuron, id ``L{layer}N{neuron}`` (stable across runs, so a finished neuron is never redone);
``<slug>.errors.jsonl`` holds neurons that failed for good (tried again on the next run). Records are
flushed and fsynced line by line, and a torn last line left by ``kill -9`` is cut on the next open.

The app reads a run's explanations with :func:`load_explanations` (one row per explainer and neuron)
and :func:`score_summary` (score distribution per explainer and layer).

    >>> load_explanations(run_dir).sort_values("score", ascending=False).head()
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from tinyinterp.io.jsonl import read_records
from tinyinterp.runs.layout import EXPLANATIONS_SUBDIR, explanations_dir, feature_explanations_dir
ERRORS_SUFFIX = ".errors.jsonl"
FINISHED = ("ok", "flagged")
COLUMNS = ["explainer", "layer", "neuron", "explanation", "score", "score_top", "score_random", "status",
           "n_flagged", "simulation", "model", "id"]

__all__ = ["EXPLANATIONS_SUBDIR", "explanations_dir", "results_folder", "explainer_slug", "neuron_id",
           "finished_ids", "load_explanations", "score_summary", "results_path", "errors_path"]


def results_folder(path: str | Path) -> Path:
    """Where to read explanations from ``path``: a run's ``analysis/explanations/``, ``path`` itself when
    it is an ``explain --out`` folder (holds ``baseline.jsonl`` / ``llm-*.jsonl``, e.g. another model's), or
    ``path/explanations`` for a dictionary folder (``explain RUN --dict DIR``)."""
    path = Path(path)
    nested = explanations_dir(path)
    if nested.is_dir():
        return nested
    # an `explain --out` folder itself, or a dictionary folder whose features were explained (DICT/explanations)
    for folder in (path, feature_explanations_dir(path)):
        if (folder / "baseline.jsonl").is_file() or any(folder.glob("llm-*.jsonl")):
            return folder
    return nested


def explainer_slug(explainer: str, model: str | None = None) -> str:
    """File-name-safe name of an explainer: ``baseline`` or ``llm-<model>``."""
    if explainer == "baseline":
        return "baseline"
    return "llm-" + re.sub(r"[^A-Za-z0-9._-]+", "_", model or "unknown")


def neuron_id(layer: int, neuron: int) -> str:
    return f"L{int(layer)}N{int(neuron)}"


def results_path(out_dir: Path, slug: str) -> Path:
    return Path(out_dir) / f"{slug}.jsonl"


def errors_path(out_dir: Path, slug: str) -> Path:
    return Path(out_dir) / f"{slug}{ERRORS_SUFFIX}"


def finished_ids(path: Path) -> set[str]:
    """Ids of neurons with a finished record (scored, or scored with flagged simulations)."""
    return {rid for rid, rec in read_records(path).items() if rec.get("status") in FINISHED}


def load_explanations(run_dir: str | Path, explainer: str | None = None) -> pd.DataFrame:
    """Every finished explanation of a run (or an ``explain --out`` folder, see :func:`results_folder`):
    one row per (explainer slug, neuron), columns :data:`COLUMNS`."""
    rows = []
    folder = results_folder(run_dir)
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        if path.name.endswith(ERRORS_SUFFIX):
            continue
        slug = path.name[: -len(".jsonl")]
        if explainer is not None and slug != explainer:
            continue
        for rec in read_records(path).values():
            if rec.get("status") in FINISHED:
                rows.append({**{c: rec.get(c) for c in COLUMNS}, "explainer": slug})
    return pd.DataFrame(rows, columns=COLUMNS)


def score_summary(run_dir: str | Path) -> pd.DataFrame:
    """Score distribution per explainer and layer: n, mean, median, quartiles, share with score >= 0.5."""
    frame = load_explanations(run_dir)
    cols = ["explainer", "layer", "n", "mean", "median", "q25", "q75", "share_ge_0.5"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    frame = frame.assign(score=pd.to_numeric(frame["score"], errors="coerce"))
    out = frame.groupby(["explainer", "layer"])["score"].agg(
        n="count", mean="mean", median="median", q25=lambda s: s.quantile(0.25), q75=lambda s: s.quantile(0.75),
        **{"share_ge_0.5": lambda s: float((s >= 0.5).mean()) if len(s) else float("nan")}).reset_index()
    return out[cols]
